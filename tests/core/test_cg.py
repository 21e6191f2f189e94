"""Conjugate gradient: exact on small SPD systems, per-element batching, and better than the
published non-Hermitian variant on a DDS-type SENSE problem."""

import numpy as np
import torch

from contextmri_core.physics.cg import conjugate_gradient, relative_residual
from contextmri_core.physics.linop import Sense
from contextmri_core.physics.masks import to_2d, uniform1d
from tests.phantom import phantom


def _hpd(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.complex(torch.randn(b, n, n, generator=g), torch.randn(b, n, n, generator=g))
    a = m @ m.mH + 0.5 * torch.eye(n)
    rhs = torch.complex(torch.randn(b, n, generator=g), torch.randn(b, n, generator=g))
    return a, rhs


def test_cg_matches_direct_solve_per_batch_element():
    a, rhs = _hpd(3, 8, 0)
    a[1] *= 100.0  # very different scales per element: one shared step size would fail
    x = conjugate_gradient(lambda v: (a @ v[..., None])[..., 0], rhs, n_iter=40)
    assert torch.allclose(x, torch.linalg.solve(a, rhs), rtol=1e-3, atol=1e-5)


def test_cg_real_spd_matches_numpy_solve():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((6, 6))
    a = torch.from_numpy(m @ m.T + np.eye(6))
    b = torch.from_numpy(rng.standard_normal((1, 6)))
    x = conjugate_gradient(lambda v: v @ a.T, b, n_iter=20)
    assert np.allclose(x.numpy()[0], np.linalg.solve(a.numpy(), b.numpy()[0]), atol=1e-8)


def test_cg_tolerance_stops_early_and_keeps_converged_elements():
    a, rhs = _hpd(2, 5, 2)
    calls = []

    def normal(v):
        calls.append(1)
        return (a @ v[..., None])[..., 0]

    x = conjugate_gradient(normal, rhs, n_iter=100, tol=1e-4)
    assert len(calls) < 30
    assert float(relative_residual(normal, x, rhs).max()) < 1e-4


def _nonhermitian_cg(normal, rhs, x, n_iter):
    """The published DDS/ContextMRI CG: r^T r (no conjugate) and one step for the whole batch."""
    r = rhs - normal(x)
    p = r.clone()
    rs = torch.sum(r * r)
    for _ in range(n_iter):
        ap = normal(p)
        alpha = rs / torch.sum(p * ap)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = torch.sum(r * r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def test_hermitian_cg_beats_published_variant_on_dds_sense_problem():
    """128x128, 8 coils, uniform1d x4, xi = 5: (I + xi A^H A) x = x0 + xi A^H y, 5 iterations."""
    img, maps, ksp = phantom(128, 128, 8, seed=3)
    mask = torch.from_numpy(to_2d(uniform1d(128, 4, seed=0), 128))
    op, xi = Sense(maps, mask), 5.0
    y = op.forward(img[None])
    x0 = 0.5 * img[None] + 0.1 * torch.randn(1, 128, 128, generator=torch.Generator().manual_seed(0))
    x0 = x0.to(torch.complex64)
    rhs = x0 + xi * op.adjoint(y)

    def normal(x):
        return x + xi * op.normal(x)

    ours = relative_residual(normal, conjugate_gradient(normal, rhs, x0, n_iter=5), rhs)
    theirs = relative_residual(normal, _nonhermitian_cg(normal, rhs, x0, 5), rhs)
    assert float(ours) < 1e-2
    assert float(ours) < 0.5 * float(theirs), (float(ours), float(theirs))
