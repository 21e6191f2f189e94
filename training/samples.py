"""Sample images during training: unconstrained DDIM draws from the EMA prior, conditioned
on metadata of training slices, next to those slices (a PNG contact sheet)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.io.images.png import contact_sheet
from contextmri_core.prior.schedule import complex_noise, evenly_spaced
from contextmri_core.sampling.dds import dds_sample


@torch.no_grad()
def generate(prior, metadata: Sequence[ScanMetadata], size, steps: int = 25, seed: int = 0,
             guidance: float = 1.0) -> torch.Tensor:
    """DDIM (eta 1) samples ``(B, H, W)`` for the given metadata; no data consistency."""
    dev = prior.alphas_cumprod.device
    g = torch.Generator(device=dev).manual_seed(seed)
    cond = prior.encode(list(metadata))
    uncond = prior.unconditional(len(metadata))

    def eps_fn(x, t):
        if guidance == 1.0:
            return prior.eps(x, t, cond)
        e = prior.eps(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond]))
        ec, eu = e.chunk(2)
        return eu + guidance * (ec - eu)

    x = complex_noise((len(metadata),) + tuple(size), g, dev)
    ts = evenly_spaced(steps, prior.schedule.num_train_timesteps)
    return dds_sample(eps_fn, lambda v: v, x, prior.alphas_cumprod, ts, 1.0, g)


def save_samples(prior, x: torch.Tensor, metadata: Sequence[ScanMetadata], path: Path,
                 seed: int = 0) -> Path:
    """Write generated images beside the training images ``x`` they take metadata from."""
    gen = generate(prior, metadata, x.shape[-2:], seed=seed)
    return contact_sheet(path, {"training": x.cpu().numpy(), "generated": gen.cpu().numpy()})
