"""Writers: valid ISMRMRD header, exact acquisitions back, fastMRI layout, reader round trips."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from contextmri_core.io.raw.fastmri_writer import fastmri_name, write_fastmri
from contextmri_core.io.raw.ismrmrd_writer import (
    FLAG_CALIBRATION, FLAG_CALIBRATION_AND_IMAGING, FLAG_NOISE, build_header_xml, slice_lines,
    write_ismrmrd,
)
from contextmri_core.synth.scan import SimConfig, crop_readout, fft2c, ifft2c, simulate

ismrmrd = pytest.importorskip("ismrmrd")
CFG = SimConfig(matrix=64, num_coils=4, num_slices=2, lesion_probability=1.0, noise_samples=300)


@pytest.fixture(scope="module")
def full():
    return simulate(11, "AXFLAIR", CFG)


@pytest.fixture(scope="module")
def under():
    return simulate(12, "AXT1POST", SimConfig(**{**CFG.__dict__, "acceleration": 4}))


@pytest.fixture(scope="module")
def separate():
    return simulate(13, "AXT2", SimConfig(**{**CFG.__dict__, "acceleration": 4,
                                            "calibration": "separate"}))


@pytest.fixture(scope="module")
def oblique():
    """Coronal, tilted up to 20 degrees, 3.1 mm pixels, 3 mm slices."""
    return simulate(14, "AXT1", SimConfig(**{**CFG.__dict__, "plane": "coronal",
                                             "oblique_max_deg": 20.0, "pixel_spacing_mm": 3.1,
                                             "slice_thickness_mm": 3.0}))


@pytest.fixture(scope="module")
def synth():
    """Domain-randomised intensities, sagittal."""
    return simulate(15, "SYNTH", SimConfig(**{**CFG.__dict__, "plane": "sagittal"}))


@pytest.mark.skipif(shutil.which("ismrmrd_test_xml") is None, reason="needs ismrmrd-tools")
@pytest.mark.parametrize("which", ["full", "under", "separate", "oblique", "synth"])
def test_header_validates_against_the_schema(which, request, tmp_path):
    path = tmp_path / "header.xml"
    path.write_text(build_header_xml(request.getfixturevalue(which)), encoding="utf-8")
    # the validator writes raw.xml / processed.xml into its working directory
    res = subprocess.run(
        ["ismrmrd_test_xml", str(path)], capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_header_parses_with_the_ismrmrd_package(full):
    hdr = ismrmrd.xsd.CreateFromDocument(build_header_xml(full))
    enc = hdr.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (128, 64)
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (64, 64)
    assert enc.encodedSpace.fieldOfView_mm.x == 2 * enc.reconSpace.fieldOfView_mm.x
    assert enc.encodingLimits.kspace_encoding_step_1.center == 32
    assert hdr.sequenceParameters.TI[0] == full.protocol.ti_ms
    assert hdr.acquisitionSystemInformation.receiverChannels == 4
    assert hdr.measurementInformation.protocolName == "AX FLAIR"


def _read_all(path):
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:  # no `with`: ismrmrd 1.14's Dataset is no context manager
        return [dset.read_acquisition(i) for i in range(dset.number_of_acquisitions())]
    finally:
        dset.close()


def _is(acq, bit):
    return bool(acq.flags & (1 << (bit - 1)))


@pytest.mark.parametrize("which", ["full", "under", "separate"])
def test_ismrmrd_file_holds_exactly_the_lines_written(which, request, tmp_path):
    scan = request.getfixturevalue(which)
    acqs = _read_all(write_ismrmrd(tmp_path / "a.h5", scan))
    noise = [a for a in acqs if _is(a, FLAG_NOISE)]
    assert acqs[0] is noise[0] and len(noise) == 3  # noise first: 300 samples in 128-chunks
    np.testing.assert_array_equal(np.concatenate([a.data for a in noise], axis=1), scan.noise)
    lines = [a for a in acqs if not _is(a, FLAG_NOISE)]
    want = slice_lines(scan.plan)
    assert len(lines) == scan.config.num_slices * len(want)
    for k, acq in enumerate(lines):
        s, (line, flags) = divmod(k, len(want))[0], want[k % len(want)]
        assert (acq.idx.slice, acq.idx.kspace_encode_step_1) == (s, line)
        assert acq.flags & ~((1 << 6) | (1 << 7) | (1 << 24)) == flags
        assert acq.number_of_samples == 128 and acq.center_sample == 64
        assert acq.active_channels == 4
        np.testing.assert_array_equal(acq.data, scan.kspace[s, :, line, :])
        np.testing.assert_allclose(list(acq.position), scan.geometry.positions_mm[s], atol=1e-4)
        np.testing.assert_allclose(list(acq.slice_dir), scan.geometry.slice_dir, atol=1e-6)
    calib = {(a.idx.slice, a.idx.kspace_encode_step_1) for a in lines
             if _is(a, FLAG_CALIBRATION) or _is(a, FLAG_CALIBRATION_AND_IMAGING)}
    assert calib == {(s, int(i)) for s in range(2) for i in np.flatnonzero(scan.plan.acs)}
    bit = FLAG_CALIBRATION if scan.plan.mode == "separate" else FLAG_CALIBRATION_AND_IMAGING
    assert sum(_is(a, bit) for a in lines) == 2 * int(scan.plan.acs.sum())
    assert _is(lines[-1], 25) and _is(lines[0], 7) and _is(lines[-1], 8)


def test_fastmri_layout(full, under, tmp_path):
    p = write_fastmri(tmp_path / fastmri_name("AXFLAIR", 3), full)
    assert p.name == "file_brain_AXFLAIR_sim00003.h5"
    with h5py.File(p, "r") as f:
        assert f["kspace"].shape == (2, 4, 128, 64) and f["kspace"].dtype == np.complex64
        np.testing.assert_array_equal(f["kspace"][0, 1, :, 5], full.kspace[0, 1, 5, :])
        assert b"ismrmrdHeader" in f["ismrmrd_header"][()]
        rss = f["reconstruction_rss"][()]
        assert rss.shape == (2, 64, 64)
        assert f.attrs["acquisition"] == "AXFLAIR" and f.attrs["patient_id"] == "sim00000"
        assert f.attrs["max"] == pytest.approx(rss.max())
        assert f.attrs["norm"] == pytest.approx(np.linalg.norm(rss), rel=1e-5)
        assert "mask" not in f
    q = write_fastmri(tmp_path / "u.h5", under)
    with h5py.File(q, "r") as f:
        np.testing.assert_array_equal(f["mask"][()], under.plan.imaging)
        assert f.attrs["acceleration"] == 4 and f.attrs["num_low_frequency"] == 5
        assert not np.any(f["kspace"][:, :, :, ~under.plan.imaging])
        assert "reconstruction_rss" not in f


def _expected(scan):
    """Simulated k-space with the readout oversampling removed (C, E1, RO) per slice."""
    img = ifft2c(scan.kspace)
    return fft2c(crop_readout(img, scan.config.matrix))


def _have(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _check_metadata(meta, scan):
    want = scan.metadata
    for name in ("anatomy", "contrast", "sequence", "tr_ms", "te_ms", "ti_ms", "flip_angle_deg",
                 "patient_age_y", "patient_sex", "field_strength_t", "vendor", "model",
                 "protocol_name", "series_description", "slice_plane", "slice_thickness_mm"):
        assert getattr(meta, name) == getattr(want, name), name
    assert meta.pixel_spacing_mm == pytest.approx(want.pixel_spacing_mm, rel=1e-5)


@pytest.mark.skipif(not _have("contextmri_core.io.raw.ismrmrd_reader"), reason="reader not there")
@pytest.mark.parametrize("which", ["full", "under", "separate"])
def test_round_trip_through_read_ismrmrd(which, request, tmp_path):
    from contextmri_core.io.raw.ismrmrd_reader import read_ismrmrd

    scan = request.getfixturevalue(which)
    raw = read_ismrmrd(write_ismrmrd(tmp_path / fastmri_name("X", 0), scan))
    expected = _expected(scan)
    assert len(raw.slices) == 2
    for s, sl in enumerate(raw.slices):
        rows = scan.plan.imaging
        np.testing.assert_allclose(sl.kspace[:, rows], expected[s][:, rows], rtol=0,
                                   atol=1e-5 * np.abs(expected).max())
        assert np.array_equal(sl.mask.any(axis=-1), rows)
        if sl.acs_rows is not None:
            assert np.array_equal(sl.acs_rows, scan.plan.acs)
    np.testing.assert_array_equal(raw.noise, scan.noise)
    _check_metadata(raw.metadata, scan)
    assert raw.coil_names == scan.coil_names


@pytest.mark.skipif(not _have("contextmri_core.io.raw.fastmri_reader"), reason="reader not there")
@pytest.mark.parametrize("which", ["full", "under"])
def test_round_trip_through_read_fastmri(which, request, tmp_path):
    from contextmri_core.io.raw.fastmri_reader import read_fastmri

    scan = request.getfixturevalue(which)
    raw = read_fastmri(write_fastmri(tmp_path / fastmri_name(scan.protocol.name, 0), scan))
    expected = _expected(scan) * scan.plan.imaging[None, None, :, None]
    got = np.stack([sl.kspace for sl in raw.slices])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert np.array_equal(raw.slices[0].mask.any(axis=-1), scan.plan.imaging)
    _check_metadata(raw.metadata, scan)


def test_oblique_coronal_geometry_round_trips_through_the_reader(oblique, tmp_path):
    """Directions, slice centres, FOV (so pixel spacing) and thickness come back as written,
    and the reader's slice normal names the plane the simulation says."""
    from contextmri_core.data.geometry import slice_plane
    from contextmri_core.io.raw.ismrmrd_reader import read_ismrmrd

    geom, meta = oblique.geometry, oblique.metadata
    assert 0 < geom.tilt_deg <= 20 and meta.slice_plane == "coronal"
    assert oblique.protocol.protocol_name == "CORT1" and oblique.protocol.name == "CORT1"
    raw = read_ismrmrd(write_ismrmrd(tmp_path / "cor.h5", oblique))
    assert len(raw.geometry) == 2
    for k, g in enumerate(raw.geometry):
        np.testing.assert_allclose(g.read_dir, geom.read_dir, atol=1e-6)
        np.testing.assert_allclose(g.phase_dir, geom.phase_dir, atol=1e-6)
        np.testing.assert_allclose(g.slice_dir, geom.slice_dir, atol=1e-6)
        np.testing.assert_allclose(g.position, geom.positions_mm[k], atol=1e-4)
        assert slice_plane(g.slice_dir) == meta.slice_plane
    fx, fy, fz = raw.fov_mm
    assert fx / raw.recon_matrix[1] == pytest.approx(meta.pixel_spacing_mm, rel=1e-5)
    assert fy / raw.recon_matrix[0] == pytest.approx(meta.pixel_spacing_mm, rel=1e-5)
    assert meta.pixel_spacing_mm == pytest.approx(3.1) and fz == meta.slice_thickness_mm == 3.0
    assert raw.metadata.contrast == "T1"  # "CORT1" still maps to T1
    for m in [raw.metadata] + [sl.metadata for sl in raw.slices]:  # header -> reader metadata
        assert m.pixel_spacing_mm == pytest.approx(meta.pixel_spacing_mm, rel=1e-5)
        assert m.slice_thickness_mm == pytest.approx(meta.slice_thickness_mm)
        assert m.slice_plane == "coronal"
    step = np.subtract(geom.positions_mm[1], geom.positions_mm[0])
    assert step @ np.asarray(geom.slice_dir) == pytest.approx(3.0 + 1.0)  # thickness + gap


def test_domain_randomised_scans_say_nothing_false(synth, tmp_path):
    from contextmri_core.io.raw.fastmri_reader import read_fastmri
    from contextmri_core.io.raw.ismrmrd_reader import read_ismrmrd

    meta = synth.metadata
    assert synth.protocol.name == "SAGSYNTH" and synth.protocol.domain_randomised
    for name in ("contrast", "sequence", "tr_ms", "te_ms", "ti_ms", "flip_angle_deg"):
        assert getattr(meta, name) is None, name
    assert meta.tr_all_ms == meta.te_all_ms == meta.flip_angle_all_deg == ()
    assert meta.slice_plane == "sagittal" and meta.anatomy == "brain"
    assert b"sequenceParameters" not in build_header_xml(synth).encode()
    raw = read_ismrmrd(write_ismrmrd(tmp_path / "s.h5", synth))
    fm = read_fastmri(write_fastmri(tmp_path / fastmri_name(synth.protocol.name, 0), synth))
    for m in (raw.metadata, fm.metadata):
        assert (m.contrast, m.sequence, m.tr_ms, m.te_ms, m.ti_ms, m.flip_angle_deg) == (
            None,) * 6
        assert m.anatomy == "brain"
