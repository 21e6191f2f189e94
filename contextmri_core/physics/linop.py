"""Linear operators as objects with ``forward``, ``adjoint`` and ``normal`` (batch-first).

``Sense`` is built by composition, ``A = M F S``: coil expansion by the maps, the centred
orthonormal FFT, and the sampling mask. Every operator passes :func:`adjointness_error`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from contextmri_core.errors import ShapeError
from contextmri_core.physics.fft import fft2c, ifft2c


class LinearOperator:
    """Base class: subclasses implement ``forward`` and ``adjoint``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``."""
        return self.adjoint(self.forward(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def __matmul__(self, other: "LinearOperator") -> "LinearOperator":
        return Compose([self, other])


class Compose(LinearOperator):
    """``ops[0] @ ops[1] @ ...``: the last operator is applied first."""

    def __init__(self, ops: Sequence[LinearOperator]) -> None:
        self.ops = list(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in reversed(self.ops):
            x = op.forward(x)
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            y = op.adjoint(y)
        return y


class FFT2C(LinearOperator):
    """Centred orthonormal 2D FFT over the last two axes (unitary: adjoint = inverse)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Mask(LinearOperator):
    """Multiplication by a real 0/1 mask ``(ky, kx)``, ``(B, ky, kx)`` or ``(B, 1, ky, kx)``;
    acts on k-space ``(B, C, ky, kx)``. Self-adjoint and idempotent."""

    def __init__(self, mask: torch.Tensor) -> None:
        if mask.ndim == 3:
            mask = mask.unsqueeze(-3)
        if mask.ndim not in (2, 4):
            raise ShapeError(f"mask must be (ky,kx), (B,ky,kx) or (B,1,ky,kx); got {tuple(mask.shape)}")
        self.mask = mask.real.to(torch.float32) if mask.is_complex() else mask.to(torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    adjoint = forward

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class CoilExpand(LinearOperator):
    """``S``: image ``(B, ny, nx)`` -> coil images ``(B, C, ny, nx)`` with maps ``(C|B,C, ny, nx)``."""

    def __init__(self, maps: torch.Tensor) -> None:
        if maps.ndim == 3:
            maps = maps.unsqueeze(0)
        if maps.ndim != 4:
            raise ShapeError(f"coil maps must be (C,ny,nx) or (B,C,ny,nx); got {tuple(maps.shape)}")
        self.maps = maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps * x.unsqueeze(-3)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sum(self.maps.conj() * y, dim=-3)


class Sense(LinearOperator):
    """Multi-coil SENSE ``A = M F S``: ``(B, ny, nx)`` -> ``(B, C, ky, kx)``."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor) -> None:
        self.coils = CoilExpand(maps)
        self.mask = Mask(mask.to(maps.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask.forward(fft2c(self.coils.forward(x)))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.coils.adjoint(ifft2c(self.mask.adjoint(y)))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``S^H F^H M F S x`` (one mask application: M is idempotent)."""
        return self.coils.adjoint(ifft2c(self.mask.normal(fft2c(self.coils.forward(x)))))


def vdot_batch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hermitian inner product per batch element: ``sum(conj(a) * b)`` over all but dim 0 ->
    ``(B,)``."""
    return torch.sum((a.conj() * b).reshape(a.shape[0], -1), dim=1)


def adjointness_error(op: LinearOperator, x: torch.Tensor, y: torch.Tensor) -> float:
    """Relative mismatch ``|<Ax, y> - <x, A^H y>| / (|Ax| |y|)``; checks shapes first.

    ``x`` lives in the domain and ``y`` in the range of ``op``; raises ``ShapeError`` when
    ``forward``/``adjoint`` do not return the shapes of ``y``/``x``.
    """
    ax = op.forward(x)
    if ax.shape != y.shape:
        raise ShapeError(f"A x has shape {tuple(ax.shape)} but y has {tuple(y.shape)}")
    ahy = op.adjoint(y)
    if ahy.shape != x.shape:
        raise ShapeError(f"A^H y has shape {tuple(ahy.shape)} but x has {tuple(x.shape)}")
    lhs = torch.sum(ax.conj() * y)
    rhs = torch.sum(x.conj() * ahy)
    scale = torch.linalg.vector_norm(ax) * torch.linalg.vector_norm(y)
    return float(torch.abs(lhs - rhs) / scale.clamp_min(1e-30))
