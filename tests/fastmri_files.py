"""fastMRI-layout .h5 files made for tests: ``kspace`` (slices, coils, RO_os, E1) with 2x
readout oversampling, a real-layout ISMRMRD header (the brain fixture with its matrices,
protocol and MR parameters changed), an optional ``mask`` and the ``acquisition`` attribute.
The object is an analytic phantom, optionally with a bright marker offset along the readout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from contextmri_core.physics.masks import uniform1d
from tests.phantom import phantom

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "fastmri_brain_axflair_header.xml"
KNEE_MR = {"TR": "3120", "TE": "33", "TI": "100", "flipAngle_deg": "140"}


def _matrix(xml: str, space: str, x: int, y: int) -> str:
    """Set ``<space><matrixSize><x>/<y>`` of the header."""
    pattern = re.compile(rf"(<{space}>\s*<matrixSize>\s*<x>)\d+(</x>\s*<y>)\d+(</y>)")
    return pattern.sub(rf"\g<1>{x}\g<2>{y}\g<3>", xml, count=1)


def header(e1: int, recon: tuple = (320, 320), protocol: Optional[str] = None,
           mr: Optional[dict] = None, coils: int = 4) -> str:
    """The fixture header with encoded 640 x ``e1``, recon ``recon`` (x, y), ``protocol``,
    MR values ``mr``; the coil labels keep the first ``coils`` entries, renamed so that they
    name no body part when a protocol is given."""
    xml = FIXTURE.read_text()
    xml = _matrix(xml, "encodedSpace", 640, e1)
    xml = _matrix(xml, "reconSpace", *recon)
    xml = re.sub(r"<receiverChannels>\d+</receiverChannels>",
                 f"<receiverChannels>{coils}</receiverChannels>", xml)
    labels = re.findall(r"\s*<coilLabel>.*?</coilLabel>", xml, flags=re.S)
    for extra in labels[coils:]:
        xml = xml.replace(extra, "", 1)
    if protocol is not None:
        xml = xml.replace("AX FLAIR_FBB", protocol).replace("HeadNeck_20", "Channel")
    for tag, value in (mr or {}).items():
        xml = re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", xml, count=1)
    return xml


def write_fastmri_file(path: Path, e1: int, xml: str, acquisition: Optional[str],
                       slices: int = 1, coils: int = 4, marker: Optional[int] = None,
                       acceleration: int = 4, acs: int = 24) -> Path:
    """A phantom scan on (RO 320, E1 ``e1``), readout oversampled to 640, undersampled x
    ``acceleration`` with ``acs`` centre lines (``mask`` dataset). ``marker``: a bright spot
    ``marker`` pixels from the centre along the readout (our image columns)."""
    img, maps, _ = phantom(320, e1, coils, seed=4)  # rows = readout, as fastMRI stores it
    img, maps = img.numpy(), maps.numpy()
    if marker is not None:
        img[160 + marker, e1 // 2] = 40.0
    coil_img = np.zeros((coils, 640, e1), np.complex64)
    coil_img[:, 160:480] = maps * img  # the object in the central half of the readout FOV
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil_img, axes=(-2, -1)), norm="ortho"),
                        axes=(-2, -1))
    rows = (np.ones(e1, bool) if acceleration == 1 else
            uniform1d(e1, acceleration, seed=0, center_fraction=acs / e1).astype(bool))
    kspace = np.repeat((k * rows[None, None, :])[None], slices, axis=0).astype(np.complex64)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("ismrmrd_header", data=xml.encode("utf-8"))
        f.create_dataset("mask", data=rows)
        if acquisition:
            f.attrs["acquisition"] = acquisition
        f.attrs["acceleration"] = acceleration
        f.attrs["num_low_frequency"] = acs
    return Path(path)


def knee_file(path: Path, slices: int = 1, **kw) -> Path:
    """fastMRI knee-like: 368 phase-encode lines, recon 320x320, CORPDFS_FBK, no anatomy in
    the file name (``file1000007.h5`` style)."""
    xml = header(368, protocol="CORPDFS_FBK", mr=KNEE_MR)
    return write_fastmri_file(path, 368, xml, "CORPDFS_FBK", slices, **kw)


def brain_file(path: Path, slices: int = 1, **kw) -> Path:
    """fastMRI brain-like: 320x320 (AX FLAIR), named ``file_brain_AXFLAIR_...``."""
    return write_fastmri_file(path, 320, header(320), "AXFLAIR", slices, **kw)
