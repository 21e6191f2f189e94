"""The interface every condition encoder implements (structured, CLIP text, fused)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from contextmri_core.data.metadata import ScanMetadata


class ConditionEncoder(nn.Module):
    """``metadata -> encoder_hidden_states (B, L, D)`` with a fixed ``L`` and ``D = dim``.

    ``forward(metadata, drop=None)``: one entry per batch element (``None`` = nothing known);
    ``drop`` optionally a ``(B,)`` bool tensor: True drops that element's whole condition
    (classifier-free-guidance training). ``unconditional(batch)`` gives the tokens of "no
    condition"; a dropped element equals it exactly. ``config`` is a frozen dataclass with
    ``to_dict()`` that rebuilds the encoder via ``build_encoder``.
    """

    dim: int
    seq_len: int

    def forward(
        self, metadata: Sequence[Optional[ScanMetadata]], drop: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def unconditional(self, batch_size: int) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
