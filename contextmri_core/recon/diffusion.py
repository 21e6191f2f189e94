"""``DiffusionReconstructor``: a loaded prior on a device, mapping (k-space, mask, maps,
metadata) -> complex images (+ uncertainty) with DDS or DPS; same signature as the classical
reconstructions so either can stand in for the other."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import ConfigError
from contextmri_core.physics.cg import conjugate_gradient
from contextmri_core.physics.linop import Sense
from contextmri_core.physics.mvue import percentile_scale
from contextmri_core.prior.model import DiffusionPrior
from contextmri_core.prior.schedule import alphas_cumprod, complex_noise, evenly_spaced
from contextmri_core.recon.base import ReconResult, check_inputs
from contextmri_core.recon.execution import AUTOCAST_MODES, CFG_CALLS, execution_plan
from contextmri_core.sampling.consistency import cg_consistency
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
    except on CPUs | batched | split) choose the execution: ``recon/execution.py``."""

    dds: DDSConfig = DDSConfig()
    sampler: str = "dds"
    dps_zeta: float = 1.0
    ensemble_size: int = 1
    batch_size: int = 4
    seed: int = 0
    precision: str = "fp16"  # fp32 | fp16 | bf16 (autocast on CUDA)
    autocast: str = "auto"  # auto (CUDA only) | on | off
    cfg_call: str = "auto"  # auto (batched except on CPUs) | batched | split

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler {self.sampler!r}: use one of {SAMPLERS}")
        if self.ensemble_size < 1 or self.batch_size < 1:
            raise ConfigError("ensemble_size and batch_size must be >= 1")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ConfigError(f"precision {self.precision!r}: use fp32, fp16 or bf16")
        if self.autocast not in AUTOCAST_MODES or self.cfg_call not in CFG_CALLS:
            raise ConfigError(f"autocast {self.autocast!r} / cfg_call {self.cfg_call!r}: use "
                              f"one of {AUTOCAST_MODES} / {CFG_CALLS}")


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

    def _timesteps(self):
        cfg = self.config.dds
        if cfg.timesteps is not None:
            return list(cfg.timesteps)
        return evenly_spaced(cfg.steps, self.prior.schedule.num_train_timesteps)

    def _sample_chunk(self, y, mask, maps, metadata, generator) -> torch.Tensor:
        cfg = self.config.dds
        cond = self.prior.encode(metadata)
        uncond = self.prior.unconditional(len(metadata))

        split = not self.plan.cfg_one_call  # CPUs: two calls beat one call of twice the batch

        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return guided_eps(self._net, x, t, cond, uncond, cfg.guidance, split)

        op = Sense(maps, mask)
        support = (torch.sum(maps.abs() ** 2, dim=1) > 0).to(torch.float32) if cfg.support_mask else None
        ts = self._timesteps()
        abar = alphas_cumprod(self.prior.schedule).float()  # on the host: no copy per chunk
        x_t = complex_noise(y.shape[:1] + y.shape[-2:], generator, self.device)
        if self.config.sampler == "dps":
            return dps_sample(eps_fn, op, y, x_t, abar, ts, cfg.eta,
                              self.config.dps_zeta, generator, support, self.progress)
        dc = cg_consistency(op, y, cfg.xi, cfg.cg_iterations)
        return dds_sample(eps_fn, dc, x_t, abar, ts, cfg.eta, generator,
                          support, cfg.clip, self.progress)

    @torch.no_grad()
    def __call__(self, kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor,
                 metadata: Optional[Sequence[Optional[ScanMetadata]]] = None) -> ReconResult:
        maps = check_inputs(kspace, mask, maps).to(self.device)
        b = kspace.shape[0]
        metadata = list(metadata) if metadata is not None else [None] * b
        mask = mask.to(self.device, torch.float32).reshape(-1, *mask.shape[-2:])
        mask = mask.expand(b, -1, -1) if mask.shape[0] == 1 else mask
        y = kspace.to(self.device) * mask.unsqueeze(1)
        scale = self._scale(y, maps, mask)
        y = y / scale.reshape(-1, 1, 1, 1)
        gen = _generator(self.device, self.config.seed)
        mean, std = ensemble(lambda k: self._chunks(y, mask, maps, metadata, gen),
                             self.config.ensemble_size)
        s = scale.reshape(-1, 1, 1)
        unc = std * s if self.config.ensemble_size > 1 else None
        return ReconResult(image=(mean * s).to(torch.complex64), method=self.name, uncertainty=unc,
                           info={"steps": len(self._timesteps()), "guidance": self.config.dds.guidance,
                                 "scale": scale if scale.is_meta else scale.cpu()})

    def _scale(self, y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The normalisation of training (``percentile`` of ``|x|``), estimated from a quick
        CG-SENSE image of the undersampled data (the zero-filled image's percentile is biased
        by aliasing)."""
        op = Sense(maps, mask)
        rough = conjugate_gradient(lambda v: op.normal(v) + 1e-2 * v, op.adjoint(y), n_iter=10)
        return percentile_scale(rough, self.prior.normalisation.percentile)

    def _chunks(self, y, mask, maps, metadata, gen) -> torch.Tensor:
        n = self.config.batch_size
        parts = [self._sample_chunk(y[i:i + n], mask[i:i + n], maps[i:i + n], metadata[i:i + n], gen)
                 for i in range(0, y.shape[0], n)]
        return torch.cat(parts)


def _generator(device: torch.device, seed: int) -> Optional[torch.Generator]:
    """A generator on ``device`` seeded with ``seed``; None on ``meta``, the shape-only device
    on which the tests run the GPU code path (it has no random numbers)."""
    if device.type == "meta":
        return None
    return torch.Generator(device=device).manual_seed(seed)
