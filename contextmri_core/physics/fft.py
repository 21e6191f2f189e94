"""Centered, orthonormal FFTs over the last two axes (image <-> k-space), any device."""

from __future__ import annotations

from typing import Sequence

import torch

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Image ``(..., ny, nx)`` -> centred k-space, ``norm="ortho"`` (unitary)."""
    x = torch.fft.ifftshift(x, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(x, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred k-space ``(..., ky, kx)`` -> image, ``norm="ortho"`` (unitary)."""
    k = torch.fft.ifftshift(k, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(k, dim=_DIMS, norm="ortho"), dim=_DIMS)


def fftc(x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Centred orthonormal FFT over ``dims``."""
    dims = tuple(dims)
    x = torch.fft.ifftshift(x, dim=dims)
    return torch.fft.fftshift(torch.fft.fftn(x, dim=dims, norm="ortho"), dim=dims)


def ifftc(k: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Centred orthonormal inverse FFT over ``dims``."""
    dims = tuple(dims)
    k = torch.fft.ifftshift(k, dim=dims)
    return torch.fft.fftshift(torch.fft.ifftn(k, dim=dims, norm="ortho"), dim=dims)
