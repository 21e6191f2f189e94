"""Clinical brain protocols: parameter ranges, and one draw per simulated subject.

A ``ProtocolSpec`` holds the clinical range of each parameter; ``draw_protocol`` picks values
with an explicit generator (rounded as a scanner console shows them). FLAIR's TI is set to
null CSF at the chosen TR and field strength (+-1.5 %), as a technologist's protocol does.
``SYNTH`` is no protocol: domain-randomised tissue intensities (``domain_random``), with no
contrast, sequence or timing, so nothing false reaches the metadata. ``in_plane`` renames a
protocol for its slice plane (``AX T2`` -> ``COR T2``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

import numpy as np

from contextmri_core.errors import ConfigError
from contextmri_core.synth.tissue import flair_null_ti_ms, tissue_table

Range = Tuple[float, float]


@dataclass(frozen=True)
class Protocol:
    """One drawn protocol. ``name`` is the fastMRI acquisition (``AXFLAIR``), ``protocol_name``
    what the console writes (``AX FLAIR``); ``contrast`` is in the ContextMRI vocabulary."""

    name: str
    protocol_name: str
    contrast: Optional[str]
    sequence: Optional[str]  # "TurboSpinEcho", "SpinEcho", "GradientEcho"; None for SYNTH
    tr_ms: Optional[float]
    te_ms: Optional[float]
    flip_angle_deg: Optional[float]
    ti_ms: Optional[float] = None
    echo_train_length: int = 1
    contrast_agent: bool = False
    domain_randomised: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ProtocolSpec:
    """Clinical ranges (uniform draws) of one protocol; ``variants`` maps a sequence type to
    its (TR, TE, flip) ranges and echo-train length; one variant is drawn per subject."""

    name: str
    protocol_name: str
    contrast: str
    variants: Tuple[Tuple[str, Range, Range, Range, int], ...]
    inversion: bool = False
    contrast_agent: bool = False


_T1_SE = ("SpinEcho", (400.0, 650.0), (8.0, 15.0), (90.0, 90.0), 1)
_T1_TSE = ("TurboSpinEcho", (450.0, 700.0), (8.0, 12.0), (150.0, 180.0), 3)
_T1_GRE = ("GradientEcho", (200.0, 300.0), (2.5, 4.8), (65.0, 80.0), 1)

#: The default brain protocol set (axial 2D, as in fastMRI brain).
BRAIN_PROTOCOLS: Dict[str, ProtocolSpec] = {
    "AXT1": ProtocolSpec("AXT1", "AXT1", "T1", (_T1_SE, _T1_GRE)),
    "AXT1PRE": ProtocolSpec("AXT1PRE", "AXT1PRE", "T1PRE", (_T1_SE, _T1_TSE)),
    "AXT1POST": ProtocolSpec("AXT1POST", "AXT1POST", "T1POST", (_T1_SE, _T1_TSE),
                             contrast_agent=True),
    "AXT2": ProtocolSpec("AXT2", "AX T2", "T2",
                         (("TurboSpinEcho", (4000.0, 6500.0), (85.0, 115.0), (150.0, 180.0),
                           16),)),
    "AXFLAIR": ProtocolSpec("AXFLAIR", "AX FLAIR", "FLAIR",
                            (("TurboSpinEcho", (8000.0, 11000.0), (80.0, 130.0),
                              (150.0, 180.0), 16),), inversion=True),
    "AXPD": ProtocolSpec("AXPD", "AX PD", "PD",
                         (("TurboSpinEcho", (2500.0, 4000.0), (10.0, 30.0), (150.0, 180.0),
                           8),)),
}


#: The pseudo-protocol of domain-randomised images.
SYNTH = "SYNTH"
#: Every name ``draw_protocol`` accepts.
PROTOCOL_NAMES = tuple(BRAIN_PROTOCOLS) + (SYNTH,)


def synthetic_protocol() -> Protocol:
    """The domain-randomised pseudo-protocol: no contrast, sequence, TR, TE, TI or flip."""
    return Protocol(SYNTH, "AX SYNTH", None, None, None, None, None, domain_randomised=True)


def in_plane(protocol: Protocol, prefix: str, suffix: str = "") -> Protocol:
    """``protocol`` renamed for a slice plane: a leading ``AX`` of its name and protocol name
    becomes ``prefix`` (``AX``, ``COR``, ``SAG``; names without it get the prefix in front);
    ``suffix`` is appended to the name (``AXT2`` -> ``CORT2``, ``AX T2`` -> ``COR T2``)."""
    def swap(text: str) -> str:
        return prefix + (text[2:] if text.upper().startswith("AX") else text)

    return replace(protocol, name=swap(protocol.name) + suffix,
                   protocol_name=swap(protocol.protocol_name))


def _round(value: float, step: float) -> float:
    return float(np.round(value / step) * step)


def _uniform(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def draw_protocol(
    name: str, rng: np.random.Generator, field_strength_t: float = 3.0
) -> Protocol:
    """Draw one protocol of ``BRAIN_PROTOCOLS[name]`` for one subject.

    TR is rounded to 10 ms, TE to 0.01 ms (GRE) or 1 ms, flip to 5 deg, TI to 10 ms.
    """
    if name.upper() == SYNTH:
        return synthetic_protocol()
    spec = BRAIN_PROTOCOLS.get(name.upper())
    if spec is None:
        raise ConfigError(f"unknown protocol {name!r}; choose from {sorted(PROTOCOL_NAMES)}")
    seq, tr_r, te_r, fa_r, etl = spec.variants[int(rng.integers(len(spec.variants)))]
    tr = _round(_uniform(rng, tr_r), 10.0)
    te = _round(_uniform(rng, te_r), 0.01 if seq == "GradientEcho" else 1.0)
    fa = _round(_uniform(rng, fa_r), 5.0)
    ti = None
    if spec.inversion:
        csf_t1 = tissue_table(field_strength_t)["csf"].t1_ms
        ti = _round(flair_null_ti_ms(csf_t1, tr) * rng.uniform(0.985, 1.015), 10.0)
    return Protocol(spec.name, spec.protocol_name, spec.contrast, seq, tr, te, fa, ti, etl,
                    spec.contrast_agent)
