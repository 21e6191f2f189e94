"""A small analytic multi-coil phantom for physics unit tests (no anatomy, no files)."""

from __future__ import annotations

import numpy as np
import torch

from contextmri_core.physics.fft import fft2c


def phantom(ny: int = 128, nx: int = 128, coils: int = 8, seed: int = 0):
    """Ellipse phantom (inside 60-75 % of the FOV) with texture and smooth phase, and smooth
    Gaussian-falloff coil maps normalised to unit sum-of-squares everywhere.

    Returns ``(image (ny,nx), maps (C,ny,nx), kspace (C,ky,kx))`` as complex64 torch tensors.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1:1:ny * 1j, -1:1:nx * 1j]
    body = ((x / 0.6) ** 2 + (y / 0.75) ** 2) < 1
    inner = ((x / 0.25) ** 2 + ((y - 0.15) / 0.35) ** 2) < 1
    spots = sum(((x - rng.uniform(-.4, .4)) ** 2 + (y - rng.uniform(-.5, .5)) ** 2) < 0.006
                for _ in range(6))
    mag = body * (0.6 + 0.2 * np.cos(5 * x) * np.sin(3 * y)) + 0.4 * inner + 0.3 * (spots > 0) * body
    img = mag * np.exp(1j * (0.8 * x + 0.5 * y ** 2))
    ang = np.linspace(0, 2 * np.pi, coils, endpoint=False)
    maps = np.stack([np.exp(-((x - 1.3 * np.cos(a)) ** 2 + (y - 1.3 * np.sin(a)) ** 2) / 1.8)
                     * np.exp(1j * (0.7 * x * np.cos(a) + 0.4 * y + a)) for a in ang])
    maps = maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    img_t = torch.from_numpy(img.astype(np.complex64))
    maps_t = torch.from_numpy(maps.astype(np.complex64))
    return img_t, maps_t, fft2c(maps_t * img_t)
