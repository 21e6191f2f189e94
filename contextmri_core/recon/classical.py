"""Classical reconstructions (fallback and baselines): zero-filled RSS, SENSE by CG, and
L1-wavelet compressed sensing (sigpy's FISTA/db4 implementation)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.physics.cg import conjugate_gradient
from contextmri_core.physics.coils import rss
from contextmri_core.physics.fft import ifft2c
from contextmri_core.physics.linop import Sense
from contextmri_core.physics.mvue import mvue, percentile_scale
from contextmri_core.recon.base import ReconResult, check_inputs

log = logging.getLogger(__name__)
Meta = Optional[Sequence[Optional[ScanMetadata]]]


def _mask_4d(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Mask ``(ky, kx)`` / ``(B, ky, kx)`` -> ``(B|1, 1, ky, kx)`` float32 on ``like``'s device."""
    mask = mask.to(device=like.device, dtype=torch.float32)
    return mask.reshape(-1, 1, *mask.shape[-2:])


@dataclass(frozen=True)
class ZeroFilledRecon:
    """Root-sum-of-squares of the zero-filled coil images (real, returned as complex64)."""

    name: str = "zero_filled"

    def __call__(self, kspace, mask, maps, metadata: Meta = None) -> ReconResult:
        check_inputs(kspace, mask, maps)
        image = rss(ifft2c(kspace * _mask_4d(mask, kspace))).to(torch.complex64)
        return ReconResult(image=image, method=self.name)


@dataclass(frozen=True)
class SenseRecon:
    """CG-SENSE: solve ``(A^H A + lam I) x = A^H y`` per slice (``lam`` relative to ||A||~1)."""

    n_iter: int = 30
    lam: float = 1e-3
    tol: float = 1e-6
    name: str = "sense"

    def __call__(self, kspace, mask, maps, metadata: Meta = None) -> ReconResult:
        maps = check_inputs(kspace, mask, maps)
        op = Sense(maps, mask.to(kspace.device))
        rhs = op.adjoint(kspace)
        image = conjugate_gradient(lambda x: op.normal(x) + self.lam * x, rhs,
                                   n_iter=self.n_iter, tol=self.tol)
        return ReconResult(image=image, method=self.name)


@dataclass(frozen=True)
class L1WaveletRecon:
    """L1-wavelet CS (sigpy ``L1WaveletRecon``, db4, FISTA) on data scaled so the zero-filled
    MVUE has unit 99th percentile; ``lam`` is relative to that scale. CPU (numpy) per slice."""

    lam: float = 0.003
    n_iter: int = 100
    wavelet: str = "db4"
    name: str = "l1_wavelet"

    def __call__(self, kspace, mask, maps, metadata: Meta = None) -> ReconResult:
        import sigpy.mri

        maps = check_inputs(kspace, mask, maps)
        m4 = _mask_4d(mask, kspace)
        y = kspace * m4
        scale = percentile_scale(mvue(y, maps))
        out = []
        for b in range(kspace.shape[0]):
            weights = m4[b if m4.shape[0] > 1 else 0, 0].cpu().numpy()
            app = sigpy.mri.app.L1WaveletRecon(
                (y[b] / scale[b]).cpu().numpy(), maps[b].cpu().numpy(), self.lam,
                weights=weights, wave_name=self.wavelet, max_iter=self.n_iter, show_pbar=False)
            out.append(np.asarray(app.run(), dtype=np.complex64) * float(scale[b]))
        image = torch.from_numpy(np.stack(out)).to(kspace.device)
        return ReconResult(image=image, method=self.name)


CLASSICAL = {"zero_filled": ZeroFilledRecon, "sense": SenseRecon, "l1_wavelet": L1WaveletRecon}
