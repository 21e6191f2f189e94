"""``recon.grid``: a prior that sees only its canvas, on grids larger and smaller than it, with
an oracle denoiser (the truth's canvas view) so that only the grid handling is under test."""

from __future__ import annotations

import pytest
import torch

from contextmri_core.physics.linop import Sense
from contextmri_core.physics.masks import to_2d, uniform1d
from contextmri_core.physics.window import Window
from contextmri_core.prior.schedule import ScheduleConfig, alphas_cumprod, evenly_spaced
from contextmri_core.recon.grid import plan, scale_region
from contextmri_core.sampling.dds import dds_sample
from tests.phantom import phantom

ABAR = alphas_cumprod(ScheduleConfig()).float()
CANVAS = (32, 32)


def problem(ny, nx, r=2, seed=3, outer=False):
    """x``r`` uniform1d problem on an ``(ny, nx)`` grid; ``outer``: add an object in the first
    and last 5 rows (outside a centred 32-row canvas), as a knee reaches the edge of the FOV."""
    img, maps, _ = phantom(ny, nx, 4, seed=seed)
    if outer:
        cols = torch.linspace(-1, 1, nx)
        band = (0.8 + 0.4 * torch.cos(3 * cols)).to(torch.complex64)
        img[:5], img[-5:] = band, 0.6 * band
    img = img[None]
    mask = torch.from_numpy(to_2d(uniform1d(ny, r, seed=0, center_fraction=0.2), nx))
    op = Sense(maps[None], mask)
    return img, op, op.forward(img)


def oracle_on_canvas(truth_canvas):
    def eps_fn(xt, t):
        a = ABAR[t].reshape(-1, 1, 1)
        return (xt - a.sqrt() * truth_canvas) / (1 - a).sqrt()
    return eps_fn


def run(grid, img, op, y, start=None):
    p = plan(grid, op, y, 5.0, 5, CANVAS, None, start)
    truth_canvas = img if grid == "full" else Window(tuple(y.shape[-2:]), CANVAS).view(img)
    xt = torch.zeros((1,) + p.shape, dtype=torch.complex64)
    out = dds_sample(oracle_on_canvas(truth_canvas), p.dc, xt, ABAR, evenly_spaced(20), 0.0)
    return p, p.to_grid(out)


def err(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_the_sampler_works_on_the_canvas_and_returns_the_grid():
    img, op, y = problem(44, 32)
    for grid in ("window", "window-zero"):
        p, out = run(grid, img, op, y)
        assert p.shape == CANVAS and out.shape == (1, 44, 32)
    p, out = run("full", img, op, y)
    assert p.shape == (44, 32) and out.shape == (1, 44, 32)


def test_window_keeps_the_object_outside_the_canvas_window_zero_cannot():
    """An object reaching past the canvas (44 E1 lines, canvas 32, x2): ``window`` carries a
    data-consistent estimate outside from step to step, so the crop is right and so is the
    rest; ``window-zero`` has to explain the outer object's data
    with pixels inside the canvas."""
    img, op, y = problem(44, 32, outer=True)
    start = op.adjoint(y)
    _, carried = run("window", img, op, y, start)
    _, zero = run("window-zero", img, op, y)
    win = Window((44, 32), CANVAS)
    assert err(win.inside(carried), win.inside(img)) < 1e-3 and err(carried, img) < 1e-3
    assert err(win.inside(zero), win.inside(img)) > 0.1  # the outer object aliases inside
    assert float(zero[:, :6].abs().max()) == 0.0


@pytest.mark.parametrize("grid", ["window", "window-zero"])
def test_a_smaller_grid_sits_in_the_middle_of_the_canvas(grid):
    img, op, y = problem(24, 20)
    p, out = run(grid, img, op, y)
    assert p.shape == CANVAS and out.shape == (1, 24, 20)
    assert err(out, img) < 0.02


def test_pad_never_crops_and_pads_a_smaller_axis_to_the_training_size():
    """``pad`` (published default): a grid larger than the canvas is seen whole; an axis that
    is smaller is zero-padded up to the canvas; 44x20 -> 44x32."""
    for shape, seen in (((44, 32), (44, 32)), ((24, 20), (32, 32)), ((44, 20), (44, 32))):
        img, op, y = problem(*shape)
        p = plan("pad", op, y, 5.0, 5, CANVAS, None)
        assert p.shape == seen
        truth = Window(shape, seen).view(img)
        xt = torch.zeros((1,) + p.shape, dtype=torch.complex64)
        out = p.to_grid(dds_sample(oracle_on_canvas(truth), p.dc, xt, ABAR, evenly_spaced(20),
                                   0.0))
        assert out.shape == (1,) + shape and err(out, img) < 0.02


def test_the_scale_is_taken_where_the_prior_looks():
    x = torch.ones(1, 40, 32, dtype=torch.complex64)
    x[:, :4] = 10.0  # bright rows outside a 32x32 canvas
    assert scale_region("full", x, CANVAS).shape == (1, 40, 32)
    assert torch.all(scale_region("window", x, CANVAS).abs() == 1.0)
    assert torch.all(scale_region("pad", x, CANVAS).abs() == 1.0)  # as training: over the crop
