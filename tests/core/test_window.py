"""The prior's canvas on an acquired grid: centring as ``center_crop``, zero padding where the
grid is smaller, and an adjoint pair canvas <-> grid."""

import pytest
import torch

from contextmri_core.physics.linop import Sense, adjointness_error
from contextmri_core.physics.mvue import center_crop
from contextmri_core.physics.window import Embed, Window
from tests.core.test_fft_linop import crandn


@pytest.mark.parametrize("grid, canvas", [((368, 320), (320, 320)), ((264, 320), (320, 320)),
                                          ((20, 12), (16, 16)), ((9, 7), (8, 10)),
                                          ((16, 16), (16, 16))])
def test_embed_and_view_are_adjoint(grid, canvas):
    op = Embed(Window(grid, canvas))
    assert adjointness_error(op, crandn(2, *canvas, seed=1), crandn(2, *grid, seed=2)) < 1e-6


def test_view_crops_like_center_crop_and_pads_around_the_centre():
    x = crandn(1, 368, 320)
    win = Window((368, 320), (320, 320))
    assert torch.equal(win.view(x), center_crop(x, (320, 320)))
    small = crandn(1, 6, 6)
    big = Window((6, 6), (10, 10)).view(small)
    assert big.shape == (1, 10, 10) and torch.equal(big[:, 2:8, 2:8], small)
    assert big[:, :2].abs().sum() == 0 and big[:, :, 8:].abs().sum() == 0
    assert big[0, 5, 5] == small[0, 3, 3]  # centre n//2 stays the centre


def test_embed_keeps_the_base_outside_the_window_and_inside_has_no_padding():
    win = Window((12, 8), (8, 8))
    base, canvas = crandn(1, 12, 8, seed=3), crandn(1, 8, 8, seed=4)
    out = win.embed(canvas, base)
    assert torch.equal(out[:, 2:10], canvas) and torch.equal(out[:, :2], base[:, :2])
    assert win.inside(out).shape == (1, 8, 8)
    assert Window((6, 6), (10, 10)).inside(crandn(1, 6, 6)).shape == (1, 6, 6)


def test_sense_after_embed_is_adjoint():
    maps, mask = crandn(2, 3, 14, 10, seed=5), (torch.rand(14, 10) > 0.5).float()
    op = Sense(maps, mask) @ Embed(Window((14, 10), (8, 8)))
    assert adjointness_error(op, crandn(2, 8, 8, seed=6), crandn(2, 3, 14, 10, seed=7)) < 1e-5
