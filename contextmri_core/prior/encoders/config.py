"""Encoder settings (plain, YAML-safe, saved with a checkpoint): ``EncoderConfig`` names the
kind and holds ``StructuredEncoderConfig`` / ``ClipEncoderConfig``. The encoders and the factory
import this module; it imports no encoder (so ``encoder.config`` needs no late import)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from contextmri_core.data.metadata import CONTRASTS, PLANES
from contextmri_core.data.published import PROMPT_STYLES
from contextmri_core.data.vocab import ANATOMIES
from contextmri_core.errors import ConfigError, reject_unknown_keys

#: Where the slice is and how fine its grid: none of the papers' encoders has these.
GEOMETRY_FIELDS: Tuple[str, ...] = ("slice_plane", "pixel_spacing_mm", "slice_thickness_mm")
CATEGORICAL_FIELDS: Tuple[str, ...] = ("anatomy", "contrast", "sequence", "patient_sex",
                                       "slice_plane")
BAG_FIELDS: Tuple[str, ...] = ("pathology",)
NUMERIC_FIELDS: Tuple[str, ...] = ("tr_ms", "te_ms", "ti_ms", "flip_angle_deg", "slice_index",
                                   "patient_age_y", "field_strength_t", "pixel_spacing_mm",
                                   "slice_thickness_mm")
#: Token order: the fields of the first encoder, then the geometry fields (so a checkpoint
#: trained before they existed keeps its token positions).
ALL_FIELDS: Tuple[str, ...] = tuple(
    f for f in CATEGORICAL_FIELDS + BAG_FIELDS + NUMERIC_FIELDS if f not in GEOMETRY_FIELDS
) + GEOMETRY_FIELDS
#: The MR parameters, dropped together in training (ContextMRI).
MR_FIELDS: Tuple[str, ...] = ("tr_ms", "te_ms", "ti_ms", "flip_angle_deg")

SEXES: Tuple[str, ...] = ("M", "F", "O")
SEQUENCES: Tuple[str, ...] = ("TurboSpinEcho", "SpinEcho", "GradientEcho", "InversionRecovery",
                              "EchoPlanar", "qDESS")
#: fastMRI+ brain/knee findings; anything else falls into the "other" bucket.
PATHOLOGIES: Tuple[str, ...] = (
    "White Matter Lesion", "Nonspecific White Matter Lesion", "Nonspecific Lesion", "Mass",
    "Extra-axial Mass", "Edema", "Enlarged Ventricles", "Craniotomy", "Resection Cavity",
    "Posttreatment Change", "Lacunar Infarct", "Encephalomalacia", "Meniscus Tear",
    "Cartilage Defect", "Bone Marrow Edema", "Joint Effusion", "Ligament Tear",
)

FUSIONS = ("concat", "add")

_VOCAB_FIELDS = {"anatomy": "anatomies", "contrast": "contrasts", "sequence": "sequences",
                 "patient_sex": "sexes", "pathology": "pathologies", "slice_plane": "planes"}


def vocab_key(text: str) -> str:
    """Matching key of a vocabulary string: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass(frozen=True)
class StructuredEncoderConfig:
    """Widths, sinusoidal frequencies (cycles per unit of ``u``), fields in token order, the
    vocabularies (saved with the weights) and the training dropout rates."""

    dim: int = 128
    num_frequencies: int = 16
    min_frequency: float = 0.5
    max_frequency: float = 32.0
    hidden: int = 256
    fields: Tuple[str, ...] = ALL_FIELDS
    anatomies: Tuple[str, ...] = ANATOMIES
    contrasts: Tuple[str, ...] = CONTRASTS
    sequences: Tuple[str, ...] = SEQUENCES
    sexes: Tuple[str, ...] = SEXES
    pathologies: Tuple[str, ...] = PATHOLOGIES
    planes: Tuple[str, ...] = PLANES
    p_drop_all: float = 0.1
    p_drop_mr: float = 0.5
    p_drop_field: float = 0.1

    def __post_init__(self) -> None:
        for name in ("fields",) + tuple(_VOCAB_FIELDS.values()):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        for name in ("dim", "num_frequencies", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"encoder.structured.{name} must be a positive integer")
        if not 0 < self.min_frequency < self.max_frequency:
            raise ConfigError("encoder.structured: need 0 < min_frequency < max_frequency")
        unknown = [f for f in self.fields if f not in ALL_FIELDS]
        if unknown or not self.fields or len(set(self.fields)) != len(self.fields):
            raise ConfigError(f"encoder.structured.fields {list(self.fields)}: use distinct "
                              f"names from {list(ALL_FIELDS)}")
        for name in _VOCAB_FIELDS.values():
            keys = [vocab_key(v) for v in getattr(self, name)]
            if not keys or "" in keys or len(set(keys)) != len(keys):
                raise ConfigError(f"encoder.structured.{name}: give distinct, non-empty names")
        for name in ("p_drop_all", "p_drop_mr", "p_drop_field"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"encoder.structured.{name} must lie in [0, 1]")

    def vocabulary(self, field: str) -> Tuple[str, ...]:
        """The vocabulary of a categorical or bag field."""
        return getattr(self, _VOCAB_FIELDS[field])

    def to_dict(self) -> dict:
        """Plain YAML-safe types (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "StructuredEncoderConfig":
        reject_unknown_keys(cls, d, "encoder.structured")
        return cls(**d)


@dataclass(frozen=True)
class ClipEncoderConfig:
    """``path``: directory with ``text_encoder/`` and ``tokenizer/`` (relative paths are
    resolved against the checkpoint directory); ``max_length`` tokens, padded;
    ``demographic``: SKM-TEA prompt form; ``prompt_style``: "contextmri" (``build_prompt``) or
    "published" (the published release's CSV vocabulary, ``data.published``)."""

    path: str
    max_length: int = 77
    demographic: bool = False
    prompt_style: str = "contextmri"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        if not self.path:
            raise ConfigError("encoder.clip.path is empty: give the directory that holds "
                              "text_encoder/ and tokenizer/")
        if int(self.max_length) < 2:
            raise ConfigError("encoder.clip.max_length must be >= 2 (CLIP uses 77)")
        if self.prompt_style not in PROMPT_STYLES:
            raise ConfigError(f"encoder.clip.prompt_style {self.prompt_style!r}: use one of "
                              f"{list(PROMPT_STYLES)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipEncoderConfig":
        reject_unknown_keys(cls, d, "encoder.clip")
        if "path" not in d:
            raise ConfigError("encoder.clip.path is missing: give the directory that holds "
                              "text_encoder/ and tokenizer/")
        return cls(**d)


KINDS = ("structured", "clip", "fused")


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder: ``kind`` in ``KINDS``; ``structured`` (defaults filled in for
    "structured"/"fused"), ``clip`` (required for "clip"/"fused"), ``fusion`` for "fused"."""

    kind: str = "structured"
    structured: Optional[StructuredEncoderConfig] = None
    clip: Optional[ClipEncoderConfig] = None
    fusion: str = "concat"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"encoder.kind {self.kind!r}: use one of {list(KINDS)}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"encoder.fusion {self.fusion!r}: use one of {list(FUSIONS)}")
        if self.kind in ("clip", "fused") and self.clip is None:
            raise ConfigError(f"encoder.clip is missing: kind {self.kind!r} needs clip.path, a "
                              "directory with text_encoder/ and tokenizer/")
        if self.kind in ("structured", "fused") and self.structured is None:
            object.__setattr__(self, "structured", StructuredEncoderConfig())

    def to_dict(self) -> dict:
        """Plain types only (``yaml.safe_dump``-able)."""
        return {
            "kind": self.kind,
            "structured": None if self.structured is None else self.structured.to_dict(),
            "clip": None if self.clip is None else self.clip.to_dict(),
            "fusion": self.fusion,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        """Inverse of ``to_dict``; missing keys take their defaults."""
        reject_unknown_keys(cls, d, "encoder")
        structured, clip = d.get("structured"), d.get("clip")
        return cls(
            kind=d.get("kind", "structured"),
            structured=None if structured is None else StructuredEncoderConfig.from_dict(structured),
            clip=None if clip is None else ClipEncoderConfig.from_dict(clip),
            fusion=d.get("fusion", "concat"),
        )
