"""Centred orthonormal FFTs in numpy for the file/stream side (readout-oversampling removal,
simulation). Same convention as the torch ``physics.fft``: ``fftshift(fft(ifftshift(x)))``."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def fftc(x: np.ndarray, axes: Sequence[int] = (-2, -1)) -> np.ndarray:
    """Centred orthonormal FFT over ``axes``."""
    axes = tuple(axes)
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"),
                           axes=axes)


def ifftc(k: np.ndarray, axes: Sequence[int] = (-2, -1)) -> np.ndarray:
    """Centred orthonormal inverse FFT over ``axes``."""
    axes = tuple(axes)
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(k, axes=axes), axes=axes, norm="ortho"),
                           axes=axes)


def crop_center(x: np.ndarray, num: int, axis: int = -1) -> np.ndarray:
    """The centred ``num`` samples of ``axis`` (``n//2`` stays the centre)."""
    start = x.shape[axis] // 2 - num // 2
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, start + num)
    return x[tuple(index)]
