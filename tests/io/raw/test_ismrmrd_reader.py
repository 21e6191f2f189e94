"""ISMRMRD v1 reader: Debian's Shepp-Logan fixture and hand-built files with known k-space."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Sequence

import h5py
import ismrmrd
import numpy as np
import pytest

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import InputFileError
from contextmri_core.io.raw.ismrmrd_reader import (
    read_ismrmrd, record_from_acquisition, records_from_table)
from contextmri_core.io.raw.reader import read_scan
from tests.conftest import run_tool

NOISE, CAL, CAL_IMG, NAV = 19, 20, 21, 23





def ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"),
                           axes=(-2, -1))


def rss(k: np.ndarray) -> np.ndarray:
    return np.sqrt((np.abs(ifft2c(k)) ** 2).sum(axis=0))


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def flagged(path: Path, flag: int, repetition: int = 0) -> List[int]:
    with h5py.File(path, "r") as f:
        head = f["dataset/data"]["head"]
    sel = ((head["flags"] >> np.uint64(flag - 1)) & np.uint64(1)).astype(bool)
    sel &= head["idx"]["repetition"] == repetition
    return sorted(head["idx"]["kspace_encode_step_1"][sel].tolist())


# --- Debian ismrmrd-tools Shepp-Logan -------------------------------------------------------

def test_shepp_logan_noise_acs_mask_metadata(shepp_logan):
    scan = read_ismrmrd(shepp_logan)
    assert len(scan.slices) == 1 and scan.num_coils == 8
    assert scan.noise is not None and scan.noise.shape == (8, 512) and scan.noise_acquisitions == 1
    assert scan.readout_oversampling == 2.0
    assert scan.encoded_matrix == (256, 256) and scan.recon_matrix == (256, 256)
    sl = scan.slices[0]
    assert sl.kspace.shape == (8, 256, 256) and sl.mask.shape == (256, 256)
    separate, embedded = flagged(shepp_logan, CAL), flagged(shepp_logan, CAL_IMG)
    assert len(separate) + len(embedded) == 32  # what -w 32 asks for
    assert np.flatnonzero(sl.acs_rows).tolist() == sorted(separate + embedded)
    rows = sl.mask.any(axis=1)
    assert rows[embedded].all() and not rows[separate].any()
    assert sl.acceleration == pytest.approx(2.0, abs=0.05)
    # no sequenceParameters, no subject, no vendor; only the grid (300 mm / 256, 6 mm slices);
    # the tool leaves slice_dir all zero, so the plane stays unknown
    grid = dict(pixel_spacing_mm=300 / 256, slice_thickness_mm=6.0)
    assert scan.metadata == ScanMetadata(**grid)
    assert sl.metadata == ScanMetadata(slice_index=0, **grid)


def test_shepp_logan_image_resembles_phantom_and_tool_recon(shepp_logan, tmp_path):
    sl0 = read_ismrmrd(shepp_logan).slices[0]
    filled = np.where(sl0.acs_rows[None, :, None], sl0.acs, sl0.kspace)
    with h5py.File(shepp_logan, "r") as f:
        raw = f["dataset/phantom"][0]
    phantom = np.abs(raw["real"] + 1j * raw["imag"])
    assert corr(rss(filled), phantom) > 0.9
    # The tool's -a 2 writes a second repetition with the complementary lines: together full.
    sl1 = read_ismrmrd(shepp_logan, repetition=1).slices[0]
    assert np.all(sl0.mask + sl1.mask == 1)
    copy = tmp_path / "recon.h5"
    shutil.copy(shepp_logan, copy)
    run_tool("ismrmrd_recon_cartesian_2d", str(copy), cwd=tmp_path)
    with h5py.File(copy, "r") as f:
        tool = f["dataset/cpp/data"][0, 0, 0]
    assert corr(rss(sl0.kspace + sl1.kspace), tool) > 0.99


def test_vectorised_table_equals_ismrmrd_dataset(shepp_logan):
    with h5py.File(shepp_logan, "r") as f:
        records = records_from_table(f["dataset/data"]["head"], f["dataset/data"]["data"],
                                     shepp_logan)
    ds = ismrmrd.Dataset(str(shepp_logan), "dataset", create_if_needed=False)
    try:
        assert ds.number_of_acquisitions() == len(records)
        for i, r in enumerate(records):
            acq = ds.read_acquisition(i)
            assert (r.flags, r.e1, r.slice, r.repetition, r.center_sample) == (
                acq.flags, acq.idx.kspace_encode_step_1, acq.idx.slice, acq.idx.repetition,
                acq.center_sample)
            np.testing.assert_array_equal(r.data, acq.data)
            live = record_from_acquisition(acq)  # the path a gadget takes
            np.testing.assert_array_equal(live.data, r.data)
            assert {k: v for k, v in vars(live).items() if k != "data"} == {
                k: v for k, v in vars(r).items() if k != "data"}
    finally:
        ds.close()


# --- hand-built files ------------------------------------------------------------------------

def header(*, ro: int, e1: int, recon_x: int, lim: Optional[Sequence[int]], coils: int,
           trajectory: str = "cartesian", slices: int = 1) -> str:
    limits = "" if lim is None else (
        "<encodingLimits><kspace_encoding_step_1><minimum>{}</minimum><maximum>{}</maximum>"
        "<center>{}</center></kspace_encoding_step_1><slice><minimum>0</minimum><maximum>{}"
        "</maximum><center>0</center></slice></encodingLimits>").format(*lim, slices - 1)
    return (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        "<measurementInformation><protocolName>AX T2 brain</protocolName>"
        "</measurementInformation><acquisitionSystemInformation>"
        f"<receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>"
        "<encoding><encodedSpace><matrixSize>"
        f"<x>{ro}</x><y>{e1}</y><z>1</z></matrixSize><fieldOfView_mm><x>{2 * recon_x}</x>"
        f"<y>{e1}</y><z>5</z></fieldOfView_mm></encodedSpace><reconSpace><matrixSize>"
        f"<x>{recon_x}</x><y>{e1}</y><z>1</z></matrixSize><fieldOfView_mm><x>{recon_x}</x>"
        f"<y>{e1}</y><z>5</z></fieldOfView_mm></reconSpace>{limits}"
        f"<trajectory>{trajectory}</trajectory></encoding>"
        "<sequenceParameters><TR>4000</TR><TE>90</TE></sequenceParameters></ismrmrdHeader>")


def acquisition(data: np.ndarray, e1: int = 0, *, flags: Sequence[int] = (), slice_: int = 0,
                center: int = 0, avg: int = 0) -> ismrmrd.Acquisition:
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64))
    acq.idx.kspace_encode_step_1 = e1
    acq.idx.slice = slice_
    acq.idx.average = avg
    acq.center_sample = center
    for flag in flags:
        acq.set_flag(flag)
    return acq


def write(path: Path, xml: str, acqs: Sequence[ismrmrd.Acquisition]) -> Path:
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(xml)
    for acq in acqs:
        ds.append_acquisition(acq)
    ds.close()
    return path


def fft_c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x, axes=-1), norm="ortho"), axes=-1)


def ifft_c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(x, axes=-1), norm="ortho"), axes=-1)


def oversampled(line: np.ndarray) -> np.ndarray:
    """(C, n) recon-grid k-space line -> (C, 2n) line of the same object with 2x readout FOV."""
    n = line.shape[-1]
    image = np.zeros(line.shape[:-1] + (2 * n,), dtype=np.complex128)
    image[..., n // 2:n // 2 + n] = ifft_c(line)
    return fft_c(image)


def test_partial_fourier_oversampling_separate_acs_two_slices_noise(tmp_path):
    """E1 16, lines e1 0..11 with centre 4 (rows 4..15), RO 32 -> 16, R=2 + separate ACS."""
    rng = np.random.default_rng(1)
    truth = (rng.standard_normal((2, 4, 16, 16)) + 1j * rng.standard_normal((2, 4, 16, 16)))
    noise = [rng.standard_normal((4, 32)).astype(np.complex64) for _ in range(2)]
    acqs = [acquisition(n, flags=[NOISE]) for n in noise]
    for s in (0, 1):
        for e1 in range(0, 12, 2):
            acqs.append(acquisition(oversampled(truth[s, :, e1 + 4]), e1, slice_=s, center=16))
        for e1 in (3, 5):  # separate ACS between imaging lines 2, 4, 6
            acqs.append(acquisition(oversampled(truth[s, :, e1 + 4]), e1, slice_=s, center=16,
                                    flags=[CAL]))
        acqs.append(acquisition(np.full((4, 32), 1e6), 1, slice_=s, center=16, flags=[NAV]))
    path = write(tmp_path / "pf.h5", header(ro=32, e1=16, recon_x=16, lim=(0, 11, 4), coils=4,
                                            slices=2), acqs)
    scan = read_ismrmrd(path)
    np.testing.assert_array_equal(scan.noise, np.concatenate(noise, axis=1))
    assert scan.noise_acquisitions == 2 and scan.readout_oversampling == 2.0
    assert scan.encoded_matrix == (16, 16) and scan.metadata.te_ms == 90
    assert [s.metadata.slice_index for s in scan.slices] == [0, 1]
    for s, sl in enumerate(scan.slices):
        rows = [4, 6, 8, 10, 12, 14]
        assert np.flatnonzero(sl.mask.any(1)).tolist() == rows and sl.mask[rows].all()
        np.testing.assert_allclose(sl.kspace[:, rows], truth[s][:, rows], atol=1e-5)
        assert not sl.kspace[:, :4].any() and not sl.kspace[:, [5, 7, 9]].any()
        assert np.flatnonzero(sl.acs_rows).tolist() == [7, 9]
        np.testing.assert_allclose(sl.acs[:, [7, 9]], truth[s][:, [7, 9]], atol=1e-5)
        assert not sl.acs[:, rows].any()


def test_asymmetric_echo_embedded_acs_and_averages(tmp_path):
    """RO 16 without oversampling; 12 samples with the centre at sample 4 -> columns 4..15."""
    lines = {e1: np.tile(np.arange(12) + 100.0 * e1, (2, 1)) for e1 in range(8)}
    acqs = [acquisition(lines[e1], e1, center=4, flags=[CAL_IMG] if e1 in (3, 4, 5) else [])
            for e1 in range(0, 8)]
    acqs.append(acquisition(lines[4] + 10.0, 4, center=4, avg=1, flags=[CAL_IMG]))
    path = write(tmp_path / "asym.h5", header(ro=16, e1=8, recon_x=16, lim=(0, 7, 4), coils=2),
                 acqs)
    sl = read_ismrmrd(path).slices[0]
    assert sl.kspace.shape == (2, 8, 16)
    np.testing.assert_array_equal(sl.mask[:, :4], 0)
    np.testing.assert_array_equal(sl.mask[:, 4:], 1)
    np.testing.assert_allclose(sl.kspace[1, 2, 4:], lines[2][1])
    assert not sl.kspace[:, :, :4].any()
    np.testing.assert_allclose(sl.kspace[0, 4, 4:], lines[4][0] + 5.0)  # two averages
    assert np.flatnonzero(sl.acs_rows).tolist() == [3, 4, 5]
    np.testing.assert_allclose(sl.acs[:, 3:6], sl.kspace[:, 3:6])
    assert sl.acceleration == 1.0


# --- bad input ---------------------------------------------------------------------------------

def _bad_files(tmp: Path, good: Path) -> dict:
    files = {}
    (tmp / "text.h5").write_text("not hdf5")
    files["text.h5"] = "not an HDF5"
    with h5py.File(tmp / "nodataset.h5", "w") as f:
        f["other"] = 1
    files["nodataset.h5"] = "no /dataset"
    with h5py.File(tmp / "noxml.h5", "w") as f:
        f.create_group("dataset")
    files["noxml.h5"] = "no XML header"
    hdr = header(ro=8, e1=8, recon_x=8, lim=None, coils=1)
    write(tmp / "empty.h5", hdr, [])
    files["empty.h5"] = "no acquisitions"
    write(tmp / "onlynoise.h5", hdr, [acquisition(np.ones((1, 8)), flags=[NOISE])])
    files["onlynoise.h5"] = "no imaging"
    write(tmp / "radial.h5", header(ro=8, e1=8, recon_x=8, lim=None, coils=1,
                                    trajectory="radial"), [acquisition(np.ones((1, 8)))])
    files["radial.h5"] = "not Cartesian"
    with h5py.File(good, "r") as src, h5py.File(tmp / "f64.h5", "w") as f:
        table = src["dataset/data"]
        dt = np.dtype([("head", table.dtype["head"]), ("traj", h5py.vlen_dtype(np.float32)),
                       ("data", h5py.vlen_dtype(np.float64))])
        f.create_group("dataset")["xml"] = src["dataset/xml"][()]
        out = f["dataset"].create_dataset("data", shape=(1,), dtype=dt)
        out[0] = (table["head"][1], np.zeros(0, np.float32), np.zeros(16, np.float64))
    files["f64.h5"] = "vlen float32"
    return files


def test_bad_inputs_raise_input_file_error_naming_the_file(tmp_path, shepp_logan):
    with pytest.raises(InputFileError, match="missing.h5: no such file"):
        read_ismrmrd(tmp_path / "missing.h5")
    for name, problem in _bad_files(tmp_path, shepp_logan).items():
        with pytest.raises(InputFileError) as info:
            read_ismrmrd(tmp_path / name)
        assert name in str(info.value) and problem in str(info.value), str(info.value)


def test_read_scan_dispatches_to_ismrmrd(shepp_logan, tmp_path):
    assert read_scan(shepp_logan).slices[0].kspace.shape == (8, 256, 256)
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["images"] = np.zeros(3)
    with pytest.raises(InputFileError, match="odd.h5: unknown .h5 layout"):
        read_scan(tmp_path / "odd.h5")


def test_slice_geometry_comes_from_each_slice_s_first_imaging_line(tmp_path):
    """Positions and directions as the synthetic writer put them in the acquisition headers;
    a fastMRI file (no acquisition headers) gets an axial stack one slice thickness apart."""
    from contextmri_core.io.raw.fastmri_writer import write_fastmri
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate

    sim = simulate(2, "AXT2", SimConfig(matrix=32, num_slices=3, num_coils=2))
    scan = read_scan(write_ismrmrd(tmp_path / "g.h5", sim))
    ds = ismrmrd.Dataset(str(tmp_path / "g.h5"), "dataset", create_if_needed=False)
    try:
        first = {}
        for i in range(ds.number_of_acquisitions()):
            acq = ds.read_acquisition(i)
            if not acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                first.setdefault(acq.idx.slice, acq)
    finally:
        ds.close()
    assert len(scan.geometry) == 3
    for k, geom in enumerate(scan.geometry):
        acq = first[scan.slices[k].metadata.slice_index]
        np.testing.assert_allclose(geom.position, list(acq.position), atol=1e-6)
        np.testing.assert_allclose(geom.read_dir, list(acq.read_dir), atol=1e-6)
        np.testing.assert_allclose(geom.phase_dir, list(acq.phase_dir), atol=1e-6)
    z = [g.position[2] for g in scan.geometry]
    assert np.all(np.diff(z) > 0)
    fm = read_scan(write_fastmri(tmp_path / "f.h5", sim))
    np.testing.assert_allclose(np.diff([g.position[2] for g in fm.geometry]), fm.fov_mm[2])
