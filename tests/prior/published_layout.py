"""Tiny random models saved in the exact layout of the published ContextMRI release
(``MRI_checkpoint/``: ``fastmri/``, ``skm-tea/``, ``scheduler/``, ``text_encoder/``,
``tokenizer/``, ``model_index.json``; no ``unet/``). Nothing is downloaded.

The UNets keep the published family's conditioning path (SimpleCrossAttn mid block, text
addition embedding, scale-shift time embedding, group-norm cross-attention) at widths that make
a 320x320 forward cheap on a CPU (4 channels, no resnets in the down blocks, attention only in
the mid block at 80x80). The scheduler config is Stable Diffusion's, the published release's
origin (scaled_linear 0.00085..0.012, ``steps_offset`` 1), so DDIM's timesteps are 991, 981, ...
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Mapping

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from contextmri_core.prior.presets import unet_config  # noqa: E402
from tests.prior.tiny_clip import make_tiny_clip  # noqa: E402

CLIP_WIDTH = 32  # make_tiny_clip's hidden size
_ATTN_DOWN, _ATTN_UP = "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnUpBlock2D"
TINY_UNET = dict(block_out_channels=[4, 4, 4], layers_per_block=0, attention_head_dim=4,
                 norm_num_groups=4, cross_attention_dim=CLIP_WIDTH, encoder_hid_dim=CLIP_WIDTH,
                 addition_embed_type_num_heads=2,
                 down_block_types=["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D", _ATTN_DOWN],
                 up_block_types=[_ATTN_UP, "ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"])
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 beta_schedule="scaled_linear", steps_offset=1, clip_sample=False)
MODEL_INDEX = {"_class_name": "MRIPipeline", "_diffusers_version": "0.16.0.dev0",
               "scheduler": ["diffusers", "DDPMScheduler"],
               "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"],
               "unet": ["diffusers", "UNet2DConditionModel"]}
SIZES = {"fastmri": 320, "skm-tea": 512}


def write_unet(folder: Path, sample_size: int, seed: int = 0, **overrides):
    """A random tiny UNet of the published family saved with ``save_pretrained``."""
    from diffusers import UNet2DConditionModel

    cfg = unet_config("contextmri-paper", **dict(TINY_UNET, sample_size=sample_size, **overrides))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**cfg).eval()
    unet.save_pretrained(str(folder))
    return unet


def write_published(root: Path, sizes: Mapping[str, int] = SIZES, seed: int = 0,
                    **unet_overrides) -> Dict[str, object]:
    """Write the published layout to ``root``; returns ``{unet name: the saved UNet}``."""
    from diffusers import DDPMScheduler

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    unets = {name: write_unet(root / name, size, seed + i, **unet_overrides)
             for i, (name, size) in enumerate(sizes.items())}
    make_tiny_clip(root)
    DDPMScheduler(**SCHEDULER).save_config(str(root / "scheduler"))
    (root / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    return unets
