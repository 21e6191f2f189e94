"""fastMRI .h5 reader on files with the real layout, built with h5py from the brain header."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import h5py
import numpy as np
import pytest

from contextmri_core.data.encoding import parse_encoding
from contextmri_core.data.prompt import build_prompt
from contextmri_core.errors import InputFileError
from contextmri_core.io.raw.fastmri_reader import read_fastmri
from contextmri_core.io.raw.reader import read_scan

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HEADER = (FIXTURES / "fastmri_brain_axflair_header.xml").read_bytes()
SLICES, COILS, RO, E1, RECON_X = 2, 3, 640, 24, 320
PROMPT = ("brain, Slice 1, FLAIR, Sequence: TurboSpinEcho, TR: 9000, TE: 86, TI: 2500, "
          "Flip angle: 150")


def fft_c(x: np.ndarray, axis: int) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x, axes=axis), axis=axis, norm="ortho"),
                           axes=axis)


def ifft_c(x: np.ndarray, axis: int) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(x, axes=axis), axis=axis,
                                       norm="ortho"), axes=axis)


def truth_and_kspace(seed: int = 0):
    """Recon-grid truth (S, C, E1, 320) and fastMRI k-space (S, C, 640, E1) of the same object."""
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((SLICES, COILS, E1, RECON_X)) + 1j * rng.standard_normal(
        (SLICES, COILS, E1, RECON_X))
    image = np.zeros((SLICES, COILS, E1, RO), dtype=np.complex128)
    image[..., RO // 2 - RECON_X // 2:RO // 2 + RECON_X // 2] = ifft_c(truth, -1)
    kspace = fft_c(image, -1).transpose(0, 1, 3, 2)
    return truth.astype(np.complex64), kspace.astype(np.complex64)


def write_fastmri(path: Path, kspace: np.ndarray, mask: Optional[np.ndarray] = None,
                  header: Optional[bytes] = HEADER) -> Path:
    with h5py.File(path, "w") as f:
        f["kspace"] = kspace
        if header is not None:
            f["ismrmrd_header"] = np.frombuffer(header, dtype="S%d" % len(header))[0]
        if mask is not None:
            f["mask"] = mask
            f.attrs["acceleration"] = 4
            f.attrs["num_low_frequency"] = 6
        f.attrs.update({"acquisition": "AXFLAIR", "max": 1e-3, "norm": 0.1, "patient_id": "x"})
    return path


def centre_plus_equispaced() -> np.ndarray:
    mask = np.zeros(E1, dtype=bool)
    mask[9:15] = True  # 6 low-frequency lines around row 12
    mask[1::4] = True  # 1, 5, 9, 13, 17, 21: none adjacent to the block edges 8/15
    return mask


@pytest.fixture
def brain_files(tmp_path):
    truth, kspace = truth_and_kspace()
    mask = centre_plus_equispaced()
    under = kspace * mask[None, None, None, :]
    return truth, mask, {
        "full": write_fastmri(tmp_path / "file_brain_AXFLAIR_200_6002425.h5", kspace),
        "masked": write_fastmri(tmp_path / "file_brain_AXFLAIR_test.h5", under, mask),
        "nomask": write_fastmri(tmp_path / "file_brain_AXFLAIR_nomask.h5", under),
    }


def test_fully_sampled_file(brain_files):
    truth, _, files = brain_files
    scan = read_fastmri(files["full"])
    assert len(scan.slices) == SLICES and scan.num_coils == COILS and scan.noise is None
    assert scan.encoded_matrix == (E1, RECON_X) and scan.recon_matrix == (260, 320)
    assert scan.readout_oversampling == 2.0 and len(scan.coil_names) == 16
    for i, sl in enumerate(scan.slices):
        assert sl.kspace.dtype == np.complex64 and sl.kspace.shape == (COILS, E1, RECON_X)
        np.testing.assert_allclose(sl.kspace, truth[i], atol=2e-5)
        assert sl.mask.shape == (E1, RECON_X) and sl.mask.all() and sl.acs_rows.all()
        assert sl.acs is None and sl.metadata.slice_index == i
    assert build_prompt(scan.slices[1].metadata) == PROMPT


@pytest.mark.parametrize("which", ["masked", "nomask"])
def test_undersampled_file_mask_and_detected_acs(brain_files, which):
    truth, mask, files = brain_files
    scan = read_scan(files[which])
    sl = scan.slices[0]
    np.testing.assert_array_equal(sl.mask.any(axis=1), mask)
    assert sl.mask.dtype == np.float32 and sl.mask[mask].all()
    assert np.flatnonzero(sl.acs_rows).tolist() == list(range(9, 15))
    np.testing.assert_allclose(sl.kspace[:, mask], truth[0][:, mask], atol=2e-5)
    assert not sl.kspace[:, ~mask].any()
    assert sl.acceleration == pytest.approx(E1 / mask.sum())
    assert scan.metadata.anatomy == "brain" and scan.metadata.contrast == "FLAIR"


def test_anatomy_override_and_header_encoding(brain_files):
    _, _, files = brain_files
    assert read_fastmri(files["full"], anatomy_override="knee").metadata.anatomy == "knee"
    enc = parse_encoding(HEADER)
    assert enc.encoded_matrix == (640, 264, 1) and enc.recon_matrix == (320, 260, 1)
    assert enc.limit("kspace_encoding_step_1").center == 99 and enc.num_coils == 16
    assert enc.calibration_mode == "other" and enc.recon_fov_mm == (220.0, 178.75, 5.0)


def test_bad_fastmri_files_raise_input_file_error(tmp_path):
    _, kspace = truth_and_kspace()
    cases = {
        "nokspace.h5": ("no 'kspace'", None),
        "float.h5": ("must be complex", kspace.real.copy()),
        "ndim.h5": ("must be (slices", kspace[0, 0]),
        "badmask.h5": ("'mask' has 5 entries", kspace),
        "noheader.h5": ("no 'ismrmrd_header'", kspace),
    }
    for name, (problem, data) in cases.items():
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            if data is not None:
                f["kspace"] = data
            if name != "noheader.h5":
                f["ismrmrd_header"] = np.frombuffer(HEADER, dtype="S%d" % len(HEADER))[0]
            if name == "badmask.h5":
                f["mask"] = np.ones(5, dtype=bool)
        layout_ok = data is not None
        with pytest.raises(InputFileError) as info:
            (read_fastmri if not layout_ok else read_scan)(path)
        assert name in str(info.value) and problem in str(info.value), str(info.value)
    with pytest.raises(InputFileError, match="gone.h5: no such file"):
        read_fastmri(tmp_path / "gone.h5")
