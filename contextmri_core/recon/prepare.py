"""From a read scan to the tensors every reconstructor takes: prewhitening, optional SVD coil
compression, retrospective undersampling, ESPIRiT maps from the calibration data actually
present. Shared by the demo,
replay and the gadgets so they cannot drift apart."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.scan import RawScan, SliceData
from contextmri_core.errors import ConfigError
from contextmri_core.physics.calibration import calibration_data
from contextmri_core.physics.coil_compression import compress, compression_matrix, kept_energy
from contextmri_core.physics.coils import espirit_maps
from contextmri_core.physics.noise import prewhiten, prewhitening_matrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepConfig:
    """How to turn raw slices into reconstruction inputs."""

    prewhiten: bool = True
    espirit_kernel_width: int = 6
    espirit_threshold: float = 0.02
    espirit_crop: float = 0.95
    device: str = "cpu"
    virtual_coils: Optional[int] = None  # SVD coil compression to this many coils; None = off

    def __post_init__(self) -> None:
        if self.virtual_coils is not None and self.virtual_coils < 1:
            raise ConfigError(f"virtual_coils must be None (no compression) or >= 1, "
                              f"got {self.virtual_coils}")
        if not 0 <= self.espirit_crop < 1:
            raise ConfigError(f"espirit_crop must be in [0, 1), got {self.espirit_crop}")
        if self.espirit_kernel_width < 3:
            raise ConfigError(f"espirit_kernel_width must be >= 3, got {self.espirit_kernel_width}")


@dataclass(frozen=True)
class SliceBatch:
    """``kspace (B, C, ky, kx)``, ``mask (B, ky, kx)``, ``maps (B, C, ny, nx)`` on one device."""

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    metadata: Tuple[ScanMetadata, ...]


def undersample(sl: SliceData, mask: np.ndarray) -> SliceData:
    """Retrospectively keep only ``mask`` ``(ky, kx)`` of an (ideally fully sampled) slice;
    calibration is then re-detected from the new mask (flags of the original are dropped)."""
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != sl.mask.shape:
        raise ConfigError(f"mask {mask.shape} does not fit the slice's k-space {sl.mask.shape}")
    keep = mask * (sl.mask > 0)
    return dataclasses.replace(sl, kspace=(sl.kspace * keep).astype(np.complex64), mask=keep,
                               acs=None, acs_rows=None)


def _calibration_block(sl: SliceData, cfg: PrepConfig, w: Optional[torch.Tensor]) -> torch.Tensor:
    """The slice's calibration block ``(C, rows, cols)`` on ``cfg.device``, prewhitened by ``w``."""
    block = torch.from_numpy(calibration_data(sl.kspace, sl.mask, sl.acs, sl.acs_rows))
    block = block.to(cfg.device)
    return block if w is None else prewhiten(block, w, coil_dim=0)


def _espirit(block: torch.Tensor, sl: SliceData, cfg: PrepConfig) -> torch.Tensor:
    return espirit_maps(block, sl.kspace.shape[-2:], cfg.espirit_kernel_width,
                        cfg.espirit_threshold, cfg.espirit_crop)


def estimate_maps(sl: SliceData, cfg: PrepConfig, w: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ESPIRiT maps ``(C, ny, nx)`` from the slice's calibration block (prewhitened by ``w``)."""
    return _espirit(_calibration_block(sl, cfg, w), sl, cfg)


def _compresses(cfg: PrepConfig, num_coils: int) -> bool:
    return cfg.virtual_coils is not None and cfg.virtual_coils < num_coils


def _slice_inputs(sl: SliceData, kspace: torch.Tensor, cfg: PrepConfig,
                  w: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(k-space ``(V, ky, kx)``, maps ``(V, ny, nx)``) of one slice whose prewhitened k-space is
    ``kspace`` ``(C, ky, kx)``: compressed to ``cfg.virtual_coils`` with a matrix from the
    slice's own calibration block (then ESPIRiT on the compressed block), else V = C."""
    block = _calibration_block(sl, cfg, w)
    if _compresses(cfg, block.shape[0]):
        matrix = compression_matrix(block, num_virtual=cfg.virtual_coils)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("slice %s: %d -> %d coils keep %.4f of the calibration energy",
                      sl.metadata.slice_index, block.shape[0], matrix.shape[0],
                      kept_energy(block, matrix))
        kspace, block = compress(kspace, matrix, coil_dim=-3), compress(block, matrix, coil_dim=0)
    return kspace, _espirit(block, sl, cfg)


def prepare_slices(
    slices: Sequence[SliceData], noise: Optional[np.ndarray], cfg: PrepConfig = PrepConfig()
) -> SliceBatch:
    """Stack slices (same matrix) into a batch with prewhitened (and, with
    ``cfg.virtual_coils``, coil-compressed) k-space and ESPIRiT maps."""
    w = None
    if cfg.prewhiten and noise is not None:
        w = prewhitening_matrix(torch.from_numpy(np.asarray(noise)).to(cfg.device))
    ksp = torch.from_numpy(np.stack([s.kspace for s in slices])).to(cfg.device)
    if w is not None:
        ksp = prewhiten(ksp, w, coil_dim=-3)
    pairs = [_slice_inputs(s, k, cfg, w) for s, k in zip(slices, ksp)]
    ksp, maps = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    mask = torch.from_numpy(np.stack([s.mask for s in slices]).astype(np.float32)).to(cfg.device)
    log.info("prepared %d slices: kspace %s, %s%s", len(slices), tuple(ksp.shape),
             "prewhitened" if w is not None else "not prewhitened",
             f", {slices[0].num_coils} coils compressed to {ksp.shape[1]}"
             if _compresses(cfg, slices[0].num_coils) else "")
    return SliceBatch(kspace=ksp, mask=mask, maps=maps, metadata=tuple(s.metadata for s in slices))


def prepare_scan(scan: RawScan, cfg: PrepConfig = PrepConfig()) -> SliceBatch:
    """All slices of a scan, using its noise scan for prewhitening when present."""
    return prepare_slices(scan.slices, scan.noise, cfg)


def mvue_targets(batch: SliceBatch, image_size: Tuple[int, int], percentile: float = 0.99):
    """Training targets as ContextMRI makes them: MVUE of the (fully sampled) k-space with the
    batch's maps, centre-cropped to ``image_size`` and divided by its ``percentile`` of ``|x|``.

    Returns ``(x (B, H, W) complex64, scale (B,))``.
    """
    from contextmri_core.physics.mvue import center_crop, mvue, normalise

    image = center_crop(mvue(batch.kspace * batch.mask.unsqueeze(1), batch.maps), image_size)
    return normalise(image, percentile)
