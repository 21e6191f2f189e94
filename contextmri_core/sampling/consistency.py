"""Data consistency for DDS: a few Hermitian CG steps on ``(I + xi A^H A) x = x0 + xi A^H y``
started at the denoised estimate ``x0`` (the proximal step of ``xi/2 ||y - A x||^2``)."""

from __future__ import annotations

from typing import Callable

import torch

from contextmri_core.physics.cg import conjugate_gradient
from contextmri_core.physics.linop import LinearOperator


def cg_consistency(
    op: LinearOperator, y: torch.Tensor, xi: float, n_iter: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x0 -> CG_k(I + xi A^H A, x0 + xi A^H y, init x0)``, one system per batch element."""
    aty = xi * op.adjoint(y)

    def normal(v: torch.Tensor) -> torch.Tensor:
        return v + xi * op.normal(v)

    def dc(x0: torch.Tensor) -> torch.Tensor:
        return conjugate_gradient(normal, x0 + aty, x0=x0, n_iter=n_iter)

    return dc
