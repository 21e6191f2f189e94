"""The whole classical chain on a file we did not write: Debian's Shepp-Logan R=2 scan."""

import h5py
import numpy as np

from contextmri_core.io.raw.reader import read_scan
from contextmri_core.recon.classical import SenseRecon, ZeroFilledRecon
from contextmri_core.recon.prepare import prepare_scan


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_sense_from_acs_maps_unfolds_the_r2_shepp_logan(shepp_logan):
    batch = prepare_scan(read_scan(shepp_logan))  # prewhitening + ESPIRiT from 32 ACS lines
    with h5py.File(shepp_logan, "r") as f:
        raw = f["dataset/phantom"][0]
    phantom = np.abs(raw["real"] + 1j * raw["imag"]).squeeze()
    zf = ZeroFilledRecon()(batch.kspace, batch.mask, batch.maps).image[0].abs().numpy()
    sense = SenseRecon()(batch.kspace, batch.mask, batch.maps).image[0].abs().numpy()
    assert _corr(sense, phantom) > 0.95
    assert _corr(zf, phantom) < 0.8  # R=2 aliasing: SENSE really unfolds it
