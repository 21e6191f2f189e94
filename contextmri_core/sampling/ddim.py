"""DDIM step math (pure; no network inside), on complex images.

Complex Gaussian noise here means independent unit-variance real and imaginary parts, the
noise the prior was trained with on its 2 real channels.
"""

from __future__ import annotations

from typing import Optional

import torch

from contextmri_core.prior.schedule import complex_noise  # noqa: F401  (re-export)


def predict_x0(xt: torch.Tensor, eps: torch.Tensor, a_t: float) -> torch.Tensor:
    """``x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)``."""
    return (xt - (1.0 - a_t) ** 0.5 * eps) / a_t ** 0.5


def ddim_noise_scales(a_t: float, a_prev: float, eta: float):
    """``(c1, c2)``: ``c1 = eta sqrt((1 - a_t/a_prev)(1 - a_prev)/(1 - a_t))`` (fresh noise),
    ``c2 = sqrt(1 - a_prev - c1^2)`` (the predicted noise)."""
    c1 = eta * max((1 - a_t / a_prev) * (1 - a_prev) / (1 - a_t), 0.0) ** 0.5
    c2 = max(1 - a_prev - c1 ** 2, 0.0) ** 0.5
    return c1, c2


def ddim_update(
    x0: torch.Tensor, eps: torch.Tensor, a_prev: float, c1: float, c2: float,
    z: Optional[torch.Tensor],
) -> torch.Tensor:
    """``x_prev = sqrt(a_prev) x0 + c1 z + c2 eps``."""
    out = a_prev ** 0.5 * x0 + c2 * eps
    return out + c1 * z if (z is not None and c1 > 0) else out
