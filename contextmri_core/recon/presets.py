"""Sampler settings presets: the published ContextMRI paper's and ours.

``paper`` (the default for a published checkpoint) is the published ``recon_mri.py`` /
``pipeline_mri.dds``: timesteps of ``DDIMScheduler.set_timesteps(100)`` for the saved scheduler
config with abar moving to ``t - T // 100``, eta 0.8, gamma (xi) 5, 5 CG iterations, no clip,
no support mask, fp32, CFG read as published (s <= 1: the conditional prediction alone; 0: the
empty prompt; > 1: ``eps_u + s (eps_c - eps_u)``), default scale 1 (``recon_mri.py``'s default;
its ``recon_mri.sh`` runs 2). Its CG is ours (Hermitian, one system per slice: the published
``r^T r`` CG is a bug, DESIGN.md §5).

``contextmri`` (the default for our checkpoints) differs in what it changes:
- ``support_mask``: x0 is zeroed outside the coil-map support every step (the prior paints
  nothing where no coil sees; 3.8-15 dB on our scans with our small prior, DESIGN.md §6);
- ``clip`` 3: a loose guard on |x0| (3x the 99th percentile);
- fewer steps (50, or 25 for the stream server) with xi 20 and 10 CG iterations;
- evenly spaced timesteps from T-1 to 0 and CFG scales interpolated for any s;
- fp16 autocast on GPUs (bf16 also possible: ``precision``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Union

from contextmri_core.errors import ConfigError
from contextmri_core.prior.model import DiffusionPrior
from contextmri_core.recon.diffusion import DiffusionReconConfig
from contextmri_core.sampling.dds import DDSConfig

PRESETS = ("auto", "paper", "contextmri")

PAPER = DiffusionReconConfig(
    dds=DDSConfig(steps=100, eta=0.8, cg_iterations=5, xi=5.0, guidance=1.0, clip=0.0,
                  support_mask=False, timestep_rule="scheduler", cfg_rule="published"),
    precision="fp32", grid="auto")
CONTEXTMRI = DiffusionReconConfig()


def _convention(prior: Union[DiffusionPrior, str]) -> str:
    return prior if isinstance(prior, str) else prior.normalisation.convention


def preset_name(prior: Union[DiffusionPrior, str], name: str = "auto") -> str:
    """``paper`` or ``contextmri``: ``auto`` follows the prior's convention (a prior or its
    ``Normalisation.convention``)."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r}: use one of {PRESETS}")
    if name != "auto":
        return name
    return "paper" if _convention(prior) == "published" else "contextmri"


def preset_config(prior: Union[DiffusionPrior, str], name: str = "auto") -> DiffusionReconConfig:
    """The settings ``prior`` runs with under preset ``name``."""
    return PAPER if preset_name(prior, name) == "paper" else CONTEXTMRI


def with_overrides(cfg: DiffusionReconConfig, **changes: Any) -> DiffusionReconConfig:
    """``cfg`` with the given fields replaced (``DDSConfig`` or ``DiffusionReconConfig``
    names; None values are ignored: "keep the preset's")."""
    given = {k: v for k, v in changes.items() if v is not None}
    dds_names = {f.name for f in dataclasses.fields(DDSConfig)}
    dds = dataclasses.replace(cfg.dds, **{k: v for k, v in given.items() if k in dds_names})
    rest = {k: v for k, v in given.items() if k not in dds_names}
    return dataclasses.replace(cfg, dds=dds, **rest)


def describe(cfg: DiffusionReconConfig, prior: Union[DiffusionPrior, str]) -> Dict[str, Any]:
    """The settings ``prior`` (or its convention) runs with as a flat JSON-ready dict
    (``contextmri info --model``)."""
    d = cfg.dds
    grid = cfg.grid if cfg.grid != "auto" else (
        "pad" if _convention(prior) == "published" else "full")
    return {"sampler": cfg.sampler, "steps": d.steps, "timesteps": d.timestep_rule, "eta": d.eta,
            "xi": d.xi, "cg_iterations": d.cg_iterations, "guidance": d.guidance,
            "cfg_rule": d.cfg_rule, "clip": d.clip, "support_mask": d.support_mask,
            "grid": grid, "precision": cfg.precision, "batch_size": cfg.batch_size}
