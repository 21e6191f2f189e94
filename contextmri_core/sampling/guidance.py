"""Classifier-free guidance ``eps = eps_u + s (eps_c - eps_u)``: the conditional and
unconditional predictions from ONE batched network call (best on GPUs), or, with
``split=True``, from two calls of the original batch size (faster on CPUs, where a doubled
batch falls out of cache: 0.94 vs 1.23 s for the small model at batch 4, 128x128, 2 threads;
``benchmarks/speed.py``). s = 0 unconditional, s = 1 conditional: one call of its half.

``rule="published"`` is the published ContextMRI sampler's reading of the scale: s = 0 uses
the empty prompt alone, 0 < s <= 1 the conditional prediction alone (no interpolation), s > 1
the formula above."""

from __future__ import annotations

from typing import Callable

import torch

EpsNet = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
CFG_RULES = ("interpolate", "published")


def guided_eps(
    net: EpsNet, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
    scale: float, split: bool = False, rule: str = "interpolate",
) -> torch.Tensor:
    """``net(x, t, tokens)`` with CFG at ``scale``; x ``(B, H, W)``, t ``(B,)``,
    tokens ``(B, L, D)``; ``split``: two calls instead of one batched call (same result);
    ``rule``: "interpolate" (any s) or "published" (s <= 1 never mixes, see above)."""
    if rule == "published" and 0.0 < scale < 1.0:
        scale = 1.0
    if scale == 1.0:
        return net(x, t, cond)
    if scale == 0.0:
        return net(x, t, uncond)
    if split:
        eps_c, eps_u = net(x, t, cond), net(x, t, uncond)
        return eps_u + scale * (eps_c - eps_u)
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond]))
    eps_c, eps_u = both.chunk(2)
    return eps_u + scale * (eps_c - eps_u)
