"""The random draws of one training step, per sample from the sample's own seed.

Timestep, noise and condition dropouts of a sample depend only on its seed (its identity
and epoch, ``training.data.sample_seed``), not on the batch it lands in, the rank or the
worker: a run on 2 ranks with batch b computes exactly the per-sample losses of one process
that sees the same 2b samples, and a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.prior.schedule import complex_noise

MR_FIELDS = ("tr_ms", "te_ms", "ti_ms", "flip_angle_deg")


@dataclass(frozen=True)
class Draws:
    """``t (B,)`` int64, ``noise (B, H, W)`` complex64, ``drop (B,)`` whole condition,
    ``drop_mr (B,)`` TR/TE/TI/FA together, ``drop_fields (B, F)`` or ``None``."""

    t: torch.Tensor
    noise: torch.Tensor
    drop: torch.Tensor
    drop_mr: torch.Tensor
    drop_fields: Optional[torch.Tensor]


def draw(seeds: Sequence[int], shape: Tuple[int, int], t_range: Tuple[int, int],
         p_uncond: float, p_mr_drop: float, p_field_drop: float, num_fields: int = 0) -> Draws:
    """One ``torch.Generator`` per seed, always drawn in the same order: t, noise, then
    ``2 + num_fields`` uniforms for the dropouts (``num_fields`` 0: no per-field dropout)."""
    ts, noises, us = [], [], []
    lo, hi = int(t_range[0]), int(t_range[1])
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        ts.append(torch.randint(lo, hi + 1, (1,), generator=g))
        noises.append(complex_noise((1,) + tuple(shape), g))
        us.append(torch.rand(2 + max(num_fields, 1), generator=g))
    u = torch.stack(us)
    fields = (u[:, 2:2 + num_fields] < p_field_drop) if num_fields and p_field_drop > 0 else None
    return Draws(t=torch.cat(ts), noise=torch.cat(noises), drop=u[:, 0] < p_uncond,
                 drop_mr=u[:, 1] < p_mr_drop, drop_fields=fields)


def drop_mr(meta: Sequence[ScanMetadata], drop: torch.Tensor) -> List[ScanMetadata]:
    """ContextMRI's MR-parameter dropout: TR/TE/TI/FA removed together where ``drop``."""
    none = {f: None for f in MR_FIELDS}
    return [dataclasses.replace(m, **none) if d else m for m, d in zip(meta, drop.tolist())]
