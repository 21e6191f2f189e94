"""``ScanMetadata`` -> text prompt, exactly as ContextMRI builds it (one pure function).

fastMRI style (default; one line)::

    brain, Slice 5, FLAIR, Pathology: a, b, Sequence: TurboSpinEcho, TR: 9000, TE: 86,
    TI: 2500, Flip angle: 150

SKM-TEA ("demographic") style, sequence first::

    Qdess, Knee, Slice 46, Age: 48, Sex: F, Pathology: a, TR: 20.36, TE: 5.876, Flip Angle: 20

A missing field is left out with its label; all fields missing gives "" (the unconditional
prompt). Used by training and inference alike.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import List, Optional, Tuple

from contextmri_core.data.metadata import ScanMetadata

_INTEGER = Decimal(1)
_THREE_DECIMALS = Decimal("0.001")
_CONTEXT = Context(prec=64)
_ABSURD = 1e15  # enough digits that quantize never overflows for MR values


def _round_half_up(value: float, quantum: Decimal) -> Decimal:
    """``value`` rounded to ``quantum``, halves away from zero.

    Rounds the shortest decimal form of the float (``repr``), so 86.5 -> 87 and 2.675 -> 2.68,
    where built-in ``round`` gives 86 (banker's rounding) and 2.67 (binary representation).
    """
    return Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP, context=_CONTEXT)


def format_integer(value: float) -> str:
    """MR parameter as an integer string (fastMRI prompt): 85.5 -> "86", 9000.0 -> "9000"."""
    return str(int(_round_half_up(value, _INTEGER)))


def format_compact(value: float) -> str:
    """Up to 3 decimals, no trailing zeros (SKM-TEA prompt): 20.0 -> "20", 5.8760 -> "5.876"."""
    rounded = _round_half_up(value, _THREE_DECIMALS)
    if rounded == 0:
        return "0"  # also for -0.0004, never "-0"
    return f"{rounded:f}".rstrip("0").rstrip(".")


def _labelled(label: str, text: Optional[str]) -> List[str]:
    """``["label: text"]``, or ``[]`` if ``text`` is None."""
    return [] if text is None else [f"{label}: {text}"]


def _number(label: str, value: Optional[float], compact: bool) -> List[str]:
    """``["label: value"]`` formatted per prompt style; [] if missing, not finite or absurd
    (|value| >= 1e15: the header parser drops such values, this guards other callers)."""
    if value is None or not math.isfinite(value) or abs(value) >= _ABSURD:
        return []
    return _labelled(label, format_compact(value) if compact else format_integer(value))


def _plain(text: Optional[str]) -> List[str]:
    return [] if text is None or not str(text).strip() else [str(text).strip()]


def _slice(index: Optional[int]) -> List[str]:
    return [] if index is None else [f"Slice {int(index)}"]


def _pathology(findings: Tuple[str, ...]) -> List[str]:
    names = [f.strip() for f in findings if f and f.strip()]
    return _labelled("Pathology", ", ".join(names)) if names else []


def _fastmri_parts(meta: ScanMetadata) -> List[str]:
    """anatomy, Slice, contrast, Pathology, Sequence, TR, TE, TI, Flip angle (integers)."""
    return [
        *_plain(meta.anatomy),
        *_slice(meta.slice_index),
        *_plain(meta.contrast),
        *_pathology(meta.pathology),
        *_labelled("Sequence", meta.sequence),
        *_number("TR", meta.tr_ms, compact=False),
        *_number("TE", meta.te_ms, compact=False),
        *_number("TI", meta.ti_ms, compact=False),
        *_number("Flip angle", meta.flip_angle_deg, compact=False),
    ]


def _demographic_parts(meta: ScanMetadata) -> List[str]:
    """Sequence, Anatomy, Slice, Age, Sex, Pathology, TR, TE, Flip Angle (compact numbers).

    The SKM-TEA prompt has neither contrast nor TI; sequence and anatomy are capitalised
    with ``str.capitalize`` as in the published prompts ("qDESS" -> "Qdess").
    """
    return [
        *_plain(meta.sequence.capitalize() if meta.sequence else None),
        *_plain(meta.anatomy.capitalize() if meta.anatomy else None),
        *_slice(meta.slice_index),
        *_labelled("Age", None if meta.patient_age_y is None else str(int(meta.patient_age_y))),
        *_labelled("Sex", meta.patient_sex),
        *_pathology(meta.pathology),
        *_number("TR", meta.tr_ms, compact=True),
        *_number("TE", meta.te_ms, compact=True),
        *_number("Flip Angle", meta.flip_angle_deg, compact=True),
    ]


def build_prompt(meta: ScanMetadata, *, demographic: bool = False) -> str:
    """The text condition for one slice; "" when every field is missing.

    TR/TE/TI in ms and flip angle in degrees. fastMRI style prints them as integers rounded
    half away from zero; ``demographic=True`` gives the SKM-TEA style with up to 3 decimals.
    """
    parts = _demographic_parts(meta) if demographic else _fastmri_parts(meta)
    return ", ".join(parts)
