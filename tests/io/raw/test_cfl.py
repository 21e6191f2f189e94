"""BART cfl read/write: round trip and against the real ``bart`` binary."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from contextmri_core.errors import InputFileError
from contextmri_core.io.raw.cfl import read_cfl, write_cfl


def random_complex(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4), (3, 1, 2, 1)])
def test_round_trip(tmp_path, shape):
    x = random_complex(shape)
    write_cfl(tmp_path / "x", x)
    assert (tmp_path / "x.hdr").read_text().splitlines()[1].split() == [str(d) for d in shape]
    assert (tmp_path / "x.cfl").stat().st_size == x.size * 8
    y = read_cfl(tmp_path / "x.cfl")  # with or without the extension
    expected = x.reshape(shape[:3]) if shape == (3, 1, 2, 1) else x
    assert y.dtype == np.complex64
    np.testing.assert_array_equal(y, expected)


def test_fortran_order_on_disk(tmp_path):
    x = np.arange(6).reshape(2, 3).astype(np.complex64)
    write_cfl(tmp_path / "x", x)
    raw = np.fromfile(tmp_path / "x.cfl", dtype=np.complex64).real
    np.testing.assert_array_equal(raw, [0, 3, 1, 4, 2, 5])


def test_against_bart_fft(tmp_path):
    bart = shutil.which("bart")
    assert bart, "bart missing: install Debian's bart"
    x = random_complex((8, 6, 3))
    write_cfl(tmp_path / "in", x)
    # BART's fft is centred; -u makes it unitary: our fft2c convention on axes (0, 1).
    subprocess.run([bart, "fft", "-u", "3", str(tmp_path / "in"), str(tmp_path / "out")],
                   check=True, capture_output=True, timeout=60)
    fft2c = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(0, 1)), axes=(0, 1),
                                        norm="ortho"), axes=(0, 1))
    np.testing.assert_allclose(read_cfl(tmp_path / "out"), fft2c, rtol=1e-4, atol=1e-4)
    subprocess.run([bart, "fft", "-n", "3", str(tmp_path / "in"), str(tmp_path / "raw")],
                   check=True, capture_output=True, timeout=60)
    np.testing.assert_allclose(read_cfl(tmp_path / "raw"), np.fft.fft2(x, axes=(0, 1)),
                               rtol=1e-4, atol=1e-4)
    subprocess.run([bart, "ones", "3", "4", "2", "3", str(tmp_path / "ones")],
                   check=True, capture_output=True, timeout=60)
    np.testing.assert_array_equal(read_cfl(tmp_path / "ones"), np.ones((4, 2, 3)))


def test_bad_cfl_raises(tmp_path):
    with pytest.raises(InputFileError, match="nothing.hdr"):
        read_cfl(tmp_path / "nothing")
    write_cfl(tmp_path / "short", random_complex((4, 4)))
    (tmp_path / "short.hdr").write_text("# Dimensions\n4 5\n")
    with pytest.raises(InputFileError, match="short.cfl: holds 16 values"):
        read_cfl(tmp_path / "short")
