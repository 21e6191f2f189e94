"""ESPIRiT maps agree with BART's ``ecalib`` (the reference implementation, Debian ``bart``)."""

import shutil
import subprocess

import numpy as np
import torch

from contextmri_core.io.raw.cfl import read_cfl, write_cfl
from contextmri_core.physics.calibration import calibration_data
from contextmri_core.physics.coils import espirit_maps
from contextmri_core.physics.masks import to_2d, uniform1d
from tests.phantom import phantom


def bart_ecalib(kspace: np.ndarray, workdir) -> np.ndarray:
    """``bart ecalib -m1 -c 0.95`` on ``(C, ky, kx)`` k-space; BART detects the calibration
    region itself (limit set to the whole matrix so a rectangular block is used)."""
    assert shutil.which("bart"), "Debian package 'bart' is missing (run .ci/install)"
    c, ny, nx = kspace.shape
    write_cfl(workdir / "k", np.transpose(kspace, (1, 2, 0))[:, :, None, :])
    subprocess.run(["bart", "ecalib", "-m1", "-c", "0.95", "-r", f"{ny}:{nx}:1",
                    str(workdir / "k"), str(workdir / "m")], check=True, capture_output=True)
    return np.transpose(read_cfl(workdir / "m").reshape(ny, nx, c), (2, 0, 1))


def normalised_inner(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = np.abs(np.sum(np.conj(a) * b, 0))
    return num / np.maximum(np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0), 1e-12)


def test_espirit_agrees_with_bart_ecalib_on_1d_undersampled_data(tmp_path):
    img, _, ksp = phantom(160, 128, 8, seed=2)
    mask = to_2d(uniform1d(160, 4, seed=0), 128)
    y = (ksp.numpy() * mask).astype(np.complex64)
    ref = bart_ecalib(y, tmp_path)
    ours = espirit_maps(torch.from_numpy(calibration_data(y, mask)), (160, 128)).numpy()
    inside = np.abs(img.numpy()) > 0.05
    ip = normalised_inner(ref, ours)[inside]
    assert np.median(ip) >= 0.99
    assert np.percentile(ip, 5) >= 0.95
