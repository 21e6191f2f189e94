"""From a stored slice to a training sample: optional augmentations that keep the data
physical, then a crop (random in training, centred in validation) or zero-pad to the patch.

Images are complex64 ``(E1 rows, RO columns)`` normalised so that the 99th percentile of
``|x|`` is 1 (``physics.mvue.normalise``); every step here keeps that true.

* **resample** (``resample_spacing_mm: [lo, hi]``): a new in-plane pixel spacing drawn
  uniformly from the range; the centred k-space of the image is cropped (coarser grid) or
  zero-padded (finer grid) to ``round(n * old / new)`` samples per axis and transformed back
  (orthonormal FFTs, amplitude kept). For band-limited data this is exact: cropping is what a
  scan at the coarser resolution acquires, zero-padding is scanner-style zero-filled
  interpolation. The sample's ``pixel_spacing_mm`` becomes the achieved spacing (mean of both
  axes). Slices without a known spacing are left alone.
* **flip_lr** (p = 0.5): mirror left-right where that gives a plausible patient: axial and
  coronal slices of the anatomies in ``flip_anatomies`` (a mirrored brain or knee is another
  brain or knee; a sagittal flip swaps anterior and posterior, which no patient shows). The
  left-right axis is the image's row axis (dim -2, the phase-encode axis E1): the project's
  writers encode brain slices with ``phase_dir`` along the patient's x (LPS right -> left;
  ``io/ismrmrd_writer.py``, ``synth/geometry.py``) and fastMRI brain and knee scans are
  phase-encoded left-right (their ``(RO, PE)`` k-space is transposed to ``(E1, RO)`` on
  reading). Rows of an image run along ``phase_dir`` (``data/geometry.py``).
* **random_phase**: multiply by ``exp(i phi)``, ``phi ~ U[0, 2 pi)`` (the MVUE's global phase
  is arbitrary).
* **intensity_scale: [lo, hi]**: a smooth multiplicative field (receive-coil shading) that
  runs log-linearly from ``lo`` to ``hi`` along a random direction with a random strength,
  then renormalisation (99th percentile = 1 again). A spatially constant scale would be
  undone by the renormalisation, so the field is the part that remains.

Every draw comes from one ``torch.Generator`` per sample, always in the same order, so a
sample is the same whichever augmentations are on and whichever worker makes it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import ConfigError
from contextmri_core.physics.fft import fft2c, ifft2c
from contextmri_core.physics.mvue import NORM_PERCENTILE

FLIP_PLANES = ("axial", "coronal")
LR_AXIS = -2  # rows (E1, phase encode): left-right for axial and coronal brain/knee scans


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentations; all off by default (samples are the stored slices)."""

    random_phase: bool = False
    intensity_scale: Optional[Tuple[float, float]] = None
    flip_lr: bool = False
    flip_anatomies: Tuple[str, ...] = ("brain", "knee")
    resample_spacing_mm: Optional[Tuple[float, float]] = None

    def __post_init__(self) -> None:
        for name in ("intensity_scale", "resample_spacing_mm"):
            v = getattr(self, name)
            if v is None:
                continue
            if len(v) != 2 or not 0 < float(v[0]) <= float(v[1]):
                raise ConfigError(f"fit.augment.{name} must be [lo, hi] with 0 < lo <= hi, "
                                  f"got {list(v)}")
            object.__setattr__(self, name, (float(v[0]), float(v[1])))
        object.__setattr__(self, "flip_anatomies",
                           tuple(str(a).lower() for a in self.flip_anatomies))

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "AugmentConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d or {}) - names)
        if unknown:
            raise ConfigError(f"fit.augment: unknown keys {unknown}; valid: {sorted(names)}")
        return cls(**(d or {}))


def renormalise(x: torch.Tensor, q: float = NORM_PERCENTILE) -> torch.Tensor:
    """``x`` divided by the ``q``-quantile of ``|x|`` as ``physics.mvue.normalise`` computes
    it (unchanged when that is 0)."""
    mags = x.abs().flatten().numpy()
    pos = q * (mags.size - 1)  # torch.quantile's linear interpolation, in O(n)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    part = np.partition(mags, [lo, hi])
    scale = float(part[lo] + (pos - lo) * (part[hi] - part[lo]))
    return x / scale if scale > 0 else x


def resize_kspace(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resample complex ``x (H, W)`` onto ``shape`` by centred k-space crop / zero-pad, with the
    amplitude kept (orthonormal FFTs scale by sqrt(new / old) samples)."""
    h, w = x.shape[-2:]
    nh, nw = int(shape[0]), int(shape[1])
    k = fft2c(x)
    out = torch.zeros(x.shape[:-2] + (nh, nw), dtype=k.dtype)
    ch, cw = min(h, nh), min(w, nw)
    sy, sx = h // 2 - ch // 2, w // 2 - cw // 2  # source window (DC stays at n // 2)
    dy, dx = nh // 2 - ch // 2, nw // 2 - cw // 2
    out[..., dy:dy + ch, dx:dx + cw] = k[..., sy:sy + ch, sx:sx + cw]
    return ifft2c(out) * math.sqrt(nh * nw / (h * w))


def resample_spacing(x: torch.Tensor, spacing_mm: float, target_mm: float
                     ) -> Tuple[torch.Tensor, float]:
    """``x`` on a grid of about ``target_mm`` spacing; returns it and the achieved spacing (mm,
    mean of both axes)."""
    h, w = x.shape[-2:]
    nh = max(8, int(round(h * spacing_mm / target_mm)))
    nw = max(8, int(round(w * spacing_mm / target_mm)))
    if (nh, nw) == (h, w):
        return x, spacing_mm
    return resize_kspace(x, (nh, nw)), spacing_mm * (h / nh + w / nw) / 2


def fit_to_patch(x: torch.Tensor, patch: Sequence[int],
                 offsets: Optional[Tuple[float, float]] = None) -> torch.Tensor:
    """Crop ``x (H, W)`` to ``patch``, or zero-pad it around the centre where it is smaller.
    ``offsets`` (two numbers in [0, 1)) place a random crop; ``None`` crops centred."""
    out = x
    for axis, p in zip((-2, -1), patch):
        n = out.shape[axis]
        if n > p:
            start = n // 2 - p // 2 if offsets is None else int(offsets[axis + 2] * (n - p + 1))
            out = out.narrow(axis, start, p)
        elif n < p:
            before = p // 2 - n // 2
            pad = [0, 0, 0, 0]
            pad[0 if axis == -1 else 2], pad[1 if axis == -1 else 3] = before, p - n - before
            out = torch.nn.functional.pad(out, pad)
    return out.contiguous()


def flip_axis(meta: ScanMetadata, cfg: AugmentConfig) -> Optional[int]:
    """The image axis that runs left-right when flipping it is physical, else ``None``."""
    anatomy = (meta.anatomy or "").lower()
    if meta.slice_plane in FLIP_PLANES and anatomy in cfg.flip_anatomies:
        return LR_AXIS
    return None


def shading(shape: Sequence[int], lo: float, hi: float, direction: float, strength: float
            ) -> torch.Tensor:
    """Real positive field ``(H, W)``: log-linear ramp along ``direction`` (radians) spanning
    ``[lo, hi]`` at ``strength`` 1 and the constant ``sqrt(lo hi)`` at 0."""
    y = torch.linspace(-1, 1, int(shape[0]))[:, None]
    x = torch.linspace(-1, 1, int(shape[1]))[None, :]
    ramp = (math.cos(direction) * y + math.sin(direction) * x) / math.sqrt(2)
    log_field = math.log(lo) + (math.log(hi) - math.log(lo)) * (1 + strength * ramp) / 2
    return torch.exp(log_field)


def make_sample(x: torch.Tensor, meta: ScanMetadata, patch: Sequence[int],
                cfg: AugmentConfig, g: Optional[torch.Generator]
                ) -> Tuple[torch.Tensor, ScanMetadata]:
    """One slice -> ``(patch-sized complex64 image, its metadata)``. ``g`` = ``None``: validation
    (centred crop, no augmentation); else training with draws from ``g``."""
    if g is None:
        return fit_to_patch(x, patch), meta
    u = torch.rand(8, generator=g, dtype=torch.float64).tolist()  # fixed order, see module
    rescaled = False
    if cfg.resample_spacing_mm and meta.pixel_spacing_mm:
        lo, hi = cfg.resample_spacing_mm
        x, achieved = resample_spacing(x, meta.pixel_spacing_mm, lo + (hi - lo) * u[0])
        meta = dataclasses.replace(meta, pixel_spacing_mm=round(achieved, 6))
        rescaled = True
    if cfg.intensity_scale:
        lo, hi = cfg.intensity_scale
        x = x * shading(x.shape[-2:], lo, hi, 2 * math.pi * u[3], u[4])
        rescaled = True
    if rescaled:
        x = renormalise(x)
    x = fit_to_patch(x, patch, (u[5], u[6]))
    axis = flip_axis(meta, cfg) if cfg.flip_lr else None
    if axis is not None and u[1] < 0.5:  # after the crop: a random crop of the mirror image
        x = torch.flip(x, dims=(axis,))
    if cfg.random_phase:  # a global phase commutes with everything above
        x = x * torch.polar(torch.tensor(1.0), torch.tensor(2 * math.pi * u[2]))
    return x, meta
