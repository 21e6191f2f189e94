"""``DiffusionReconstructor``: a loaded prior on a device, mapping (k-space, mask, maps,
metadata) -> complex images (+ uncertainty) with DDS or DPS; same signature as the classical
reconstructions so either can stand in for the other. Settings presets (ours, the paper's)
live in ``recon.presets``; how a grid larger or smaller than the prior's is handled in
``recon.grid``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import ConfigError
from contextmri_core.physics.cg import conjugate_gradient
from contextmri_core.physics.linop import Sense
from contextmri_core.physics.mvue import percentile_scale
from contextmri_core.prior.model import DiffusionPrior
from contextmri_core.prior.schedule import (alphas_cumprod, complex_noise, evenly_spaced,
                                            published_pairs)
from contextmri_core.recon.base import ReconResult, check_inputs
from contextmri_core.recon.execution import AUTOCAST_MODES, CFG_CALLS, execution_plan
from contextmri_core.recon.grid import GRIDS, plan, scale_region
from contextmri_core.sampling.dds import DDSConfig, Progress, dds_sample
from contextmri_core.sampling.dps import dps_sample
from contextmri_core.sampling.ensemble import ensemble
from contextmri_core.sampling.guidance import guided_eps

log = logging.getLogger(__name__)
SAMPLERS = ("dds", "dps")


@dataclass(frozen=True)
class DiffusionReconConfig:
    """Sampler settings on top of ``DDSConfig``. ``precision`` is the autocast dtype,
    ``autocast`` (auto = on CUDA only | on | off) and ``cfg_call`` (auto = one batched call
    except on CPUs | batched | split) choose the execution: ``recon/execution.py``.
    ``grid``: "auto" (``pad`` for a published-convention prior, else ``full``) or one of
    ``recon.grid.GRIDS``."""

    dds: DDSConfig = DDSConfig()
    sampler: str = "dds"
    dps_zeta: float = 1.0
    ensemble_size: int = 1
    batch_size: int = 4
    seed: int = 0
    precision: str = "fp16"  # fp32 | fp16 | bf16 (autocast on CUDA)
    autocast: str = "auto"  # auto (CUDA only) | on | off
    cfg_call: str = "auto"  # auto (batched except on CPUs) | batched | split
    grid: str = "auto"

    def __post_init__(self) -> None:
        if self.grid not in ("auto",) + GRIDS:
            raise ConfigError(f"grid {self.grid!r}: use auto or one of {GRIDS}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler {self.sampler!r}: use one of {SAMPLERS}")
        if self.ensemble_size < 1 or self.batch_size < 1:
            raise ConfigError("ensemble_size and batch_size must be >= 1")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ConfigError(f"precision {self.precision!r}: use fp32, fp16 or bf16")
        if self.autocast not in AUTOCAST_MODES or self.cfg_call not in CFG_CALLS:
            raise ConfigError(f"autocast {self.autocast!r} / cfg_call {self.cfg_call!r}: use "
                              f"one of {AUTOCAST_MODES} / {CFG_CALLS}")


def resolve_grid(grid: str, prior: DiffusionPrior) -> str:
    """``grid`` with ``auto`` resolved: ``pad`` for a published-convention prior (the
    measured choice, ``recon.grid``), ``full`` for ours."""
    if grid != "auto":
        return grid
    return "pad" if prior.normalisation.convention == "published" else "full"


class DiffusionReconstructor:
    """Holds ``prior`` on ``device``; ``__call__`` reconstructs a batch of slices."""

    name = "dds"

    def __init__(self, prior: DiffusionPrior, config: DiffusionReconConfig = DiffusionReconConfig(),
                 device: str = "cpu", progress: Optional[Progress] = None):
        self.prior = prior.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.plan = execution_plan(self.device, config.precision, config.autocast, config.cfg_call)
        self.progress = progress
        self.name = config.sampler

    def with_config(self, **changes) -> "DiffusionReconstructor":
        """The same loaded prior with other settings (e.g. ``guidance=0``)."""
        dds = replace(self.config.dds, **{k: v for k, v in changes.items() if hasattr(self.config.dds, k)})
        rest = {k: v for k, v in changes.items() if not hasattr(self.config.dds, k)}
        return DiffusionReconstructor(self.prior, replace(self.config, dds=dds, **rest),
                                      str(self.device), self.progress)

    def with_progress(self, progress: Optional[Progress]) -> "DiffusionReconstructor":
        """The same loaded prior and settings reporting each sampler step to ``progress``
        (which may raise to abort, e.g. when a time budget is spent)."""
        return DiffusionReconstructor(self.prior, self.config, str(self.device), progress)

    def _net(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        with self.plan.autocast():
            return self.prior.eps(x, t, tokens).to(torch.complex64)

    @property
    def grid(self) -> str:
        """The grid strategy in force (``auto`` resolved from the prior's convention)."""
        return resolve_grid(self.config.grid, self.prior)

    def _timesteps(self) -> Tuple[List[int], Optional[List[int]]]:
        """(timesteps, previous or None) of the sampler (``DDSConfig.timestep_rule``)."""
        cfg = self.config.dds
        if cfg.timesteps is not None:
            return list(cfg.timesteps), None
        if cfg.timestep_rule == "scheduler":
            return published_pairs(self.prior.schedule, cfg.steps)
        return evenly_spaced(cfg.steps, self.prior.schedule.num_train_timesteps), None

    def _sample_chunk(self, y, mask, maps, metadata, start, generator) -> torch.Tensor:
        cfg = self.config.dds
        cond = self.prior.encode(metadata)
        uncond = self.prior.unconditional(len(metadata))

        split = not self.plan.cfg_one_call  # CPUs: two calls beat one call of twice the batch

        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return guided_eps(self._net, x, t, cond, uncond, cfg.guidance, split, cfg.cfg_rule)

        op = Sense(maps, mask)
        support = (torch.sum(maps.abs() ** 2, dim=1) > 0).to(torch.float32) if cfg.support_mask \
            else None
        p = plan(self.grid, op, y, cfg.xi, cfg.cg_iterations, self.prior.normalisation.canvas,
                 support, start)
        ts, previous = self._timesteps()
        abar = alphas_cumprod(self.prior.schedule).float()  # on the host: no copy per chunk
        x_t = complex_noise(y.shape[:1] + p.shape, generator, self.device)
        if self.config.sampler == "dps":
            out = dps_sample(eps_fn, p.operator, y, x_t, abar, ts, cfg.eta, self.config.dps_zeta,
                             generator, p.support, self.progress, previous)
            return p.embed(out)
        out = dds_sample(eps_fn, p.dc, x_t, abar, ts, cfg.eta, generator, p.support, cfg.clip,
                         self.progress, previous)
        return p.to_grid(out)

    @torch.no_grad()
    def __call__(self, kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor,
                 metadata: Optional[Sequence[Optional[ScanMetadata]]] = None) -> ReconResult:
        maps = check_inputs(kspace, mask, maps).to(self.device)
        b = kspace.shape[0]
        metadata = list(metadata) if metadata is not None else [None] * b
        mask = mask.to(self.device, torch.float32).reshape(-1, *mask.shape[-2:])
        mask = mask.expand(b, -1, -1) if mask.shape[0] == 1 else mask
        y = kspace.to(self.device) * mask.unsqueeze(1)
        rough, scale = self._scale(y, maps, mask)
        y = y / scale.reshape(-1, 1, 1, 1)
        start = rough / scale.reshape(-1, 1, 1)
        gen = _generator(self.device, self.config.seed)
        mean, std = ensemble(lambda k: self._chunks(y, mask, maps, metadata, start, gen),
                             self.config.ensemble_size)
        s = scale.reshape(-1, 1, 1)
        unc = std * s if self.config.ensemble_size > 1 else None
        return ReconResult(image=(mean * s).to(torch.complex64), method=self.name, uncertainty=unc,
                           info=self._info(metadata, scale))

    def _info(self, metadata, scale: torch.Tensor) -> dict:
        """What the images record about how they were made (prompts when the encoder has
        text prompts)."""
        info = {"steps": len(self._timesteps()[0]), "guidance": self.config.dds.guidance,
                "scale": scale if scale.is_meta else scale.cpu(), "grid": self.grid}
        if hasattr(self.prior.encoder, "prompts"):
            info["prompts"] = self.prior.encoder.prompts(metadata)
        if "unet" in self.prior.info:  # which UNet of a published checkpoint
            info["unet"] = self.prior.info["unet"]
        return info

    def _scale(self, y: torch.Tensor, maps: torch.Tensor,
               mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(rough image, scale): the normalisation of training (``percentile`` of ``|x|`` over
        the grid, or over the prior's canvas for the window strategies), estimated from a quick
        CG-SENSE image of the undersampled data (the zero-filled image's percentile is biased
        by aliasing)."""
        op = Sense(maps, mask)
        rough = conjugate_gradient(lambda v: op.normal(v) + 1e-2 * v, op.adjoint(y), n_iter=10)
        region = scale_region(self.grid, rough, self.prior.normalisation.canvas)
        return rough, percentile_scale(region, self.prior.normalisation.percentile)

    def _chunks(self, y, mask, maps, metadata, start, gen) -> torch.Tensor:
        n = self.config.batch_size
        parts = [self._sample_chunk(y[i:i + n], mask[i:i + n], maps[i:i + n], metadata[i:i + n],
                                    start[i:i + n], gen)
                 for i in range(0, y.shape[0], n)]
        return torch.cat(parts)


def _generator(device: torch.device, seed: int) -> Optional[torch.Generator]:
    """A generator on ``device`` seeded with ``seed``; None on ``meta``, the shape-only device
    on which the tests run the GPU code path (it has no random numbers)."""
    if device.type == "meta":
        return None
    return torch.Generator(device=device).manual_seed(seed)
