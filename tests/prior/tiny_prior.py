"""Test helper: simulated training targets and a small prior trained for about a minute."""

from __future__ import annotations

import time
from typing import List, Tuple

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.prior.build import new_prior
from contextmri_core.prior.loss import epsilon_loss
from contextmri_core.prior.model import DiffusionPrior
from contextmri_core.recon.prepare import mvue_targets, prepare_slices
from contextmri_core.synth.scan import SimConfig, simulate
from contextmri_core.data.scan import SliceData

TINY_UNET = dict(block_out_channels=[32, 64, 64, 64])


def simulated_slices(seeds, protocols, matrix=64, slices=4, coils=4):
    """Fully sampled simulated slices as (SliceData list, noise list)."""
    out: List[Tuple[SliceData, object]] = []
    cfg = SimConfig(matrix=matrix, num_slices=slices, num_coils=coils, readout_oversampling=1,
                    lesion_probability=0.0)
    for seed in seeds:
        for proto in protocols:
            scan = simulate(seed, proto, cfg)
            for s in range(slices):
                import numpy as np
                sl = SliceData(kspace=scan.kspace[s], mask=np.ones(scan.kspace.shape[-2:], np.float32),
                               metadata=scan.slice_metadata(s))
                out.append((sl, scan.noise))
    return out


def training_set(seeds, protocols, matrix=64) -> Tuple[torch.Tensor, List[ScanMetadata]]:
    items = simulated_slices(seeds, protocols, matrix)
    batch = prepare_slices([s for s, _ in items], None)
    x, _ = mvue_targets(batch, (matrix, matrix))
    return x, list(batch.metadata)


def train_tiny(x: torch.Tensor, meta: List[ScanMetadata], seconds: float, seed: int = 0,
               batch: int = 8, lr: float = 2e-3) -> Tuple[DiffusionPrior, List[float]]:
    """AdamW on the epsilon loss with CFG condition dropout, for ``seconds`` of wall time."""
    prior = new_prior("contextmri-small", image_size=tuple(x.shape[-2:]), **TINY_UNET)
    opt = torch.optim.AdamW(prior.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses, t0 = [], time.time()
    while time.time() - t0 < seconds:
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        drop, fields = prior.encoder.dropout_mask(batch, g)
        cond = prior.encoder([meta[i] for i in idx], drop, fields)
        loss = epsilon_loss(lambda xt, t: prior.eps(xt, t, cond), prior.alphas_cumprod, x[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return prior.eval(), losses
