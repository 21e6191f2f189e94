"""How large a k-space grid a scan may ask for: checked against configurable caps *and*
against the data actually received, before anything is allocated.

The header alone must never decide the memory a scan takes: ``encodedSpace y = 100000`` on a
scan of 16 lines would otherwise allocate gigabytes. A grid is refused (``ScanTooLarge``, a
``ValueError`` naming the header field, the data and the cap) when

* an axis exceeds ``max_matrix`` samples (the encoded grid, readout oversampling included);
* the phase-encode axis is more than ``max_undersampling`` times the lines of the slice that
  received the most (no Cartesian 2D scan is undersampled 64-fold);
* the readout is more than ``max_readout_ratio`` times the longest line received (asymmetric
  echo and partial Fourier keep at least about half of it);
* the k-space of all slices would take more than ``max_grid_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from contextmri_core.errors import ContextMRIError, check_fields

BYTES_PER_SAMPLE = 8  # complex64


class ScanTooLarge(ContextMRIError, ValueError):
    """A header that asks for a k-space grid the data or the limits do not allow."""


@dataclass(frozen=True)
class GridLimits:
    """Caps on the k-space grid one scan may allocate (see the module docstring)."""

    max_matrix: int = 4096
    max_undersampling: float = 64.0
    max_readout_ratio: float = 4.0
    max_grid_bytes: int = 8 << 30

    def __post_init__(self) -> None:
        check_fields(self, [
            ("max_matrix", self.max_matrix >= 1, "use >= 1 samples"),
            ("max_undersampling", self.max_undersampling >= 1, "use >= 1"),
            ("max_readout_ratio", self.max_readout_ratio >= 1, "use >= 1"),
            ("max_grid_bytes", self.max_grid_bytes >= 1, "use >= 1 byte"),
        ])


@dataclass(frozen=True)
class ReceivedData:
    """What the scan's imaging and calibration lines hold: the most distinct phase-encode
    lines of any slice, the longest readout (samples kept), coils and slices."""

    max_lines_per_slice: int
    max_samples: int
    coils: int
    slices: int


def check_grid(e1: int, ro: int, got: ReceivedData, limits: GridLimits = GridLimits()) -> None:
    """Raise :class:`ScanTooLarge` unless an ``(E1, RO)`` grid fits ``got`` and ``limits``."""
    for axis, n in (("y", e1), ("x", ro)):
        if n < 1 or n > limits.max_matrix:
            raise ScanTooLarge(f"encodedSpace {axis}={n} is outside 1..{limits.max_matrix} "
                               f"(max_matrix; raise it with --max-matrix if this is real)")
    if e1 > limits.max_undersampling * max(got.max_lines_per_slice, 1):
        raise ScanTooLarge(f"encodedSpace y={e1} does not fit the data: at most "
                           f"{got.max_lines_per_slice} lines per slice were received (more "
                           f"than {limits.max_undersampling:g}-fold undersampling)")
    if ro > limits.max_readout_ratio * max(got.max_samples, 1):
        raise ScanTooLarge(f"encodedSpace x={ro} does not fit the data: the longest line "
                           f"holds {got.max_samples} samples")
    nbytes = grid_bytes((e1, ro), got)
    if nbytes > limits.max_grid_bytes:
        raise ScanTooLarge(f"the k-space grid of {got.slices} slices x {got.coils} coils x "
                           f"{e1} x {ro} would take {nbytes} bytes, over the limit of "
                           f"{limits.max_grid_bytes} bytes (max_grid_bytes)")


def grid_bytes(shape: Tuple[int, int], got: ReceivedData) -> int:
    """Bytes of the assembled k-space of every slice (one complex64 grid each)."""
    return int(got.slices) * int(got.coils) * int(shape[0]) * int(shape[1]) * BYTES_PER_SAMPLE
