"""Classifier-free guidance with the conditional and unconditional predictions from ONE
batched network call: ``eps = eps_u + s (eps_c - eps_u)``; s = 0 unconditional, s = 1
conditional (each then needs only its own half, still one call)."""

from __future__ import annotations

from typing import Callable

import torch

EpsNet = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided_eps(
    net: EpsNet, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """``net(x, t, tokens)`` with CFG at ``scale``; x ``(B, H, W)``, t ``(B,)``,
    tokens ``(B, L, D)``."""
    if scale == 1.0:
        return net(x, t, cond)
    if scale == 0.0:
        return net(x, t, uncond)
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond]))
    eps_c, eps_u = both.chunk(2)
    return eps_u + scale * (eps_c - eps_u)
