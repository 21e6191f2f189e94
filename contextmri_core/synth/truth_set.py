"""Training targets straight from the simulator: noise-free truth images, no k-space.

For the prior only the ground-truth complex image is needed (with coil-array shading, bias
field and background phase, exactly as ``scan`` makes its truth), so this path skips coil
maps, k-space, noise and ESPIRiT. Each subject is drawn as ``contextmri simulate`` draws it
(``SeedSequence([seed, i])``); its slices are split into scans ("groups") of at most
``slices_per_scan`` slices, each with its own plane, tilt, grid, slice thickness, coil count,
field strength and protocol or domain-randomised intensities (``SeedSequence([seed, i,
1000 + g])``). A group's slices are picked at random from a whole-brain stack and keep their
place in it as slice index. Images stay on their native grid (``matrix``^2 at the drawn
spacing) and are divided by the 99th percentile of ``|x|``, as ``recon.prepare.mvue_targets``
normalises real scans.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt
from contextmri_core.errors import check_fields
from contextmri_core.physics.mvue import normalise
from contextmri_core.synth.anatomy import LESION_LABEL, lesion_mask
from contextmri_core.synth.orientation import PLANE_PREFIX
from contextmri_core.synth.protocols import (
    BRAIN_PROTOCOLS, draw_protocol, in_plane, synthetic_protocol,
)
from contextmri_core.synth.scan import (
    SimConfig, draw_config_subject, scan_geometry, scan_metadata,
)
from contextmri_core.synth.subject import Subject
from contextmri_core.synth.truth import draw_scan_fields, slice_truth
from contextmri_core.synth.variety import ScanRanges, draw_scan_config, draws_domain_random

#: Offset of the group keys in the seed sequence (subject draws use ``[seed, i]``).
GROUP_KEY = 1000


@dataclass(frozen=True)
class TruthSetConfig:
    """What a synthetic training set holds. ``base`` gives lesion probability, slice gap and
    the anatomy strengths; ``ranges`` the per-scan geometry; ``contrasts`` the protocols drawn
    (uniformly) for non-randomised scans; ``coil_counts`` / ``field_strengths_t`` are drawn
    per scan too."""

    ranges: ScanRanges = ScanRanges()
    base: SimConfig = SimConfig()
    slices_per_subject: int = 12
    slices_per_scan: int = 4
    contrasts: Tuple[str, ...] = tuple(BRAIN_PROTOCOLS)
    coil_counts: Tuple[int, ...] = (8, 12, 16, 20, 32)
    field_strengths_t: Tuple[float, ...] = (1.5, 3.0)

    def __post_init__(self) -> None:
        checks = (("slices_per_subject", self.slices_per_subject >= 1, "use >= 1"),
                  ("slices_per_scan", self.slices_per_scan >= 1, "use >= 1"),
                  ("contrasts", bool(self.contrasts)
                   and all(c in BRAIN_PROTOCOLS for c in self.contrasts),
                   f"use names of {', '.join(BRAIN_PROTOCOLS)}"),
                  ("coil_counts", bool(self.coil_counts)
                   and all(1 <= c <= 64 for c in self.coil_counts), "use 1..64 coils"),
                  ("field_strengths_t", bool(self.field_strengths_t), "give at least one"))
        check_fields(self, checks)

    @property
    def groups_per_subject(self) -> int:
        return math.ceil(self.slices_per_subject / self.slices_per_scan)

    def group_size(self, group: int) -> int:
        """Slices of group ``group`` (the last one takes the remainder)."""
        return min(self.slices_per_scan, self.slices_per_subject - group * self.slices_per_scan)


@dataclass(frozen=True)
class TruthGroup:
    """One group's normalised targets ``x (S, n, n)`` complex64, ``scale (S,)``, per-slice
    metadata and prompts, and what was drawn for it (``info``, JSON-ready)."""

    x: torch.Tensor
    scale: torch.Tensor
    metadata: Tuple[ScanMetadata, ...]
    prompts: Tuple[str, ...]
    slices: Tuple[int, ...]
    info: dict


def subject_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def draw_truth_subject(seed: int, index: int, cfg: TruthSetConfig) -> Subject:
    """Subject ``index`` of ``seed`` (as ``contextmri simulate`` draws it)."""
    return draw_config_subject(subject_rng(seed, index), cfg.base, index)


def _group_protocol(cfg: TruthSetConfig, r_kind, r_proto, field_strength_t: float):
    synth = draws_domain_random(r_kind, cfg.ranges)
    name = cfg.contrasts[int(r_proto.integers(len(cfg.contrasts)))]
    return synthetic_protocol() if synth else draw_protocol(name, r_proto, field_strength_t)


def render_group(seed: int, index: int, subject: Subject, group: int, cfg: TruthSetConfig
                 ) -> TruthGroup:
    """Draw and render group ``group`` of subject ``index`` (``subject``, from
    ``draw_truth_subject``): see the module docstring."""
    r_geom, r_kind, r_proto, r_scan = np.random.default_rng(
        np.random.SeedSequence([seed, index, GROUP_KEY + group])).spawn(4)
    coils = int(cfg.coil_counts[int(r_scan.integers(len(cfg.coil_counts)))])
    b0 = float(cfg.field_strengths_t[int(r_scan.integers(len(cfg.field_strengths_t)))])
    base = dataclasses.replace(cfg.base, num_slices=cfg.group_size(group), num_coils=coils,
                               field_strength_t=b0)
    config = draw_scan_config(r_geom, cfg.ranges, base)
    geom = scan_geometry(config, subject, r_geom, layout="spread")
    protocol = in_plane(_group_protocol(cfg, r_kind, r_proto, b0), PLANE_PREFIX[geom.plane])
    r_tissue, r_coils, r_fields = r_scan.spawn(3)
    fields = draw_scan_fields(protocol, coils, b0, r_tissue, r_coils, r_fields)
    truths = [slice_truth(subject, geom, k, fields, r_fields, with_maps=False)
              for k in range(geom.num_slices)]
    x, scale = normalise(torch.from_numpy(np.stack([t.image for t in truths])))
    meta = scan_metadata(protocol, subject, b0, geom)
    metas = tuple(meta.for_slice(i, (LESION_LABEL,) if lesion_mask(t.fractions).any() else ())
                  for i, t in zip(geom.slice_indices, truths))
    info = {"plane": geom.plane, "slice_plane": geom.plane_label, "tilt_deg": geom.tilt_deg,
            "matrix": geom.matrix, "pixel_spacing_mm": geom.pixel_spacing_mm,
            "slice_thickness_mm": geom.slice_thickness_mm, "protocol": protocol.name,
            "domain_randomised": protocol.domain_randomised, "coils": coils,
            "field_strength_t": b0, "slices": len(metas)}
    return TruthGroup(x.to(torch.complex64), scale, metas,
                      tuple(build_prompt(m) for m in metas), geom.slice_indices, info)


def shard_name(seed: int, index: int, group: int) -> str:
    """File name of a group's shard: ``s<seed>_sim<index>_g<group>.safetensors``."""
    return f"s{seed}_sim{index:05d}_g{group:02d}.safetensors"


def source_name(seed: int, index: int, group: int) -> str:
    """Provenance string stored in the shard (no file exists for it)."""
    return f"synthetic/seed{seed}/sim{index:05d}/g{group:02d}"


def group_ids(cfg: TruthSetConfig) -> List[int]:
    return list(range(cfg.groups_per_subject))
