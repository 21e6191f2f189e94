"""Ranges that each scan's plane, grid, slice thickness and contrast kind are drawn from.

``draw_scan_config`` turns ``ScanRanges`` into one concrete ``SimConfig`` with an explicit
generator (every draw is always taken, so later draws do not depend on the ranges). With a
pixel-spacing range, the matrix is drawn among those whose field of view lies in
``fov_range_mm`` (a head-sized window: 0.5 mm pixels get large matrices, 2 mm pixels small
ones); the FOV is rounded to 1 mm as a console does and the spacing follows from it.
Without one, the spacing is ``fov_mm / matrix`` (the old fixed-FOV behaviour).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from contextmri_core.errors import ConfigError, check_fields
from contextmri_core.synth.orientation import PLANES
from contextmri_core.synth.scan import SimConfig

#: Step between the matrix sizes drawn (clinical matrices are multiples of 16).
MATRIX_STEP = 16


@dataclass(frozen=True)
class ScanRanges:
    """Uniform ranges (lo, hi) per scan; ``planes`` are drawn with equal probability and a
    scan is domain-randomised (``protocols.SYNTH``) with ``domain_random_fraction``."""

    planes: Tuple[str, ...] = ("axial",)
    oblique_max_deg: float = 0.0
    matrix: Tuple[int, int] = (128, 128)
    pixel_spacing_mm: Optional[Tuple[float, float]] = None
    fov_mm: float = 240.0
    fov_range_mm: Tuple[float, float] = (160.0, 280.0)
    slice_thickness_mm: Tuple[float, float] = (5.0, 5.0)
    domain_random_fraction: float = 0.0

    def __post_init__(self) -> None:
        sp = self.pixel_spacing_mm
        checks = (
            ("planes", bool(self.planes) and all(p in PLANES for p in self.planes),
             f"use one or more of {', '.join(PLANES)}"),
            ("oblique_max_deg", 0.0 <= self.oblique_max_deg <= 45.0, "use 0..45"),
            ("matrix", 16 <= self.matrix[0] <= self.matrix[1] <= 1024,
             "use 16 <= lo <= hi <= 1024"),
            ("pixel_spacing_mm", sp is None or 0.1 <= sp[0] <= sp[1] <= 10.0,
             "use 0.1 <= lo <= hi <= 10 mm"),
            ("fov_range_mm", 0 < self.fov_range_mm[0] <= self.fov_range_mm[1],
             "use 0 < lo <= hi"),
            ("slice_thickness_mm", 0.5 <= self.slice_thickness_mm[0]
             <= self.slice_thickness_mm[1] <= 20.0, "use 0.5 <= lo <= hi <= 20 mm"),
            ("domain_random_fraction", 0.0 <= self.domain_random_fraction <= 1.0, "use 0..1"),
        )
        check_fields(self, checks)


def matrix_choices(lo: int, hi: int) -> List[int]:
    """``lo, lo + 16, ...`` up to ``hi`` (``hi`` included), even sizes only."""
    values = list(range(int(lo), int(hi) + 1, MATRIX_STEP))
    if values[-1] != int(hi):
        values.append(int(hi))
    values = [v + (v % 2) for v in values]
    return sorted(set(values))


def _grid(rng: np.random.Generator, ranges: ScanRanges) -> Tuple[int, Optional[float]]:
    """(matrix, pixel spacing or None for ``fov_mm / matrix``)."""
    choices = matrix_choices(*ranges.matrix)
    u_spacing, u_matrix = rng.uniform(), rng.uniform()
    if ranges.pixel_spacing_mm is None:
        return choices[min(int(u_matrix * len(choices)), len(choices) - 1)], None
    lo, hi = ranges.pixel_spacing_mm
    spacing = lo + u_spacing * (hi - lo)
    flo, fhi = ranges.fov_range_mm
    allowed = [m for m in choices if flo <= m * spacing <= fhi]
    if not allowed:  # no matrix gives a head-sized FOV: take the nearest
        allowed = [min(choices, key=lambda m: min(abs(m * spacing - flo), abs(m * spacing - fhi)))]
    matrix = allowed[min(int(u_matrix * len(allowed)), len(allowed) - 1)]
    fov = max(float(np.round(matrix * spacing)), 1.0)
    return matrix, fov / matrix


def draw_scan_config(rng: np.random.Generator, ranges: ScanRanges, base: SimConfig
                     ) -> SimConfig:
    """``base`` with plane, matrix, pixel spacing, slice thickness and
    the oblique limit drawn from ``ranges``."""
    plane = ranges.planes[int(rng.integers(len(ranges.planes)))]
    tlo, thi = ranges.slice_thickness_mm
    thickness = round(float(tlo + rng.uniform() * (thi - tlo)), 1)
    matrix, spacing = _grid(rng, ranges)
    return dataclasses.replace(base, plane=plane, matrix=matrix, pixel_spacing_mm=spacing,
                               fov_mm=ranges.fov_mm if spacing is None else matrix * spacing,
                               slice_thickness_mm=max(thickness, 0.5),
                               oblique_max_deg=ranges.oblique_max_deg)


def draws_domain_random(rng: np.random.Generator, ranges: ScanRanges) -> bool:
    """Whether a scan gets domain-randomised intensities (one draw, always taken)."""
    return bool(rng.uniform() < ranges.domain_random_fraction)


def parse_range(values, name: str, cast=float) -> Tuple:
    """One or two CLI numbers -> (lo, hi); a ``ConfigError`` naming ``--name`` otherwise."""
    vals = [cast(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or vals[0] > vals[1]:
        raise ConfigError(f"--{name} {values!r}: give one value or LO HI with LO <= HI")
    return tuple(vals)


def parse_choices(text: str, allowed, what: str) -> List[str]:
    """Comma-separated ``text`` -> names, each one of ``allowed``; a ``ConfigError`` naming
    ``--what`` and the choices otherwise."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    allowed = tuple(allowed)
    if not items or any(t not in allowed for t in items):
        raise ConfigError(f"--{what} {text!r}: choose from {','.join(allowed)}")
    return items
