"""A network's fixed-size canvas placed on the centre of an acquired grid.

Where the grid is larger than the canvas the canvas sees the centred crop; where it is smaller
the grid sits in the centre of the canvas with zeros around it (per axis; index ``n // 2``
stays the centre, as in ``mvue.center_crop``). :class:`Embed` is the linear map canvas ->
grid (zeros outside the window) with its adjoint, the canvas view.
"""

from __future__ import annotations

from typing import Tuple

import torch

from contextmri_core.physics.linop import LinearOperator


def _pair(n: int, c: int) -> Tuple[slice, slice]:
    """(grid slice, canvas slice) of the overlap along one axis of ``n`` grid / ``c`` canvas."""
    if c <= n:
        start = n // 2 - c // 2
        return slice(start, start + c), slice(0, c)
    start = c // 2 - n // 2
    return slice(0, n), slice(start, start + n)


class Window:
    """The canvas ``(cy, cx)`` centred on the grid ``(ny, nx)`` (last two axes)."""

    def __init__(self, grid: Tuple[int, int], canvas: Tuple[int, int]) -> None:
        self.grid = (int(grid[0]), int(grid[1]))
        self.canvas = (int(canvas[0]), int(canvas[1]))
        (self._gy, self._cy), (self._gx, self._cx) = (_pair(n, c) for n, c in
                                                      zip(self.grid, self.canvas))

    @property
    def identity(self) -> bool:
        return self.grid == self.canvas

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """Grid ``(..., ny, nx)`` -> canvas ``(..., cy, cx)`` (crop, zeros where padded)."""
        out = x.new_zeros(x.shape[:-2] + self.canvas)
        out[..., self._cy, self._cx] = x[..., self._gy, self._gx]
        return out

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """The part of grid ``x`` under the canvas (no padding):
        ``(..., min(ny, cy), min(nx, cx))``."""
        return x[..., self._gy, self._gx]

    def embed(self, canvas: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """Grid ``base`` with the canvas values written over the window (``base`` is kept
        outside it)."""
        out = base.clone()
        out[..., self._gy, self._gx] = canvas[..., self._cy, self._cx]
        return out


class Embed(LinearOperator):
    """``P``: canvas -> grid, zero outside the window; ``P^H`` is :meth:`Window.view`."""

    def __init__(self, window: Window) -> None:
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.window.embed(x, x.new_zeros(x.shape[:-2] + self.window.grid))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.window.view(y)
