"""One reconstructor over a checkpoint that holds several UNets (the published release's
``fastmri`` and ``skm-tea``): every call picks the UNet from the slices' metadata and hands the
slices to that UNet's reconstructor, so a warm server runs brain, knee and qDESS scans alike."""

from __future__ import annotations

import logging
from typing import Callable, Dict, Optional, Sequence

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.recon.base import ReconResult
from contextmri_core.sampling.dds import Progress

log = logging.getLogger(__name__)
Build = Callable[[str], object]  # UNet name -> a DiffusionReconstructor-like object


class UnetSwitch:
    """``build(name)`` makes the reconstructor of UNet ``name`` (called once per name);
    ``choose(metadata of the first slice)`` names the UNet a batch needs."""

    def __init__(self, build: Build, choose: Callable[[Optional[ScanMetadata]], str],
                 name: str = "dds", progress: Optional[Progress] = None,
                 cache: Optional[Dict[str, object]] = None) -> None:
        self.build, self.choose, self.name, self.progress = build, choose, name, progress
        self._cache: Dict[str, object] = {} if cache is None else cache

    def reconstructor(self, unet: str):
        """The (cached) reconstructor of UNet ``unet``."""
        if unet not in self._cache:
            log.info("using the %r UNet", unet)
            self._cache[unet] = self.build(unet)
        return self._cache[unet]

    def with_progress(self, progress: Optional[Progress]) -> "UnetSwitch":
        return UnetSwitch(self.build, self.choose, self.name, progress, self._cache)

    def __call__(self, kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor,
                 metadata: Optional[Sequence[Optional[ScanMetadata]]] = None) -> ReconResult:
        unet = self.choose(metadata[0] if metadata else None)
        recon = self.reconstructor(unet)
        if self.progress is not None:
            recon = recon.with_progress(self.progress)
        out = recon(kspace, mask, maps, metadata)
        out.info["unet"] = unet
        return out
