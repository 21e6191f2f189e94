"""Structured metadata encoder ("Metadata Matters" §3.4): one token per field + SEP, LayerNorm.

Each field of ``ScanMetadata`` becomes one ``dim``-wide token::

    token_f = (value embedding of f  if f is known and not dropped  else  missing_f) + type_f
    tokens  = LayerNorm([SEP, token_1, ..., token_F])          # (B, 1 + F, dim)

Categorical fields (anatomy, contrast, sequence, patient_sex, slice_plane) look up an embedding table with
one extra "unknown value" row for strings outside the vocabulary (matched case- and
punctuation-insensitively). Pathology is a multi-label bag over a fixed label vocabulary plus
an "other" bucket: the mean of the labels' embeddings. Numeric fields are scaled to about
[0, 1] (``NUMERIC_SCALES``), expanded into sinusoidal features over geometric frequencies
(like diffusion timestep embeddings) and passed through a per-field MLP:

=================  =======================================  ==================================
field              scaling ``u``                            why
=================  =======================================  ==================================
tr_ms              ln(1 + TR/1 ms) / ln(1 + 20000)          log: 500 vs 5000 ms differ by 0.23
te_ms              ln(1 + TE/1 ms) / ln(1 + 500)            log: 2 vs 4 ms differ by 0.08,
                                                            86 vs 87 ms by 0.002
ti_ms              ln(1 + TI/1 ms) / ln(1 + 5000)           log; TI 0 (no inversion) is u = 0
flip_angle_deg     FA / 180                                 linear, degrees
slice_index        index / 128                              linear, slice number
patient_age_y      age / 100                                linear, years
field_strength_t   B0 / 10                                  linear, tesla (1.5 vs 3 T: 0.15)
pixel_spacing_mm   spacing / 4 mm                           linear: 0.8 vs 1.0 mm differ by 0.05
slice_thickness_mm thickness / 10 mm                        linear: 1 vs 5 mm differ by 0.4
=================  =======================================  ==================================

The geometry fields (slice plane, in-plane pixel spacing, slice thickness) come last in the
token order, so a checkpoint trained before they existed keeps its token positions
(``adopt_from`` copies its tables and rows by field name).

A missing value (None, not finite, negative, blank string, empty pathology tuple) uses the
field's learned "missing" embedding. ``metadata_to_inputs`` (pure, no parameters) turns the
metadata into tensors; the module only embeds them. The settings (``StructuredEncoderConfig``,
the field and vocabulary tuples) live in ``config``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.prior.encoders.base import ConditionEncoder
from contextmri_core.prior.encoders.config import (ALL_FIELDS, BAG_FIELDS, CATEGORICAL_FIELDS,
                                                   GEOMETRY_FIELDS, MR_FIELDS, NUMERIC_FIELDS,
                                                   EncoderConfig, StructuredEncoderConfig,
                                                   vocab_key)


@dataclass(frozen=True)
class NumericScale:
    """``u = ln(1 + x) / ln(1 + max_value)`` if ``log`` else ``u = x / max_value``."""

    log: bool
    max_value: float

    def __call__(self, value: float) -> float:
        if self.log:
            return math.log1p(value) / math.log1p(self.max_value)
        return value / self.max_value


NUMERIC_SCALES: Dict[str, NumericScale] = {
    "tr_ms": NumericScale(True, 20000.0), "te_ms": NumericScale(True, 500.0),
    "ti_ms": NumericScale(True, 5000.0), "flip_angle_deg": NumericScale(False, 180.0),
    "slice_index": NumericScale(False, 128.0), "patient_age_y": NumericScale(False, 100.0),
    "field_strength_t": NumericScale(False, 10.0),
    "pixel_spacing_mm": NumericScale(False, 4.0), "slice_thickness_mm": NumericScale(False, 10.0),
}

# --- metadata -> tensors (pure) -------------------------------------------------------------

def _category(value: Optional[str], vocab: Tuple[str, ...]) -> Tuple[int, bool]:
    """(index, present); the index ``len(vocab)`` is the "unknown value" row."""
    if value is None or not str(value).strip():
        return 0, False
    keys = [vocab_key(v) for v in vocab]
    key = vocab_key(str(value))
    return (keys.index(key) if key in keys else len(vocab)), True


def _bag(findings: Tuple[str, ...], vocab: Tuple[str, ...]) -> Tuple[List[float], bool]:
    """(multi-hot over vocab + "other", present)."""
    hot = [0.0] * (len(vocab) + 1)
    keys = [vocab_key(v) for v in vocab]
    for finding in findings:
        if finding and finding.strip():
            key = vocab_key(finding)
            hot[keys.index(key) if key in keys else len(vocab)] = 1.0
    return hot, any(hot)


def _number(value: Optional[float], scale: NumericScale) -> Tuple[float, bool]:
    """(scaled value u, present); None, NaN, inf and negative values are missing."""
    if value is None or not math.isfinite(float(value)) or float(value) < 0:
        return 0.0, False
    return scale(float(value)), True


def metadata_to_inputs(
    metadata: Sequence[Optional[ScanMetadata]],
    config: StructuredEncoderConfig = StructuredEncoderConfig(),
) -> Dict[str, torch.Tensor]:
    """Tensors for ``StructuredMetadataEncoder.encode_inputs`` (CPU, one row per element).

    Returns ``{field: (B,) int64}`` for categorical fields (unknown value = ``len(vocab)``),
    ``{"pathology": (B, P + 1) float32}`` multi-hot (last column: "other"),
    ``{field: (B,) float32}`` scaled numeric values ``u`` (0 where missing) and
    ``"present": (B, F) bool`` in ``config.fields`` order. ``None`` entries are all-missing.
    """
    empty = ScanMetadata()
    metas = [empty if m is None else m for m in metadata]
    out: Dict[str, torch.Tensor] = {}
    present: List[List[bool]] = []
    for field in config.fields:
        if field in CATEGORICAL_FIELDS:
            pairs = [_category(getattr(m, field), config.vocabulary(field)) for m in metas]
            out[field] = torch.tensor([p[0] for p in pairs], dtype=torch.int64)
        elif field in BAG_FIELDS:
            pairs = [_bag(tuple(getattr(m, field)), config.vocabulary(field)) for m in metas]
            out[field] = torch.tensor([p[0] for p in pairs], dtype=torch.float32).reshape(
                len(metas), len(config.vocabulary(field)) + 1)
        else:
            pairs = [_number(getattr(m, field), NUMERIC_SCALES[field]) for m in metas]
            out[field] = torch.tensor([p[0] for p in pairs], dtype=torch.float32)
        present.append([p[1] for p in pairs])
    out["present"] = torch.tensor(present, dtype=torch.bool).reshape(len(config.fields),
                                                                     len(metas)).T.contiguous()
    return out


def sinusoidal_features(u: torch.Tensor, angular_frequencies: torch.Tensor) -> torch.Tensor:
    """``(B,)`` scaled values -> ``(B, 2K)`` features ``[sin(w_k u), cos(w_k u)]``."""
    angles = u[:, None].float() * angular_frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def field_dropout_mask(
    batch: int, p_all: float, p_mr: float, p_field: float, generator: torch.Generator,
    fields: Sequence[str] = ALL_FIELDS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Training dropout: ``drop (B,)`` whole condition with ``p_all``; ``drop_fields (B, F)``:
    the MR parameters (TR/TE/TI/FA) together with ``p_mr``, every field alone with ``p_field``.

    Draws, in this order, ``B``, ``B`` and ``B*F`` uniforms from ``generator`` (on its device).
    """
    device = generator.device
    u_all = torch.rand(batch, generator=generator, device=device)
    u_mr = torch.rand(batch, generator=generator, device=device)
    u_field = torch.rand(batch, len(fields), generator=generator, device=device)
    is_mr = torch.tensor([f in MR_FIELDS for f in fields], dtype=torch.bool, device=device)
    drop_fields = (u_field < p_field) | ((u_mr < p_mr)[:, None] & is_mr[None, :])
    return u_all < p_all, drop_fields


# --- the module ------------------------------------------------------------------------------

class StructuredMetadataEncoder(ConditionEncoder):
    """``metadata -> (B, 1 + F, dim)``: SEP token then one token per field, LayerNorm-ed."""

    def __init__(self, config: StructuredEncoderConfig = StructuredEncoderConfig()) -> None:
        super().__init__()
        self.structured_config = config
        self.dim = config.dim
        self.seq_len = len(config.fields) + 1
        fields, dim = config.fields, config.dim
        self.tables = nn.ModuleDict({
            f: nn.Embedding(len(config.vocabulary(f)) + 1, dim)
            for f in fields if f in CATEGORICAL_FIELDS + BAG_FIELDS})
        self.mlps = nn.ModuleDict({
            f: nn.Sequential(nn.Linear(2 * config.num_frequencies, config.hidden), nn.SiLU(),
                             nn.Linear(config.hidden, dim))
            for f in fields if f in NUMERIC_FIELDS})
        self.missing = nn.Parameter(torch.zeros(len(fields), dim))
        self.field_type = nn.Parameter(torch.zeros(len(fields), dim))
        self.sep = nn.Parameter(torch.zeros(dim))
        self.norm = nn.LayerNorm(dim)
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=0.02)
        for p in (self.missing, self.field_type, self.sep):
            nn.init.normal_(p, std=0.02)
        freqs = torch.logspace(math.log10(config.min_frequency), math.log10(config.max_frequency),
                               config.num_frequencies, dtype=torch.float64)
        self.register_buffer("angular_frequencies", (2 * math.pi * freqs).float(),
                             persistent=False)

    @property
    def config(self) -> EncoderConfig:
        """``EncoderConfig`` that rebuilds this encoder."""
        return EncoderConfig(kind="structured", structured=self.structured_config)

    def inputs(self, metadata: Sequence[Optional[ScanMetadata]]) -> Dict[str, torch.Tensor]:
        """``metadata_to_inputs`` moved to this module's device."""
        raw = metadata_to_inputs(metadata, self.structured_config)
        return {k: v.to(self.sep.device) for k, v in raw.items()}

    def value_embeddings(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, F, dim)`` embeddings of the values as given (missing ones are placeholders)."""
        dtype = self.sep.dtype
        tokens = []
        for field in self.structured_config.fields:
            x = inputs[field]
            if field in CATEGORICAL_FIELDS:
                tokens.append(self.tables[field](x))
            elif field in BAG_FIELDS:
                weights = x.to(dtype) / x.sum(dim=1, keepdim=True).clamp(min=1).to(dtype)
                tokens.append(weights @ self.tables[field].weight)
            else:
                feats = sinusoidal_features(x, self.angular_frequencies).to(dtype)
                tokens.append(self.mlps[field](feats))
        return torch.stack(tokens, dim=1)

    def field_tokens(self, inputs: Dict[str, torch.Tensor], drop: Optional[torch.Tensor] = None,
                     drop_fields: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, F, dim)`` per-field tokens before the SEP token and the LayerNorm.

        A field is "missing" where it is absent, ``drop_fields[b, f]`` or ``drop[b]``.
        """
        present = inputs["present"]
        if drop_fields is not None:
            present = present & ~drop_fields.to(present.device, torch.bool)
        if drop is not None:
            present = present & ~drop.to(present.device, torch.bool)[:, None]
        values = self.value_embeddings(inputs)
        chosen = torch.where(present[..., None], values, self.missing.expand_as(values))
        return chosen + self.field_type

    def encode_inputs(self, inputs: Dict[str, torch.Tensor], drop: Optional[torch.Tensor] = None,
                      drop_fields: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, 1 + F, dim)``: LayerNorm([SEP, field tokens])."""
        tokens = self.field_tokens(inputs, drop, drop_fields)
        sep = self.sep.expand(tokens.shape[0], 1, -1)
        return self.norm(torch.cat([sep, tokens], dim=1))

    def forward(self, metadata: Sequence[Optional[ScanMetadata]],
                drop: Optional[torch.Tensor] = None,
                drop_fields: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, 1 + F, dim)`` tokens; ``drop (B,)`` / ``drop_fields (B, F)`` bool masks."""
        return self.encode_inputs(self.inputs(metadata), drop, drop_fields)

    def unconditional(self, batch_size: int) -> torch.Tensor:
        """``(B, 1 + F, dim)``: every field missing."""
        return self.forward([None] * batch_size)

    @torch.no_grad()
    def adopt_from(self, other: "StructuredMetadataEncoder") -> Tuple[str, ...]:
        """Copy ``other``'s learned parameters field by field (warm start of an encoder that
        gained fields): tables and MLPs of fields both have (same shapes), their "missing" and
        type rows, SEP and LayerNorm. Returns the fields that kept their fresh initialisation."""
        theirs = other.structured_config.fields
        for i, field in enumerate(self.structured_config.fields):
            if field not in theirs:
                continue
            j = theirs.index(field)
            self.missing[i].copy_(other.missing[j])
            self.field_type[i].copy_(other.field_type[j])
            for mine, src in ((self.tables, other.tables), (self.mlps, other.mlps)):
                if field in mine and field in src and all(
                        a.shape == b.shape for a, b in zip(mine[field].state_dict().values(),
                                                           src[field].state_dict().values())):
                    mine[field].load_state_dict(src[field].state_dict())
        self.sep.copy_(other.sep)
        self.norm.load_state_dict(other.norm.state_dict())
        return tuple(f for f in self.structured_config.fields if f not in theirs)

    def dropout_mask(self, batch: int,
                     generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """``field_dropout_mask`` with this config's rates and fields."""
        c = self.structured_config
        return field_dropout_mask(batch, c.p_drop_all, c.p_drop_mr, c.p_drop_field, generator,
                                  c.fields)
