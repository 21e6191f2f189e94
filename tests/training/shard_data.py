"""Shard folders for data-pipeline tests: phantom images of chosen matrices written with the
project's own ``write_shard`` (real safetensors files) and their manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt
from contextmri_core.io.models.shard_manifest import write_manifest
from contextmri_core.io.models.shards import Shard, write_shard
from contextmri_core.physics.mvue import normalise
from tests.phantom import phantom

CONTRASTS = ("T2", "FLAIR", "T1")
PLANES = ("axial", "coronal", "sagittal")


def write_set(directory: Path, shards: Sequence[Tuple[int, int, int]], seed: int = 0,
              fov_mm: float = 220.0, manifest: bool = True) -> Path:
    """One shard per ``(slices, H, W)``; metadata cycles through contrasts and planes, pixel
    spacing = ``fov_mm`` / W, slice thickness 5 mm, brain."""
    directory.mkdir(parents=True, exist_ok=True)
    for k, (n, h, w) in enumerate(shards):
        images = torch.stack([phantom(h, w, 1, seed=seed + 101 * k + i)[0] for i in range(n)])
        x, scale = normalise(images)
        metas = tuple(ScanMetadata(anatomy="brain", contrast=CONTRASTS[k % 3], slice_index=i,
                                   tr_ms=9000.0, te_ms=90.0, flip_angle_deg=150.0,
                                   slice_plane=PLANES[k % 3], pixel_spacing_mm=fov_mm / w,
                                   slice_thickness_mm=5.0) for i in range(n))
        write_shard(directory / f"scan{k:03d}.safetensors",
                    Shard(x=x, scale=scale, metadata=metas,
                          prompts=tuple(build_prompt(m) for m in metas),
                          source=f"/raw/scan{k:03d}.h5", slices=tuple(range(n))))
    if manifest:
        write_manifest(directory)
    return directory


#: A prior small enough to train a few steps in a test on 2 CPU cores.
TINY = {"preset": "contextmri-small",
        "unet": {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 8,
                 "attention_head_dim": 8, "cross_attention_dim": 32,
                 "addition_embed_type_num_heads": 2},
        "encoder": {"kind": "structured", "structured": {"dim": 32, "hidden": 32}},
        "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 100}
