"""Vendor/protocol strings -> the prompt vocabulary: contrast and anatomy (pure functions).

Scanner headers name a series in free text ("AX FLAIR_FBB", "CORPDFS_FBK", "t1_mprage_sag");
these rules map such text onto the ContextMRI vocabulary. Unknown text maps to ``None``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import PurePath
from typing import Iterable, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

#: Anatomies the keyword rules can produce (lower case).
ANATOMIES: Tuple[str, ...] = ("brain", "knee", "prostate", "spine", "abdomen", "cardiac")

# --- contrast -------------------------------------------------------------------------------

# Orientation / dimensionality prefixes glued to the contrast token ("AXT1POST", "3DT1").
_GLUED_PREFIX = re.compile(
    r"\b(AXIAL|AX|CORONAL|COR|SAGITTAL|SAG|TRANSVERSAL|TRANS|TRA|OBL|[23]D)"
    r"(?=T1|T2|PD|FLAIR|MPRAGE)"
)
_T1 = re.compile(r"(?<![A-Z0-9])T1(?![0-9])|MP ?RAGE|SPGR|BRAVO")
_POST = re.compile(r"POST|\+ ?C\b|\+ ?GD|\bC\+|\bGAD|\bGD\b|GADO|CONTRAST|\bCE\b")
_PRE = re.compile(r"(?<![A-Z])PRE(?!P|SAT)|NATIVE")
_FLAIR = re.compile(r"FLAIR|DARK ?FLUID")
_T2 = re.compile(r"(?<![A-Z0-9])T2(?![0-9*]| ?STAR)")
_PD = re.compile(r"(?<![A-Z0-9])PDW?(?=FS|FAT|SPAIR|SPIR|[^A-Z]|$)|PROTON ?DENSITY")
# Fat suppression; "FS" must not be the start of "FSE" (fast spin echo).
_FATSAT = re.compile(r"FS(?![A-Z])|FAT ?SAT|FAT ?SUP|SPAIR|SPIR(?![A-Z])")


def _normalise(text: str) -> str:
    """Upper case, separators -> single spaces, glued orientation prefixes split off."""
    text = re.sub(r"[^A-Z0-9+*]+", " ", text.upper()).strip()
    return _GLUED_PREFIX.sub(r"\1 ", text)


def _contrast_of(text: str) -> Optional[str]:
    """Contrast of one normalised string, or None.

    Precedence: T1 family (T1PRE, then T1POST, then T1; "T1 FLAIR" is T1-weighted and
    "T1 PRE CONTRAST" is T1PRE), FLAIR (so "T2 FLAIR" is FLAIR), T2 (not T2*), PDFS before PD.
    """
    if _T1.search(text):
        if _PRE.search(text):
            return "T1PRE"
        if _POST.search(text):
            return "T1POST"
        return "T1"
    if _FLAIR.search(text):
        return "FLAIR"
    if _T2.search(text):
        return "T2"
    if _PD.search(text):
        return "PDFS" if _FATSAT.search(text) else "PD"
    return None


# Plane words in protocol names ("AX FLAIR", "CORPD_FBK", "t1_mprage_sag"); 3D/oblique say none.
_PLANE_WORDS = (("axial", re.compile(r"\b(AXIAL|AX|TRANSVERSAL|TRANS|TRA)\b")),
                ("coronal", re.compile(r"\b(CORONAL|COR)\b")),
                ("sagittal", re.compile(r"\b(SAGITTAL|SAG)\b")))
_GLUED_PLANE = re.compile(r"\b(AXIAL|AX|CORONAL|COR|SAGITTAL|SAG|TRA)(?=T1|T2|PD|FLAIR|MPRAGE|DWI|SWI)")


def map_plane(*texts: Optional[str]) -> Optional[str]:
    """The slice plane a protocol name states ("AXFLAIR" -> "axial", "CORPDFS_FBK" ->
    "coronal", "t1_sag" -> "sagittal"); the first text naming exactly one plane wins, else None.
    A fallback for files without acquisition geometry (fastMRI); the slice normal wins."""
    for text in texts:
        if not text or not text.strip():
            continue
        norm = _GLUED_PLANE.sub(r"\1 ", re.sub(r"[^A-Z0-9]+", " ", text.upper()).strip())
        found = {plane for plane, rule in _PLANE_WORDS if rule.search(norm)}
        if len(found) == 1:
            return found.pop()
    return None


def map_contrast(*texts: Optional[str]) -> Optional[str]:
    """Map vendor/protocol strings to one of ``metadata.CONTRASTS``; the first text that maps wins.

    ``None``/empty texts are skipped; returns None if no text maps.
    """
    for text in texts:
        if not text or not text.strip():
            continue
        contrast = _contrast_of(_normalise(text))
        if contrast is not None:
            return contrast
        logger.debug("no contrast rule matches %r", text)
    return None


# --- anatomy --------------------------------------------------------------------------------

# fastMRI protocol names end in _FBB (brain: "AX FLAIR_FBB") or _FBK (knee: "CORPDFS_FBK");
# knee files carry no anatomy in their names, so this suffix is what says "knee".
_DESCRIPTION_RULES: Tuple[Tuple[str, re.Pattern[str]], ...] = (
    ("brain", re.compile(r"BRAIN|(?<![A-Z])HEAD|NEURO|CEREBR|CRANI|(?<![A-Z])FBB(?![A-Z])")),
    ("knee", re.compile(r"KNEE|KNIE|(?<![A-Z])FBK(?![A-Z])")),
    ("prostate", re.compile(r"PROSTAT")),
    ("spine", re.compile(r"SPINE|LUMBAR")),
    ("abdomen", re.compile(r"ABDOM|(?<![A-Z])ABD(?![A-Z])|LIVER|PANCREA")),
    ("cardiac", re.compile(r"CARDI|HEART|(?<![A-Z])CMR(?![A-Z])")),
)
# Coils: only arrays that imply the body part. Spine/body arrays serve many exams: ignored.
_COIL_RULES: Tuple[Tuple[str, re.Pattern[str]], ...] = (
    ("brain", re.compile(r"(?<![A-Z])HEAD|BRAIN|NEURO")),
    ("knee", re.compile(r"KNEE")),
    ("prostate", re.compile(r"PROSTAT|ENDORECTAL")),
    ("cardiac", re.compile(r"CARDIAC|HEART")),
)
_FASTMRI_NAME = re.compile(r"(?:^|[^A-Za-z0-9])file_([a-z]+)_([A-Za-z0-9]+)_", re.IGNORECASE)


def _match_rules(text: str, rules: Sequence[Tuple[str, re.Pattern[str]]]) -> Optional[str]:
    upper = text.upper()
    for anatomy, pattern in rules:
        if pattern.search(upper):
            return anatomy
    return None


def fastmri_name_parts(filename: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(anatomy, acquisition) from a fastMRI name such as ``file_brain_AXFLAIR_200_6002462.h5``.

    Anatomy is lower case and only one of ``ANATOMIES``; (None, None) for other names.
    """
    if not filename:
        return None, None
    match = _FASTMRI_NAME.search(PurePath(str(filename)).name)
    if match is None:
        return None, None
    anatomy = match.group(1).lower()
    return (anatomy if anatomy in ANATOMIES else None), match.group(2)


def _anatomy_from_coils(coil_names: Iterable[str]) -> Optional[str]:
    """Majority vote of the coil names that imply a body part (ties: first seen)."""
    votes = [a for a in (_match_rules(n, _COIL_RULES) for n in coil_names if n) if a]
    if not votes:
        return None
    counts = Counter(votes)
    best = max(counts.values())
    return next(a for a in votes if counts[a] == best)


def derive_anatomy(
    override: Optional[str] = None,
    descriptions: Iterable[Optional[str]] = (),
    coil_names: Iterable[Optional[str]] = (),
    filename: Optional[str] = None,
) -> Optional[str]:
    """Lower-case anatomy from, in order: override, descriptions, coil names, fastMRI file name.

    ``descriptions`` are the study description, series description, protocol name and the
    fastMRI ``acquisition`` attribute (first that matches a keyword wins; fastMRI's ``_FBB`` /
    ``_FBK`` protocol suffixes mean brain / knee). Returns None if nothing matches.
    """
    if override is not None and override.strip():
        return override.strip().lower()
    for text in descriptions:
        anatomy = _match_rules(text, _DESCRIPTION_RULES) if text else None
        if anatomy is not None:
            return anatomy
    anatomy = _anatomy_from_coils(n for n in coil_names if n)
    if anatomy is not None:
        return anatomy
    return fastmri_name_parts(filename)[0]
