"""Validation loss: the epsilon loss of a prior on a fixed subset of a ``val`` shard folder,
at fixed timesteps with fixed noise, so numbers from different steps (and runs) compare.

The subset is ``num_slices`` slices spread evenly over the folder (shards in name order),
centre-cropped or zero-padded to the training patch, conditioned on their full metadata (no
dropout). Sample ``i`` at timestep ``t_j`` always gets the noise of seed
``(seed, i, j)``. Memory: the subset only (``num_slices`` patches), whatever the folder holds.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.io.models.shard_manifest import ShardIndex
from contextmri_core.prior.loss import epsilon_loss_at
from contextmri_core.prior.schedule import complex_noise
from training.data import ShardDataset

log = logging.getLogger(__name__)


def fixed_subset(index: ShardIndex, patch: Sequence[int], num_slices: int
                 ) -> Tuple[torch.Tensor, List[ScanMetadata]]:
    """``(x (N, H, W), metadata)``: up to ``num_slices`` slices evenly spread over ``index``."""
    sizes = np.array([e.num_slices for e in index.entries])
    total = int(sizes.sum())
    picks = np.unique(np.linspace(0, total - 1, min(num_slices, total)).round().astype(int))
    shard = np.searchsorted(np.cumsum(sizes), picks, side="right")
    first = np.cumsum(sizes) - sizes
    ds = ShardDataset(index.entries, patch, train=False)
    samples = [ds[(int(s), int(p - first[s]), 0)] for s, p in zip(shard, picks)]
    samples = [s for s in samples if s is not None]
    if not samples:
        return torch.zeros(0, *patch, dtype=torch.complex64), []
    return torch.stack([s.x for s in samples]), [s.meta for s in samples]


class Validator:
    """Fixed-draw epsilon loss on a fixed subset (see the module docstring)."""

    def __init__(self, index: ShardIndex, patch: Sequence[int], num_slices: int = 32,
                 timesteps: Sequence[int] = (100, 300, 500, 700, 900), seed: int = 0,
                 batch_size: int = 8) -> None:
        self.x, self.meta = fixed_subset(index, patch, num_slices)
        self.timesteps = tuple(int(t) for t in timesteps)
        self.seed, self.batch_size = int(seed), max(1, int(batch_size))
        log.info("validation: %d slices x %d timesteps", len(self.meta), len(self.timesteps))

    def _noise(self, i: int, j: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i * 1009 + j)
        return complex_noise(tuple(self.x.shape[-2:]), g)

    @torch.no_grad()
    def loss(self, prior, device: Optional[torch.device] = None) -> float:
        """Mean epsilon loss of ``prior`` over every (slice, timestep) pair."""
        device = device or prior.alphas_cumprod.device
        pairs = [(i, j) for i in range(len(self.meta)) for j in range(len(self.timesteps))]
        total, count = 0.0, 0
        for k in range(0, len(pairs), self.batch_size):
            chunk = pairs[k:k + self.batch_size]
            x0 = self.x[[i for i, _ in chunk]].to(device)
            t = torch.tensor([self.timesteps[j] for _, j in chunk], device=device)
            noise = torch.stack([self._noise(i, j) for i, j in chunk]).to(device)
            cond = prior.encode([self.meta[i] for i, _ in chunk])
            loss = epsilon_loss_at(lambda xt, tt: prior.eps(xt, tt, cond),
                                   prior.alphas_cumprod, x0, t, noise)
            total, count = total + float(loss) * len(chunk), count + len(chunk)
        return total / max(count, 1)
