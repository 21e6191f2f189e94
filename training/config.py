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
