"""Bad data never passes as success: every reconstructed slice is checked, and a slice whose
image is non-finite or all zero is replaced by the classical fallback, labelled with why.

``MadeImages`` is one batch's per-slice result (image, method, error); a slice that is still
unusable after the fallback is kept (zeros where not finite) with ``usable`` False, so the
caller can report the scan as failed while it still delivers every slice it has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import numpy as np

from contextmri_core.errors import ContextMRIError
from contextmri_core.recon.base import ReconResult, Reconstructor

log = logging.getLogger(__name__)


@dataclass
class MadeImages:
    """Per slice of one batch: ``images (B, ny, nx)`` complex64, ``uncertainty`` or None."""

    images: np.ndarray
    uncertainty: Optional[np.ndarray]
    methods: List[str]
    errors: List[Optional[str]]
    usable: List[bool]
    info: dict = field(default_factory=dict)


def problem_of(image: np.ndarray) -> Optional[str]:
    """Why a slice image cannot be delivered as a reconstruction (None when it can)."""
    image = np.asarray(image)
    if not np.isfinite(image).all():
        return f"{int((~np.isfinite(image)).sum())} non-finite pixels"
    if not np.any(image):
        return "an all-zero image"
    return None


def _arrays(result: ReconResult):
    images = result.image.detach().cpu().numpy().astype(np.complex64)
    unc = None if result.uncertainty is None else result.uncertainty.detach().cpu().numpy()
    return images, unc


def _seal(made: MadeImages) -> MadeImages:
    """Mark slices that are still unusable; zero their non-finite pixels (so they can be
    written) and say so in their error."""
    for i, image in enumerate(made.images):
        problem = problem_of(image)
        if problem is None:
            continue
        made.usable[i] = False
        made.images[i] = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
        made.errors[i] = (made.errors[i] + "; " if made.errors[i] else "") + \
            f"the {made.methods[i]} image has {problem} too: no usable image for this slice"
        log.error("slice %d: %s", i, made.errors[i])
    return made


def fallback_images(result: ReconResult, reason: str) -> MadeImages:
    """Every slice of ``result`` stands in for a failed primary reconstruction (``reason``)."""
    images, _ = _arrays(result)
    n = images.shape[0]
    return _seal(MadeImages(images, None, [result.method] * n, [reason] * n, [True] * n,
                            dict(result.info or {})))


def checked_images(result: ReconResult, backup: Optional[Reconstructor], args: Sequence[Any],
                   slice_ids: Sequence[Any]) -> MadeImages:
    """``result`` with each non-finite or all-zero slice replaced by ``backup``'s image
    (labelled); ``ContextMRIError`` when there is no fallback to replace it with."""
    images, unc = _arrays(result)
    n = images.shape[0]
    made = MadeImages(images, unc, [result.method] * n, [None] * n, [True] * n,
                      dict(result.info or {}))
    bad = {i: p for i in range(n) for p in [problem_of(images[i])] if p is not None}
    if not bad:
        return made
    why = "; ".join(f"slice {slice_ids[i]}: {p}" for i, p in bad.items())
    if backup is None:
        raise ContextMRIError(f"the {result.method} reconstruction gave {why} and no fallback "
                              f"is configured")
    log.warning("the %s reconstruction gave %s; those slices fall back to %s", result.method,
                why, backup.name)
    spare, _ = _arrays(backup(*args))
    for i, problem in bad.items():
        made.images[i] = spare[i]
        made.methods[i] = backup.name
        made.errors[i] = f"{result.method} output has {problem}"
    return _seal(made)
