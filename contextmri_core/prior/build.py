"""Build a freshly initialised prior from a preset and an encoder configuration."""

from __future__ import annotations

from typing import Optional, Tuple

from contextmri_core.prior.encoders.factory import EncoderConfig, build_encoder
from contextmri_core.prior.model import DiffusionPrior, Normalisation
from contextmri_core.prior.presets import build_unet, unet_config
from contextmri_core.prior.schedule import ScheduleConfig


def new_prior(
    preset: str = "contextmri-small",
    encoder: Optional[EncoderConfig] = None,
    image_size: Tuple[int, int] = (128, 128),
    schedule: ScheduleConfig = ScheduleConfig(),
    info: Optional[dict] = None,
    **unet_overrides,
) -> DiffusionPrior:
    """A randomly initialised ``DiffusionPrior`` (diffusers' own initialisation) whose UNet
    takes the encoder's token width; the default encoder is the structured one."""
    enc = build_encoder(encoder or EncoderConfig())
    cfg = unet_config(preset, sample_size=max(image_size), condition_dim=enc.dim, **unet_overrides)
    return DiffusionPrior(build_unet(cfg), enc, schedule, Normalisation(image_size=tuple(image_size)),
                          info=info)
