"""The published ContextMRI release on the data side: its prompt vocabulary and which of its
UNets a scan belongs to (pure functions).

The release (github DoHunLee1/ContextMRI, weights DHCAI/ContextMRI) trained its ``fastmri``
UNet on prompts built from CSV rows such as::

    brain, Slice 8, T1, Sequence: TurboSpinEcho, TR: 446, TE: 9, TI: 100, Flip angle: 140
    brain, Slice 3, T1 post-contrast, Pathology: 3 Craniotomy, 1 Posttreatment change, ...

and its ``skm-tea`` UNet (qDESS knees) on::

    Qdess, Knee, Slice 46, Age: 48, Sex: F, TR: 20.36, TE: 6.428, Flip Angle: 20

Its contrast strings are ``T1``, ``T1 pre-contrast``, ``T1 post-contrast``, ``T2``, ``FLAIR``,
``PD`` and ``PDFS``; pathology is a count per finding in order of first appearance; the MR
parameters are integers in the fastMRI CSVs and up to three decimals in the SKM-TEA CSV. Training
dropped the whole MR-parameter block at once (never single fields), so a block with a missing
value is left out whole. Nothing else (geometry, field strength, vendor) is in these prompts.
"""

from __future__ import annotations

import logging
import re
from typing import Dict, List, Optional, Sequence

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt, format_compact, format_integer

log = logging.getLogger(__name__)

#: Our contrast vocabulary -> the published CSVs' strings.
CONTRAST_TEXT: Dict[str, str] = {
    "T1": "T1", "T1PRE": "T1 pre-contrast", "T1POST": "T1 post-contrast", "T2": "T2",
    "FLAIR": "FLAIR", "PD": "PD", "PDFS": "PDFS",
}
FASTMRI_UNET = "fastmri"
SKM_TEA_UNET = "skm-tea"
PROMPT_STYLES = ("contextmri", "published")
_QDESS = re.compile(r"DESS", re.IGNORECASE)


def pathology_counts(findings: Sequence[str]) -> Optional[str]:
    """``"3 Craniotomy, 1 Posttreatment change"``: each finding once, with its count, in order
    of first appearance; None when there is none."""
    counts: Dict[str, int] = {}
    for name in (f.strip() for f in findings if f and f.strip()):
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} {name}" for name, n in counts.items()) or None


def _block(pairs: Sequence[tuple]) -> List[str]:
    """``["label: text", ...]`` when every text is known, else [] (dropped whole, as in
    training)."""
    if any(text is None for _, text in pairs):
        return []
    return [f"{label}: {text}" for label, text in pairs]


def _int(value: Optional[float]) -> Optional[str]:
    return None if value is None else format_integer(value)


def _fastmri(meta: ScanMetadata) -> List[str]:
    where = None if meta.slice_index is None else f"Slice {meta.slice_index}"
    head = [t for t in (meta.anatomy, where, CONTRAST_TEXT.get(meta.contrast or "")) if t]
    path = pathology_counts(meta.pathology)
    mr = _block((("Sequence", meta.sequence), ("TR", _int(meta.tr_ms)), ("TE", _int(meta.te_ms)),
                 ("TI", _int(meta.ti_ms)), ("Flip angle", _int(meta.flip_angle_deg))))
    return head + ([f"Pathology: {path}"] if path else []) + mr


def _compact(value: Optional[float]) -> Optional[str]:
    return None if value is None else format_compact(value)


def _skm_tea(meta: ScanMetadata) -> List[str]:
    head = ["Qdess", "Knee"] + ([] if meta.slice_index is None else [f"Slice {meta.slice_index}"])
    if meta.patient_age_y is not None:
        head.append(f"Age: {int(meta.patient_age_y)}")
    if meta.patient_sex is not None:
        head.append(f"Sex: {meta.patient_sex}")
    path = pathology_counts(meta.pathology)
    mr = _block((("TR", _compact(meta.tr_ms)), ("TE", _compact(meta.te_ms)),
                 ("Flip Angle", _compact(meta.flip_angle_deg))))
    return head + ([f"Pathology: {path}"] if path else []) + mr


def published_prompt(meta: ScanMetadata, unet: str = FASTMRI_UNET) -> str:
    """The prompt the published UNet ``unet`` was trained on for a slice with ``meta``."""
    parts = _skm_tea(meta) if unet == SKM_TEA_UNET else _fastmri(meta)
    return ", ".join(parts)


def text_prompt(meta: ScanMetadata, style: str = "contextmri", demographic: bool = False) -> str:
    """One prompt function for every CLIP encoder: ours (``build_prompt``) or the published
    vocabulary (``demographic``: the SKM-TEA form)."""
    if style == "published":
        return published_prompt(meta, SKM_TEA_UNET if demographic else FASTMRI_UNET)
    return build_prompt(meta, demographic=demographic)


def is_qdess(meta: Optional[ScanMetadata]) -> bool:
    """True when the sequence, protocol or series names a (q)DESS scan (SKM-TEA's data)."""
    if meta is None:
        return False
    return any(t and _QDESS.search(t) for t in (meta.sequence, meta.protocol_name,
                                                 meta.series_description))


def choose_unet(meta: Optional[ScanMetadata], available: Sequence[str]) -> str:
    """The published UNet for a scan: ``skm-tea`` for qDESS, else ``fastmri`` (brain and knee
    TSE); the first available when the wanted one is missing (logged)."""
    if not available:
        raise ValueError("no UNet to choose from")
    want = SKM_TEA_UNET if is_qdess(meta) else FASTMRI_UNET
    if want in available:
        return want
    got = FASTMRI_UNET if FASTMRI_UNET in available else available[0]
    log.warning("this scan wants the %r UNet, which the checkpoint lacks; using %r", want, got)
    return got
