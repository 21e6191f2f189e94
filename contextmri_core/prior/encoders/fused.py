"""Structured + CLIP tokens ("Metadata Matters" §3.4): concatenation or addition.

The common width is the CLIP width ``D`` (768 for the published ContextMRI, so a fused encoder
fits that UNet's ``encoder_hid_dim``); the structured tokens are projected to it when their
width differs.

* ``concat``: ``[CLIP tokens (77), SEP, field tokens (F)]`` -> ``(B, 77 + 1 + F, D)``; the
  structured encoder's leading SEP token separates the two parts.
* ``add``: CLIP tokens + Linear(mean of the field tokens) broadcast over the 77 positions
  -> ``(B, 77, D)``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import ConfigError
from contextmri_core.prior.encoders.base import ConditionEncoder
from contextmri_core.prior.encoders.clip import ClipTextEncoder
from contextmri_core.prior.encoders.config import FUSIONS, EncoderConfig
from contextmri_core.prior.encoders.structured import StructuredMetadataEncoder


class FusedEncoder(ConditionEncoder):
    """``metadata -> (B, L, D)`` from a structured and a CLIP encoder; dropping the condition
    drops both parts (the result equals ``unconditional`` exactly)."""

    def __init__(self, structured: StructuredMetadataEncoder, clip: ClipTextEncoder,
                 fusion: str = "concat") -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ConfigError(f"encoder.fusion {fusion!r}: use one of {list(FUSIONS)}")
        self.structured = structured
        self.clip = clip
        self.fusion = fusion
        self.dim = clip.dim
        if fusion == "add" or structured.dim != clip.dim:
            self.project = nn.Linear(structured.dim, clip.dim)
        else:
            self.project = nn.Identity()
        extra = structured.seq_len if fusion == "concat" else 0
        self.seq_len = clip.seq_len + extra

    @property
    def config(self) -> EncoderConfig:
        """``EncoderConfig`` that rebuilds this encoder."""
        return EncoderConfig(kind="fused", structured=self.structured.structured_config,
                             clip=self.clip.clip_config, fusion=self.fusion)

    @property
    def device(self) -> torch.device:
        return self.structured.device

    def fuse(self, structured_tokens: torch.Tensor, clip_tokens: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + F, Ds)`` and ``(B, 77, D)`` -> ``(B, L, D)``."""
        clip_tokens = clip_tokens.to(self.structured.sep.dtype)
        if self.fusion == "concat":
            return torch.cat([clip_tokens, self.project(structured_tokens)], dim=1)
        pooled = structured_tokens[:, 1:].mean(dim=1)  # field tokens, without SEP
        return clip_tokens + self.project(pooled)[:, None, :]

    def forward(self, metadata: Sequence[Optional[ScanMetadata]],
                drop: Optional[torch.Tensor] = None,
                drop_fields: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, L, D)``; ``drop (B,)`` drops both parts, ``drop_fields (B, F)`` structured
        fields only."""
        out = self.fuse(self.structured(metadata, drop, drop_fields), self.clip(metadata, drop))
        if drop is not None and bool(drop.any()):
            mask = drop.to(out.device, torch.bool)[:, None, None]
            out = torch.where(mask, self.unconditional(len(metadata)), out)
        return out

    def unconditional(self, batch_size: int) -> torch.Tensor:
        """``(B, L, D)``: both parts unconditional."""
        return self.fuse(self.structured.unconditional(batch_size),
                         self.clip.unconditional(batch_size))
