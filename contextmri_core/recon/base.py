"""The one signature every reconstruction shares, so fallback and baselines are a swap.

A reconstructor is called as ``recon(kspace, mask, maps, metadata)`` with
``kspace (B, C, ky, kx)`` complex64, ``mask (ky, kx)`` or ``(B, ky, kx)`` (1 = acquired),
``maps (B, C, ny, nx)`` (or ``(C, ny, nx)``) and one ``ScanMetadata`` per slice (or None),
and returns a :class:`ReconResult` in the intensity scale of the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import ShapeError


@dataclass(frozen=True)
class ReconResult:
    """``image (B, ny, nx)`` complex64; optional per-pixel ``uncertainty (B, ny, nx)`` (std)."""

    image: torch.Tensor
    method: str
    uncertainty: Optional[torch.Tensor] = None
    info: dict = field(default_factory=dict)


class Reconstructor(Protocol):
    name: str

    def __call__(
        self,
        kspace: torch.Tensor,
        mask: torch.Tensor,
        maps: torch.Tensor,
        metadata: Optional[Sequence[Optional[ScanMetadata]]] = None,
    ) -> ReconResult: ...


def check_inputs(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Validate the shared contract; returns maps with a batch axis ``(B, C, ny, nx)``."""
    if kspace.ndim != 4 or not kspace.is_complex():
        raise ShapeError(f"kspace must be complex (B, C, ky, kx); got {tuple(kspace.shape)} "
                         f"{kspace.dtype}")
    if maps.ndim == 3:
        maps = maps.unsqueeze(0).expand(kspace.shape[0], -1, -1, -1)
    if maps.shape[-3:] != kspace.shape[-3:] or maps.shape[0] not in (1, kspace.shape[0]):
        raise ShapeError(f"maps {tuple(maps.shape)} do not fit kspace {tuple(kspace.shape)}")
    if mask.shape[-2:] != kspace.shape[-2:]:
        raise ShapeError(f"mask {tuple(mask.shape)} does not fit kspace {tuple(kspace.shape)}")
    return maps
