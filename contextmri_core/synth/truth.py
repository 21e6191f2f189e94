"""The noise-free truth of one slice: tissue fractions -> magnitude (sequence physics or
domain-randomised intensities) -> times bias field, receive shading and background phase.

``image = magnitude * bias * rss(S_phys) * exp(i phase)``, so that with maps normalised to
``sum_c |S_c|^2 = 1`` the coil images are ``S_c * image`` (what ``scan`` Fourier transforms).
The training-shard path asks for the image only (``with_maps=False``) and skips the complex
coil maps, k-space and noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from contextmri_core.synth import coils as coil_mod
from contextmri_core.synth import fields
from contextmri_core.synth.domain_random import (
    RandomContrast, draw_random_contrast, random_magnitude,
)
from contextmri_core.synth.image import magnitude, tissue_weights
from contextmri_core.synth.orientation import ScanGeometry
from contextmri_core.synth.protocols import Protocol
from contextmri_core.synth.render import scanner_points, slice_fractions
from contextmri_core.synth.tissue import tissue_table


@dataclass(frozen=True)
class ScanFields:
    """What one scan draws once for all its slices: tissue signals ``weights (T,)`` (physics)
    or a ``random_contrast`` (domain-randomised), the coil array and the 3D bias field."""

    weights: Optional[np.ndarray]
    random_contrast: Optional[RandomContrast]
    array: coil_mod.CoilArray
    bias: fields.BiasField


@dataclass(frozen=True)
class SliceTruth:
    """image ``(n, n)`` complex64, maps ``(C, n, n)`` complex64 (None when not asked for),
    fractions ``(T, n, n)`` float32."""

    image: np.ndarray
    maps: Optional[np.ndarray]
    fractions: np.ndarray


def draw_scan_fields(protocol: Protocol, num_coils: int, field_strength_t: float,
                     r_tissue: np.random.Generator, r_coils: np.random.Generator,
                     r_fields: np.random.Generator) -> ScanFields:
    """Per-scan draws: relaxation jitter and signals (or random intensities), coils, bias."""
    table = tissue_table(field_strength_t, r_tissue)
    if protocol.domain_randomised:
        weights, contrast = None, draw_random_contrast(r_tissue)
    else:
        weights, contrast = tissue_weights(protocol, table), None
    array = coil_mod.head_array(num_coils, r_coils)
    return ScanFields(weights, contrast, array, fields.draw_bias_field(r_fields))


def slice_truth(subject, geom: ScanGeometry, k: int, scan_fields: ScanFields,
                rng: np.random.Generator, with_maps: bool = True) -> SliceTruth:
    """Truth of slice ``k`` of ``geom``; ``rng`` draws the texture (domain-randomised) and the
    background phase of this slice."""
    frac = slice_fractions(subject, geom, k)
    if scan_fields.random_contrast is not None:
        mag = random_magnitude(frac, scan_fields.random_contrast, rng, geom.pixel_spacing_mm)
    else:
        mag = magnitude(frac, scan_fields.weights)
    points = scanner_points(geom, k)
    phase = fields.background_phase(mag.shape, rng)
    maps = None
    if with_maps:
        maps, shading = coil_mod.normalise(coil_mod.sensitivities_at(scan_fields.array, points))
    else:
        shading = coil_mod.shading_at(scan_fields.array, points)
    image = mag * scan_fields.bias.at(points) * shading * np.exp(1j * phase)
    return SliceTruth(image.astype(np.complex64), maps, frac)
