"""Which phase-encode lines a simulated acquisition acquires, and which it flags as calibration.

Fully sampled scans flag their centre block as calibration-and-imaging (embedded ACS).
Undersampled scans use ContextMRI's ``uniform1d`` mask; the centre block is either embedded
(imaging lines flagged ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``) or acquired separately
(extra lines flagged ``ACQ_IS_PARALLEL_CALIBRATION``, imaging lines as the mask says).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from contextmri_core.errors import ConfigError
from contextmri_core.physics.masks import UNIFORM1D_CENTER_FRACTION, center_block, uniform1d

CALIBRATION_MODES = ("embedded", "separate")


@dataclass(frozen=True)
class SamplingPlan:
    """imaging: ``(E1,)`` bool lines acquired for imaging; acs: ``(E1,)`` bool calibration lines;
    ``mode`` "embedded" or "separate"; ``acceleration`` R (1 = fully sampled)."""

    imaging: np.ndarray
    acs: np.ndarray
    mode: str
    acceleration: int

    @property
    def num_low_frequency(self) -> int:
        return int(self.acs.sum())


def center_fraction_for(acceleration: int) -> float:
    """ContextMRI's centre fraction (x4: 0.08, x8: 0.04, else 0.32/R; fully sampled 0.08)."""
    if acceleration <= 1:
        return 0.08
    return UNIFORM1D_CENTER_FRACTION.get(int(acceleration), 0.32 / acceleration)


def sampling_plan(
    num_lines: int, acceleration: int, seed: int, calibration: str = "embedded",
    center_fraction: Optional[float] = None,
) -> SamplingPlan:
    """Plan for ``num_lines`` phase encodes at acceleration R (``uniform1d`` with ``seed``)."""
    if calibration not in CALIBRATION_MODES:
        raise ConfigError(f"calibration {calibration!r}: use one of {CALIBRATION_MODES}")
    if int(acceleration) < 1:
        raise ConfigError(f"acceleration must be an integer >= 1, got {acceleration}")
    cf = center_fraction if center_fraction is not None else center_fraction_for(acceleration)
    acs = np.zeros(num_lines, dtype=bool)
    acs[center_block(num_lines, max(int(num_lines * cf), 1))] = True
    if int(acceleration) == 1:
        return SamplingPlan(np.ones(num_lines, dtype=bool), acs, "embedded", 1)
    imaging = uniform1d(num_lines, int(acceleration), int(seed), cf)
    return SamplingPlan(imaging, acs, calibration, int(acceleration))
