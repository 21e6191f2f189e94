"""FFTs and linear operators: unitarity, centring, and adjointness of every operator."""

import numpy as np
import pytest
import torch

from contextmri_core.errors import ShapeError
from contextmri_core.physics.fft import fft2c, fftc, ifft2c, ifftc
from contextmri_core.physics.linop import (FFT2C, CoilExpand, Compose, Mask, Sense,
                                           adjointness_error)


def crandn(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def test_fft2c_is_unitary_and_centred():
    x = crandn(2, 3, 16, 12)
    assert torch.allclose(ifft2c(fft2c(x)), x, atol=1e-5)
    assert torch.allclose(torch.linalg.vector_norm(fft2c(x)), torch.linalg.vector_norm(x), rtol=1e-5)
    delta = torch.zeros(16, 12, dtype=torch.complex64)
    delta[8, 6] = 1  # the centre pixel transforms to a flat spectrum with zero phase
    k = fft2c(delta)
    assert torch.allclose(k, torch.full_like(k, 1 / np.sqrt(16 * 12)), atol=1e-6)


def test_fftc_matches_numpy_centred_convention():
    x = crandn(10, 7)
    ref = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x.numpy()), norm="ortho"))
    assert np.allclose(fftc(x, (-2, -1)).numpy(), ref, atol=1e-5)
    assert torch.allclose(ifftc(fftc(x, (0,)), (0,)), x, atol=1e-5)


def _operators(b=2, c=4, ny=20, nx=18):
    maps = crandn(b, c, ny, nx, seed=1)
    mask = (torch.rand(b, ny, nx, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    img, coil, ksp = (b, ny, nx), (b, c, ny, nx), (b, c, ny, nx)
    return [
        ("fft", FFT2C(), img, img),
        ("mask", Mask(mask), ksp, ksp),
        ("coils", CoilExpand(maps), img, coil),
        ("sense", Sense(maps, mask), img, ksp),
        ("sense_shared_maps", Sense(maps[0], mask[0]), img, ksp),
        ("compose", Compose([Mask(mask), FFT2C(), CoilExpand(maps)]), img, ksp),
    ]


@pytest.mark.parametrize("name,op,xs,ys", _operators(), ids=lambda v: v if isinstance(v, str) else "")
def test_adjointness(name, op, xs, ys):
    err = adjointness_error(op, crandn(*xs, seed=3), crandn(*ys, seed=4))
    assert err < 1e-5, name


def test_normal_equals_adjoint_of_forward():
    _, op, xs, _ = _operators()[3][0], _operators()[3][1], _operators()[3][2], None
    x = crandn(*xs, seed=5)
    assert torch.allclose(op.normal(x), op.adjoint(op.forward(x)), atol=1e-5)


def test_adjointness_checks_shapes_first():
    op = CoilExpand(crandn(4, 8, 8))
    with pytest.raises(ShapeError):
        adjointness_error(op, crandn(1, 8, 8), crandn(1, 3, 8, 8))


def test_bad_adjoint_is_detected():
    class Wrong(FFT2C):
        def adjoint(self, y):
            return fft2c(y)  # not the adjoint
    assert adjointness_error(Wrong(), crandn(1, 8, 8), crandn(1, 8, 8, seed=9)) > 1e-2


def test_sense_maps_in_phantom_are_normalised():
    from tests.phantom import phantom
    img, maps, ksp = phantom(32, 32, 4)
    s = torch.sum(torch.abs(maps) ** 2, 0)
    assert torch.allclose(s[s > 0], torch.ones_like(s[s > 0]), atol=1e-5)
    assert ksp.shape == (4, 32, 32) and ksp.dtype == torch.complex64
