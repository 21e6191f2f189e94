"""Sampling masks, each drawn from an explicit seed (numpy ``default_rng``) so they reproduce.

1D masks select phase-encode lines: they return ``(num_lines,)`` bool arrays; ``to_2d`` expands
them to the ``(ky, kx)`` contract. ``poisson2d`` returns ``(ky, kx)`` directly.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from contextmri_core.errors import ConfigError

#: ContextMRI's centre fractions for uniform1d.
UNIFORM1D_CENTER_FRACTION = {4: 0.08, 8: 0.04}


def _check(num_lines: int, acceleration: float) -> None:
    if num_lines < 2:
        raise ConfigError(f"num_lines must be >= 2, got {num_lines}")
    if not acceleration >= 1:
        raise ConfigError(f"acceleration must be >= 1, got {acceleration}")


def center_block(num_lines: int, num_center: int) -> slice:
    """The centred block of ``num_center`` lines that ContextMRI and fastMRI keep."""
    start = num_lines // 2 - num_center // 2
    return slice(start, start + num_center)


def uniform1d(
    num_lines: int, acceleration: int, seed: int, center_fraction: Optional[float] = None
) -> np.ndarray:
    """ContextMRI's uniform1d: a centre block of ``int(N*cf)`` lines plus lines drawn
    uniformly at random (without replacement) from outside it, ``N // R`` lines in all.

    ``center_fraction`` defaults to 0.08 at x4 and 0.04 at x8 (0.32/R otherwise).
    """
    _check(num_lines, acceleration)
    cf = center_fraction if center_fraction is not None else UNIFORM1D_CENTER_FRACTION.get(
        int(acceleration), 0.32 / acceleration)
    num_center = max(int(num_lines * cf), 1)
    mask = np.zeros(num_lines, dtype=bool)
    mask[center_block(num_lines, num_center)] = True
    outside = np.flatnonzero(~mask)
    extra = max(int(num_lines // acceleration) - num_center, 0)
    rng = np.random.default_rng(seed)
    mask[rng.choice(outside, size=min(extra, outside.size), replace=False)] = True
    return mask


def fastmri_random(
    num_lines: int, acceleration: float, center_fraction: float, seed: int
) -> np.ndarray:
    """fastMRI ``RandomMaskFunc``: centre ``round(N*cf)`` lines, others with probability
    ``(N/R - N_low) / (N - N_low)`` (so N/R lines are expected)."""
    _check(num_lines, acceleration)
    num_low = int(round(num_lines * center_fraction))
    prob = (num_lines / acceleration - num_low) / (num_lines - num_low)
    rng = np.random.default_rng(seed)
    mask = rng.uniform(size=num_lines) < prob
    pad = (num_lines - num_low + 1) // 2
    mask[pad:pad + num_low] = True
    return mask


def fastmri_equispaced(
    num_lines: int, acceleration: int, center_fraction: float, seed: int
) -> np.ndarray:
    """fastMRI ``EquispacedMaskFractionFunc``: centre lines plus equispaced lines with a random
    offset, the spacing adjusted so that N/R lines are kept in all."""
    _check(num_lines, acceleration)
    num_low = int(round(num_lines * center_fraction))
    mask = np.zeros(num_lines, dtype=bool)
    pad = (num_lines - num_low + 1) // 2
    mask[pad:pad + num_low] = True
    adjusted = (acceleration * (num_low - num_lines)) / (num_low * acceleration - num_lines)
    rng = np.random.default_rng(seed)
    offset = int(rng.integers(0, max(int(round(adjusted)), 1)))
    mask[np.around(np.arange(offset, num_lines, adjusted)).astype(np.int64)] = True
    return mask


def poisson2d(
    shape: Tuple[int, int], acceleration: float, seed: int,
    calib: Optional[Tuple[int, int]] = None,
) -> np.ndarray:
    """Variable-density Poisson-disc mask over ``(ky, kx)`` (sigpy) with a fully sampled
    ``calib`` region in the centre (default 24x24, or 1/8 of each side if smaller); bool."""
    import sigpy.mri

    if len(shape) != 2:
        raise ConfigError(f"poisson2d needs a 2D shape (ky, kx), got {shape}")
    if not acceleration > 1:
        raise ConfigError(f"poisson2d acceleration must be > 1, got {acceleration}")
    if calib is None:
        calib = (min(24, shape[0] // 8), min(24, shape[1] // 8))
    try:
        mask = sigpy.mri.poisson(tuple(int(s) for s in shape), float(acceleration),
                                 calib=tuple(int(c) for c in calib), dtype=np.float32,
                                 crop_corner=True, seed=int(seed))
    except ValueError as exc:
        raise ConfigError(f"poisson2d x{acceleration} on {tuple(shape)} with a {tuple(calib)} "
                          f"calibration region is not possible: {exc}") from exc
    return np.asarray(mask) > 0


def to_2d(mask1d: np.ndarray, num_readout: int) -> np.ndarray:
    """Expand a ``(ky,)`` line mask to the ``(ky, kx)`` contract (float32, 1 = acquired)."""
    return np.repeat(np.asarray(mask1d, dtype=np.float32)[:, None], int(num_readout), axis=1)


def make_mask(
    spec: str, shape: Tuple[int, int], seed: int
) -> np.ndarray:
    """Mask from a spec ``"uniform1d:4"``, ``"random:4:0.08"``, ``"equispaced:4:0.08"``,
    ``"poisson2d:8"`` as float32 ``(ky, kx)``."""
    kind, _, rest = spec.partition(":")
    parts = [p for p in rest.split(":") if p]
    try:
        acc = float(parts[0])
        cf = float(parts[1]) if len(parts) > 1 else None
    except (IndexError, ValueError):
        raise ConfigError(f"mask spec {spec!r}: expected KIND:ACCELERATION[:CENTER_FRACTION], "
                          "e.g. uniform1d:4 or poisson2d:8") from None
    ny, nx = shape
    if kind == "uniform1d":
        return to_2d(uniform1d(ny, int(acc), seed, cf), nx)
    if kind in ("random", "equispaced"):
        fn = fastmri_random if kind == "random" else fastmri_equispaced
        return to_2d(fn(ny, acc if kind == "random" else int(acc),
                        cf if cf is not None else 0.32 / acc, seed), nx)
    if kind == "poisson2d":
        return poisson2d(shape, acc, seed).astype(np.float32)
    raise ConfigError(f"mask spec {spec!r}: unknown kind {kind!r}; "
                      "use uniform1d, random, equispaced or poisson2d")
