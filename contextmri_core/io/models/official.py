"""Published ContextMRI checkpoints (diffusers layout) and one entry point for any model directory.

A published checkpoint is a directory ``unet/`` (``config.json`` + weights), ``text_encoder/``
and ``tokenizer/`` (CLIP) and ``scheduler/scheduler_config.json``. It is read from local files
only and wrapped as a ``DiffusionPrior`` with the CLIP text encoder, the schedule from the
scheduler config, and ContextMRI's normalisation (99th percentile, the UNet's sample size).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Union

import torch

from contextmri_core.errors import ContextMRIError
from contextmri_core.io.models.checkpoint import (
    YAML_NAME, CheckpointError, PathLike, load_prior, place,
)
from contextmri_core.prior.encoders.base import ConditionEncoder
from contextmri_core.prior.encoders.clip import ClipEncoderConfig
from contextmri_core.prior.encoders.factory import EncoderConfig, build_encoder
from contextmri_core.prior.model import DiffusionPrior, Normalisation
from contextmri_core.prior.schedule import ScheduleConfig

log = logging.getLogger(__name__)

UNET_CONFIG = "unet/config.json"
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
_REQUIRED = (UNET_CONFIG, "text_encoder", "tokenizer", SCHEDULER_CONFIG)
_LAYOUTS = (
    f"a contextmri checkpoint ({YAML_NAME}, unet.safetensors, encoder.safetensors) or a "
    f"published ContextMRI checkpoint in the diffusers layout (unet/config.json + weights, "
    f"text_encoder/, tokenizer/, {SCHEDULER_CONFIG})"
)


def load_any(path: PathLike, device: Union[str, torch.device] = "cpu",
             dtype: torch.dtype = torch.float32) -> DiffusionPrior:
    """The prior in model directory ``path``: a contextmri checkpoint or a published one."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(root, f"no such model directory: it must be {_LAYOUTS}")
    if (root / YAML_NAME).is_file():
        return load_prior(root, device=device, dtype=dtype)
    if (root / UNET_CONFIG).is_file():
        return load_official(root, device=device, dtype=dtype)
    raise CheckpointError(root, f"is not a model directory: it must be {_LAYOUTS}")


def load_official(directory: PathLike, device: Union[str, torch.device] = "cpu",
                  dtype: torch.dtype = torch.float32) -> DiffusionPrior:
    """A published ContextMRI checkpoint (diffusers layout) as a ``DiffusionPrior``, eval mode."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(root, "no such model directory: check the path")
    missing = missing_parts(root)
    if missing:
        raise CheckpointError(root, f"missing {', '.join(missing)}: a published ContextMRI "
                                    f"checkpoint holds {', '.join(_REQUIRED)}")
    unet = _load_unet(root / "unet")
    schedule = _load_schedule(root / SCHEDULER_CONFIG)
    encoder = _load_clip(root)
    width = unet.config.encoder_hid_dim or unet.config.cross_attention_dim
    if encoder.dim != width:
        raise CheckpointError(root / UNET_CONFIG, f"the UNet expects condition tokens of width "
                                                  f"{width} but text_encoder/ gives {encoder.dim}")
    size = unet.config.sample_size
    image_size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))
    info = {"source": "published ContextMRI checkpoint (diffusers layout)", "path": str(root),
            "diffusers_version": unet.config.get("_diffusers_version")}
    prior = DiffusionPrior(unet, encoder, schedule,
                           Normalisation(percentile=0.99, image_size=image_size), info=info)
    log.info("loaded published ContextMRI checkpoint from %s", root)
    return place(prior, device, dtype)


def _load_unet(path: Path) -> torch.nn.Module:
    """``UNet2DConditionModel.from_pretrained`` from local files, checked for ContextMRI's
    2-channel epsilon setup."""
    from diffusers import UNet2DConditionModel

    try:
        unet = UNet2DConditionModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError, RuntimeError) as err:
        raise CheckpointError(path, f"cannot load the UNet ({err}): unet/ must hold "
                                    f"config.json and diffusion_pytorch_model.safetensors") from err
    cin, cout = unet.config.in_channels, unet.config.out_channels
    if cin != 2 or cout != 2:
        raise CheckpointError(path / "config.json", f"in_channels={cin}, out_channels={cout}: "
                                                    f"a ContextMRI UNet has 2 (real, imag)")
    return unet


def _load_schedule(path: Path) -> ScheduleConfig:
    """The training schedule from ``scheduler_config.json`` (epsilon prediction only)."""
    cfg = _read_json(path)
    if cfg.get("trained_betas") is not None or cfg.get("rescale_betas_zero_snr"):
        raise CheckpointError(path, "trained_betas / rescale_betas_zero_snr are not supported: "
                                    "use a beta_schedule")
    try:
        return ScheduleConfig.from_diffusers(cfg)
    except (ContextMRIError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"unsupported schedule: {err}") from err


def _load_clip(root: Path) -> ConditionEncoder:
    """The CLIP text encoder from ``root/text_encoder`` and ``root/tokenizer``."""
    cfg = EncoderConfig(kind="clip", clip=ClipEncoderConfig(path="."))
    try:
        return build_encoder(cfg, root=root)
    except CheckpointError:
        raise
    except (ContextMRIError, OSError, ValueError) as err:
        raise CheckpointError(root, f"cannot load the CLIP text encoder from text_encoder/ and "
                                    f"tokenizer/ ({err})") from err


def _read_json(path: Path) -> Dict[str, Any]:
    """A JSON object from ``path``, or a ``CheckpointError`` naming the file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(path, f"cannot be read as JSON ({err})") from err
    if not isinstance(doc, dict):
        raise CheckpointError(path, "is not a JSON object")
    return doc


def missing_parts(root: Path) -> List[str]:
    """The parts of the diffusers layout that ``root`` lacks (empty when complete)."""
    return [name for name in _REQUIRED if not (root / name).exists()]
