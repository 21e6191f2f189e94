"""``EncoderConfig`` (YAML-safe, travels with a checkpoint) -> a ``ConditionEncoder``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from contextmri_core.errors import ConfigError, reject_unknown_keys
from contextmri_core.prior.encoders.base import ConditionEncoder
from contextmri_core.prior.encoders.clip import ClipEncoderConfig, ClipTextEncoder
from contextmri_core.prior.encoders.fused import FUSIONS, FusedEncoder
from contextmri_core.prior.encoders.structured import (
    StructuredEncoderConfig,
    StructuredMetadataEncoder,
)

KINDS = ("structured", "clip", "fused")


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder: ``kind`` in ``KINDS``; ``structured`` (defaults filled in for
    "structured"/"fused"), ``clip`` (required for "clip"/"fused"), ``fusion`` for "fused"."""

    kind: str = "structured"
    structured: Optional[StructuredEncoderConfig] = None
    clip: Optional[ClipEncoderConfig] = None
    fusion: str = "concat"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"encoder.kind {self.kind!r}: use one of {list(KINDS)}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"encoder.fusion {self.fusion!r}: use one of {list(FUSIONS)}")
        if self.kind in ("clip", "fused") and self.clip is None:
            raise ConfigError(f"encoder.clip is missing: kind {self.kind!r} needs clip.path, a "
                              "directory with text_encoder/ and tokenizer/")
        if self.kind in ("structured", "fused") and self.structured is None:
            object.__setattr__(self, "structured", StructuredEncoderConfig())

    def to_dict(self) -> dict:
        """Plain types only (``yaml.safe_dump``-able)."""
        return {
            "kind": self.kind,
            "structured": None if self.structured is None else self.structured.to_dict(),
            "clip": None if self.clip is None else self.clip.to_dict(),
            "fusion": self.fusion,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        """Inverse of ``to_dict``; missing keys take their defaults."""
        reject_unknown_keys(cls, d, "encoder")
        structured, clip = d.get("structured"), d.get("clip")
        return cls(
            kind=d.get("kind", "structured"),
            structured=None if structured is None else StructuredEncoderConfig.from_dict(structured),
            clip=None if clip is None else ClipEncoderConfig.from_dict(clip),
            fusion=d.get("fusion", "concat"),
        )


def build_encoder(cfg: EncoderConfig, root: Optional[Path] = None) -> ConditionEncoder:
    """A freshly initialised encoder (CLIP loaded from disk); a relative ``clip.path`` is
    resolved against ``root`` (a checkpoint directory passes itself)."""
    if cfg.kind == "structured":
        return StructuredMetadataEncoder(cfg.structured)
    clip = ClipTextEncoder(cfg.clip, root=root)
    if cfg.kind == "clip":
        return clip
    return FusedEncoder(StructuredMetadataEncoder(cfg.structured), clip, fusion=cfg.fusion)
