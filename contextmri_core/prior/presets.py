"""UNet presets of the ContextMRI family (``diffusers.UNet2DConditionModel`` kwargs).

``contextmri-paper``: the published 318M configuration (DESIGN.md §6). ``contextmri-small``:
the same block types and conditioning path, narrow enough to train and sample on a CPU
(4.8M parameters; the self/cross-attention blocks sit at the two lowest resolutions only).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional

from contextmri_core.errors import ConfigError

_ATTN_DOWN = "SimpleCrossAttnDownBlock2D"
_ATTN_UP = "SimpleCrossAttnUpBlock2D"

PAPER: Dict[str, Any] = dict(
    sample_size=320, in_channels=2, out_channels=2,
    block_out_channels=[192, 384, 576, 768], layers_per_block=3, attention_head_dim=64,
    down_block_types=["ResnetDownsampleBlock2D", _ATTN_DOWN, _ATTN_DOWN, _ATTN_DOWN],
    up_block_types=[_ATTN_UP, _ATTN_UP, _ATTN_UP, "ResnetUpsampleBlock2D"],
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    cross_attention_dim=768, encoder_hid_dim=768, addition_embed_type="text",
    resnet_time_scale_shift="scale_shift", cross_attention_norm="group_norm",
)

SMALL: Dict[str, Any] = dict(
    PAPER, sample_size=128, block_out_channels=[32, 64, 96, 128], layers_per_block=1,
    attention_head_dim=32,
    down_block_types=["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D", _ATTN_DOWN, _ATTN_DOWN],
    up_block_types=[_ATTN_UP, _ATTN_UP, "ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"],
    cross_attention_dim=128, encoder_hid_dim=128,
)

PRESETS: Dict[str, Dict[str, Any]] = {"contextmri-paper": PAPER, "contextmri-small": SMALL}


def unet_config(
    preset: str, *, sample_size: Optional[int] = None, condition_dim: Optional[int] = None,
    **overrides: Any,
) -> Dict[str, Any]:
    """The kwargs of a preset; ``condition_dim`` sets the encoder's token width
    (``encoder_hid_dim``), ``sample_size`` the nominal training size."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: use one of {sorted(PRESETS)}")
    cfg = copy.deepcopy(PRESETS[preset])
    if sample_size is not None:
        cfg["sample_size"] = int(sample_size)
    if condition_dim is not None:
        cfg["encoder_hid_dim"] = int(condition_dim)
    cfg.update(overrides)
    return cfg


def downsampling_factor(config: Dict[str, Any]) -> int:
    """Image sides must be multiples of this (one halving per down block but the last)."""
    return 2 ** (len(config["block_out_channels"]) - 1)


def build_unet(config: Dict[str, Any]):
    """A randomly initialised ``UNet2DConditionModel`` from preset kwargs."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)
