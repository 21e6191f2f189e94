"""ScanMetadata: what the scanner tells us about one scan (and slice), with units in the names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

#: The contrast vocabulary of ContextMRI prompts.
CONTRASTS: Tuple[str, ...] = ("T1", "T1PRE", "T1POST", "T2", "FLAIR", "PD", "PDFS")
#: Slice planes, from the slice normal (``data.geometry.slice_plane``).
PLANES: Tuple[str, ...] = ("axial", "coronal", "sagittal", "oblique")


@dataclass(frozen=True)
class ScanMetadata:
    """Metadata of one scan; per-slice fields (``slice_index``, ``pathology``) are set per slice.

    Missing values are ``None`` (never 0 or ""). TR/TE/TI/flip angle hold the first value of
    the ISMRMRD lists; the ``*_all`` tuples keep every value.
    """

    anatomy: Optional[str] = None  # lower case, e.g. "brain", "knee"
    contrast: Optional[str] = None  # one of CONTRASTS
    slice_index: Optional[int] = None
    sequence: Optional[str] = None  # e.g. "TurboSpinEcho", "GradientEcho"
    tr_ms: Optional[float] = None
    te_ms: Optional[float] = None
    ti_ms: Optional[float] = None
    flip_angle_deg: Optional[float] = None
    tr_all_ms: Tuple[float, ...] = ()
    te_all_ms: Tuple[float, ...] = ()
    ti_all_ms: Tuple[float, ...] = ()
    flip_angle_all_deg: Tuple[float, ...] = ()
    patient_age_y: Optional[int] = None
    patient_sex: Optional[str] = None  # "M", "F" or "O"
    field_strength_t: Optional[float] = None
    vendor: Optional[str] = None
    model: Optional[str] = None
    protocol_name: Optional[str] = None
    series_description: Optional[str] = None
    pathology: Tuple[str, ...] = ()  # per-slice findings, e.g. ("White Matter Lesion",)
    slice_plane: Optional[str] = None  # one of PLANES, from the slice normal
    pixel_spacing_mm: Optional[float] = None  # in-plane pixel size of the recon grid (mean of rows, cols)
    slice_thickness_mm: Optional[float] = None

    def __post_init__(self) -> None:
        if self.contrast is not None and self.contrast not in CONTRASTS:
            raise ValueError(f"contrast {self.contrast!r} is not one of {CONTRASTS}")
        if self.patient_sex is not None and self.patient_sex not in ("M", "F", "O"):
            raise ValueError(f"patient_sex {self.patient_sex!r} is not one of M, F, O")
        if self.slice_plane is not None and self.slice_plane not in PLANES:
            raise ValueError(f"slice_plane {self.slice_plane!r} is not one of {PLANES}")
        for name in ("pixel_spacing_mm", "slice_thickness_mm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} {value!r} must be > 0 mm or None")

    def for_slice(self, slice_index: int, pathology: Tuple[str, ...] = ()) -> "ScanMetadata":
        """The same scan's metadata for one slice."""
        return dataclasses.replace(self, slice_index=int(slice_index), pathology=tuple(pathology))

    def to_dict(self) -> dict:
        """JSON-ready dict keyed by the field names (tuples become lists)."""
        return {
            f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self)
            for v in (getattr(self, f.name),)
        }
