"""Domain-randomised tissue intensities, as SynthSeg draws them (Billot et al., MedIA 2023).

Each tissue class (``anatomy.TISSUES``) gets a random mean in [0, 1] and a random smooth
multiplicative texture (``1 + a_t * n_t(x)``, ``n_t`` unit-variance noise smoothed over
``texture_mm``, ``a_t`` up to 0.25), so a prior trained on them learns the anatomy (shapes
and partial volume) rather than one table of contrasts. The images carry no contrast,
sequence or timing in their metadata (``protocols.SYNTH``): nothing about them is true of
any real sequence. Air stays 0; coil shading, bias field and phase come on top as usual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

from contextmri_core.synth.anatomy import TISSUES
from contextmri_core.synth.geometry import linear_weights

TEXTURE_MAX = 0.25
TEXTURE_MM = (2.0, 10.0)


@dataclass(frozen=True)
class RandomContrast:
    """Per-tissue means ``(T,)``, texture amplitudes ``(T,)`` and the texture scale (mm)."""

    means: Tuple[float, ...]
    texture: Tuple[float, ...]
    texture_mm: float


def draw_random_contrast(rng: np.random.Generator) -> RandomContrast:
    """Means U(0, 1), texture amplitudes U(0, 0.25), scale U(2, 10) mm (one per scan)."""
    means = rng.uniform(0.0, 1.0, size=len(TISSUES))
    texture = rng.uniform(0.0, TEXTURE_MAX, size=len(TISSUES))
    return RandomContrast(tuple(float(m) for m in means), tuple(float(t) for t in texture),
                          float(rng.uniform(*TEXTURE_MM)))


def _texture(rng: np.random.Generator, n: int, pixel_mm: float, scale_mm: float) -> np.ndarray:
    """Unit-variance smooth noise ``(n, n)`` float32: white noise on a lattice of
    ``scale_mm / 2`` cells smoothed by one cell, interpolated bilinearly to the pixels."""
    cell = scale_mm / 2.0
    fov = n * pixel_mm
    m = int(math.ceil(fov / cell)) + 3
    coarse = ndi.gaussian_filter(rng.standard_normal((m, m)), 1.0, mode="wrap")
    coarse /= max(float(coarse.std()), 1e-9)
    lattice = np.arange(m, dtype=np.float64) * cell - cell
    w = linear_weights(np.arange(n) * pixel_mm, lattice)
    return (w @ coarse.astype(np.float32) @ w.T).astype(np.float32)


def random_magnitude(fractions: np.ndarray, contrast: RandomContrast, rng: np.random.Generator,
                     pixel_mm: float) -> np.ndarray:
    """``sum_t f_t * mean_t * max(0, 1 + a_t n_t)``: magnitude ``(n, n)`` float32 of one slice
    from its fractions ``(T, n, n)``; a fresh texture per tissue present in the slice."""
    n = fractions.shape[-1]
    out = np.zeros(fractions.shape[1:], np.float32)
    for t in range(fractions.shape[0]):
        noise = _texture(rng, n, pixel_mm, contrast.texture_mm)  # drawn for every tissue
        if not fractions[t].any():
            continue
        level = np.maximum(1.0 + np.float32(contrast.texture[t]) * noise, 0.0)
        out += fractions[t] * np.float32(contrast.means[t]) * level
    return out
