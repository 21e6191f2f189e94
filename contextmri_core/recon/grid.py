"""How the prior meets an acquired grid that differs from its training size.

``full``: the network sees the whole acquired grid (padded to a multiple of its
downsampling factor); data consistency on the grid; percentile over the grid.
``window``: the network sees the centred training-size canvas of the grid (crop where the grid
is larger, zeros around it where smaller); data consistency runs on the whole grid, and the
pixels outside the canvas keep their data-consistent estimate from step to step (started at
the CG-SENSE image); percentile over the canvas.
``window-zero``: the network sees the canvas and the object is assumed zero outside it (the
windowed operator ``A P``: the published code's cropped simulation); percentile over the
canvas.
``pad``: the network sees the whole grid, zero-padded up to the training size along an axis
where the grid is smaller (never cropped); data consistency on the grid; percentile over the
centred training-size crop, as the training images were scaled.

Measured on simulated scans (``benchmarks/grid.py``, results in
``benchmarks/results/grid.md``): ``pad`` is the best or within 0.4 dB of the best in every
case (cropping loses 2 dB when the anatomy reaches past the crop); published checkpoints
default to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from contextmri_core.physics.linop import LinearOperator
from contextmri_core.physics.window import Embed, Window
from contextmri_core.sampling.consistency import cg_consistency

GRIDS = ("full", "window", "window-zero", "pad")
Dc = Callable[[torch.Tensor], torch.Tensor]


class _CarriedDC:
    """Whole-grid data consistency for a prior that sees only the canvas: the canvas ``x0`` is
    written over the last whole-grid estimate, CG runs on the grid, the canvas view goes back."""

    def __init__(self, dc: Dc, window: Window, start: torch.Tensor) -> None:
        self.dc, self.window, self.full = dc, window, start

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        self.full = self.dc(self.window.embed(x0, self.full))
        return self.window.view(self.full)


@dataclass
class GridPlan:
    """What the sampler works on: ``shape`` of x_t, its data consistency ``dc``, the support
    in that shape (or None), ``to_grid`` turning the DDS result into the grid image, and the
    forward ``operator`` on that shape with ``embed`` (zeros outside the canvas) for DPS."""

    shape: Tuple[int, int]
    dc: Dc
    support: Optional[torch.Tensor]
    to_grid: Callable[[torch.Tensor], torch.Tensor]
    operator: LinearOperator
    embed: Callable[[torch.Tensor], torch.Tensor]


def plan(grid: str, op: LinearOperator, y: torch.Tensor, xi: float, cg_iterations: int,
         canvas: Tuple[int, int], support: Optional[torch.Tensor],
         start: Optional[torch.Tensor] = None) -> GridPlan:
    """The sampler's view of the problem ``y = op(x)`` on the grid of ``y`` for strategy
    ``grid``; ``start``: the whole-grid estimate ``window`` starts from (default zeros)."""
    shape = tuple(y.shape[-2:])
    if grid == "pad":  # the canvas grows to the grid: nothing is ever cropped
        canvas = (max(shape[0], canvas[0]), max(shape[1], canvas[1]))
    if grid == "full" or tuple(canvas) == shape:
        return GridPlan(shape, cg_consistency(op, y, xi, cg_iterations), support,
                        lambda x: x, op, lambda x: x)
    win = Window(shape, canvas)
    sup = None if support is None else win.view(support)
    embed = Embed(win)
    windowed = op @ embed
    if grid == "window-zero":
        return GridPlan(win.canvas, cg_consistency(windowed, y, xi, cg_iterations), sup,
                        embed.forward, windowed, embed.forward)
    base = start if start is not None else y.new_zeros(y.shape[:1] + shape)
    carried = _CarriedDC(cg_consistency(op, y, xi, cg_iterations), win, base)
    return GridPlan(win.canvas, carried, sup, lambda x: carried.full, windowed, embed.forward)


def scale_region(grid: str, image: torch.Tensor, canvas: Tuple[int, int]) -> torch.Tensor:
    """The part of ``image (B, ny, nx)`` whose percentile sets the scale: the whole grid for
    ``full``, the part under the canvas for the window strategies."""
    if grid == "full":
        return image
    return Window(tuple(image.shape[-2:]), canvas).inside(image)
