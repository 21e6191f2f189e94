"""``FitConfig``: every knob of ``fit``/``finetune``, from YAML and/or command-line flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from contextmri_core.errors import ConfigError


@dataclass(frozen=True)
class FitConfig:
    """Training settings; ``unet`` holds overrides of the preset's diffusers kwargs and
    ``encoder`` an ``EncoderConfig.to_dict()`` (default: structured)."""

    data: str = ""
    out: str = ""
    preset: str = "contextmri-small"
    unet: Dict[str, Any] = field(default_factory=dict)
    encoder: Dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    p_uncond: float = 0.1
    p_mr_drop: float = 0.5
    p_field_drop: float = 0.0
    precision: str = "bf16"  # GPU autocast: bf16 | fp16 | fp32; CPU always fp32
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 20
    sample_every: int = 0  # 0: sample images only with each checkpoint
    max_minutes: float = 0.0  # 0: no wall-time limit
    init_from: Optional[str] = None  # fine-tuning: start from this model folder (either layout)
    init_unet: Optional[str] = None  # published init_from: fastmri | skm-tea (None: from the data)
    lora_rank: int = 0  # > 0: train only LoRA adapters on the attention projections
    lora_alpha: float = 4.0
    ood_data: Optional[str] = None  # shards of an out-of-distribution set to mix in
    ood_ratio: float = 0.0  # fraction of every batch drawn from ood_data
    t_window: Optional[List[int]] = None  # [lo, hi]: train only these timesteps
    # data pipeline (training.data / training.sampler)
    patch_size: Optional[List[int]] = None  # [H, W]; None: the data's matrix (one size only)
    augment: Dict[str, Any] = field(default_factory=dict)  # training.augment.AugmentConfig
    num_workers: int = 0  # DataLoader worker processes reading and augmenting slices
    prefetch_factor: int = 2  # batches in flight per worker
    shuffle_buffer: int = 256  # a slice moves by fewer positions than this in the local shuffle
    # validation (training.validation)
    val_data: Optional[str] = None  # shard folder of the validation set
    val_every: int = 0  # steps between validations; 0: with every checkpoint
    val_slices: int = 32  # size of the fixed validation subset
    val_timesteps: List[int] = field(default_factory=lambda: [100, 300, 500, 700, 900])
    log_batches: bool = False  # log every batch's (shard, slice) keys per rank (debugging)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"fit.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("p_uncond", "p_mr_drop", "p_field_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"fit.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"fit.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.ood_ratio < 1 or (self.ood_ratio > 0 and not self.ood_data):
            raise ConfigError("fit.ood_ratio must be in [0, 1) and needs fit.ood_data")
        if self.t_window is not None and not (len(self.t_window) == 2 and 0 <= self.t_window[0] <= self.t_window[1]):
            raise ConfigError(f"fit.t_window must be [lo, hi] with 0 <= lo <= hi, got {self.t_window}")
        if self.lora_rank < 0:
            raise ConfigError(f"fit.lora_rank must be >= 0, got {self.lora_rank}")
        if self.precision not in ("bf16", "fp16", "fp32"):
            raise ConfigError(f"fit.precision {self.precision!r}: use bf16, fp16 or fp32")
        self._check_data()

    def _check_data(self) -> None:
        from training.augment import AugmentConfig

        if self.patch_size is not None and not (
                len(self.patch_size) == 2 and all(int(p) >= 8 for p in self.patch_size)):
            raise ConfigError(f"fit.patch_size must be [H, W] with sides >= 8, got {self.patch_size}")
        AugmentConfig.from_dict(self.augment)
        for name, low in (("num_workers", 0), ("prefetch_factor", 1), ("shuffle_buffer", 1),
                          ("val_every", 0), ("val_slices", 1)):
            if int(getattr(self, name)) < low:
                raise ConfigError(f"fit.{name} must be >= {low}, got {getattr(self, name)}")
        if not self.val_timesteps or not all(0 <= int(t) for t in self.val_timesteps):
            raise ConfigError(f"fit.val_timesteps must be timesteps >= 0, got {self.val_timesteps}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: Optional[Path], overrides: Dict[str, Any]) -> FitConfig:
    """YAML file (optional) updated by the non-None command-line ``overrides``."""
    values: Dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config must be a mapping of FitConfig fields")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown fit settings {unknown}; valid: {sorted(known)}")
    if not values.get("data") or not values.get("out"):
        raise ConfigError("fit needs 'data' (a shard directory) and 'out' (checkpoint directory)")
    return FitConfig(**values)
