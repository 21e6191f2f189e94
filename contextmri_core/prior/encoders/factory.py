"""``EncoderConfig`` (YAML-safe, travels with a checkpoint) -> a ``ConditionEncoder``.

Imports run one way: config <- encoders <- factory (``EncoderConfig`` lives in ``config``; it is
re-exported here for callers that build encoders)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from contextmri_core.prior.encoders.base import ConditionEncoder
from contextmri_core.prior.encoders.clip import ClipTextEncoder
from contextmri_core.prior.encoders.config import EncoderConfig
from contextmri_core.prior.encoders.fused import FusedEncoder
from contextmri_core.prior.encoders.structured import StructuredMetadataEncoder


def build_encoder(cfg: EncoderConfig, root: Optional[Path] = None) -> ConditionEncoder:
    """A freshly initialised encoder (CLIP loaded from disk); a relative ``clip.path`` is
    resolved against ``root`` (a checkpoint directory passes itself)."""
    if cfg.kind == "structured":
        return StructuredMetadataEncoder(cfg.structured)
    clip = ClipTextEncoder(cfg.clip, root=root)
    if cfg.kind == "clip":
        return clip
    return FusedEncoder(StructuredMetadataEncoder(cfg.structured), clip, fusion=cfg.fusion)
