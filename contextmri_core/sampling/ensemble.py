"""Ensembles: N posterior samples -> mean image and per-pixel standard deviation."""

from __future__ import annotations

from typing import Callable, Tuple

import torch


def ensemble(sample: Callable[[int], torch.Tensor], n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw ``sample(k)`` for k = 0..n-1 (complex ``(B, H, W)`` each) and return the mean and
    the per-pixel standard deviation ``sqrt(mean |x_k - mean|^2)`` (real; zero for n = 1)."""
    if n < 1:
        raise ValueError(f"ensemble size must be >= 1, got {n}")
    total = None
    total_sq = None
    for k in range(n):
        x = sample(k)
        total = x if total is None else total + x
        sq = x.abs() ** 2
        total_sq = sq if total_sq is None else total_sq + sq
    mean = total / n
    var = (total_sq / n - mean.abs() ** 2).clamp_min(0)
    return mean, var.sqrt()
