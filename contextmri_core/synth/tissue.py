"""Tissue relaxation parameters and the steady-state signal equations that turn them into contrast.

Times in ms, angles in degrees, proton density relative to pure water (CSF ~ 1).
Literature-typical values (rounded), used as the centre of a per-subject jitter:
  3 T: WM T1 ~830 / T2 ~80, GM T1 ~1330 / T2 ~110 (Wansapura et al., JMRI 1999);
       T2* WM ~53, GM ~66 (Peters et al., MRI 2007); CSF T1 ~4200, T2 ~1500-2000
       (Lin et al. 2001; Spijkerman 2018); muscle T1 ~1410 / T2 ~50, fat T1 ~370 / T2 ~130
       (Stanisz et al., MRM 2005; Gold et al., AJR 2004); WM lesions T1 ~1200 / T2 ~170
       (MS/small-vessel lesions, e.g. Vrenken 2006); cortical bone T2 < 1 ms (invisible).
  1.5 T: WM T1 ~650 / T2 ~75, GM T1 ~1190 / T2 ~100 (Wansapura 1999), CSF T1 ~3700,
       muscle T1 ~1010 / T2 ~45, fat T1 ~290 / T2 ~165 (Stanisz 2005; Gold 2004).
Other field strengths interpolate linearly in B0 (clamped to [1.5 T, 3 T]).
Gadolinium (gadobutrol-like): 1/T1 += r1*C, 1/T2 += r2*C with r1 ~ 4.5 / mM / s, r2 ~ 5.5.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional

import numpy as np

#: Relaxivities of a gadolinium agent (per mM per s).
GD_R1_PER_MM_S = 4.5
GD_R2_PER_MM_S = 5.5


@dataclass(frozen=True)
class TissueParams:
    """Relaxation of one tissue: ``t1_ms``, ``t2_ms``, ``t2star_ms``, ``pd`` (relative)."""

    t1_ms: float
    t2_ms: float
    t2star_ms: float
    pd: float
    gd_mm: float = 0.0  # gadolinium concentration (mM) reached after injection


# (T1, T2, T2*, PD, Gd uptake mM) at 1.5 T and 3 T.
_TABLE_15: Dict[str, TissueParams] = {
    "wm": TissueParams(650, 75, 65, 0.69),
    "gm": TissueParams(1190, 100, 84, 0.80),
    "csf": TissueParams(3700, 1800, 1200, 1.00),
    "bone": TissueParams(250, 0.5, 0.4, 0.05),
    "marrow": TissueParams(300, 140, 40, 0.85),
    "muscle": TissueParams(1010, 45, 30, 0.72),
    "fat": TissueParams(290, 165, 50, 0.90),
    "lesion": TissueParams(1000, 180, 110, 0.80),
    "lesion_enhancing": TissueParams(1000, 180, 110, 0.80, gd_mm=0.25),
    "choroid": TissueParams(1200, 110, 70, 0.85, gd_mm=0.40),
}
_TABLE_3: Dict[str, TissueParams] = {
    "wm": TissueParams(830, 80, 53, 0.69),
    "gm": TissueParams(1330, 110, 66, 0.80),
    "csf": TissueParams(4200, 1700, 1000, 1.00),
    "bone": TissueParams(300, 0.4, 0.3, 0.05),
    "marrow": TissueParams(370, 130, 30, 0.85),
    "muscle": TissueParams(1410, 50, 28, 0.72),
    "fat": TissueParams(370, 130, 35, 0.90),
    "lesion": TissueParams(1200, 170, 90, 0.80),
    "lesion_enhancing": TissueParams(1200, 170, 90, 0.80, gd_mm=0.25),
    "choroid": TissueParams(1500, 100, 55, 0.85, gd_mm=0.40),
}


def tissue_table(
    field_strength_t: float, rng: Optional[np.random.Generator] = None, jitter: float = 0.05
) -> Dict[str, TissueParams]:
    """Tissue parameters at ``field_strength_t``; with ``rng`` each T1/T2/T2* is scaled by a
    per-subject factor ``1 + N(0, jitter)`` (clipped to +-3 sigma)."""
    w = float(np.clip((field_strength_t - 1.5) / 1.5, 0.0, 1.0))
    table = {}
    for name, a in _TABLE_15.items():
        b = _TABLE_3[name]
        mix = {f: (1 - w) * getattr(a, f) + w * getattr(b, f)
               for f in ("t1_ms", "t2_ms", "t2star_ms", "pd", "gd_mm")}
        table[name] = TissueParams(**mix)
    if rng is None:
        return table
    for name in table:
        f = 1.0 + np.clip(rng.normal(0.0, jitter, size=3), -3 * jitter, 3 * jitter)
        p = table[name]
        table[name] = replace(p, t1_ms=p.t1_ms * f[0], t2_ms=p.t2_ms * f[1],
                              t2star_ms=p.t2star_ms * f[2])
    return table


def with_contrast_agent(p: TissueParams) -> TissueParams:
    """Relaxation after gadolinium: ``1/T1 += r1 C``, ``1/T2(*) += r2 C`` (C = ``gd_mm``)."""
    if p.gd_mm <= 0:
        return p
    r1, r2 = GD_R1_PER_MM_S * p.gd_mm / 1000.0, GD_R2_PER_MM_S * p.gd_mm / 1000.0  # per ms
    return replace(p, t1_ms=1.0 / (1.0 / p.t1_ms + r1), t2_ms=1.0 / (1.0 / p.t2_ms + r2),
                   t2star_ms=1.0 / (1.0 / p.t2star_ms + r2))


def spin_echo(pd, t1_ms, t2_ms, tr_ms: float, te_ms: float):
    """Spin echo / turbo spin echo: ``PD (1 - exp(-TR/T1)) exp(-TE/T2)``."""
    return pd * (1.0 - np.exp(-tr_ms / t1_ms)) * np.exp(-te_ms / t2_ms)


def inversion_recovery(pd, t1_ms, t2_ms, tr_ms: float, te_ms: float, ti_ms: float):
    """Magnitude inversion recovery (FLAIR, STIR):
    ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``."""
    mz = 1.0 - 2.0 * np.exp(-ti_ms / t1_ms) + np.exp(-tr_ms / t1_ms)
    return pd * np.abs(mz) * np.exp(-te_ms / t2_ms)


def spoiled_gradient_echo(pd, t1_ms, t2star_ms, tr_ms: float, te_ms: float,
                          flip_angle_deg: float):
    """Spoiled gradient echo (FLASH/SPGR):
    ``PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE/T2*)``, ``E1 = exp(-TR/T1)``."""
    a = np.deg2rad(flip_angle_deg)
    e1 = np.exp(-tr_ms / t1_ms)
    return pd * np.sin(a) * (1.0 - e1) / (1.0 - np.cos(a) * e1) * np.exp(-te_ms / t2star_ms)


def flair_null_ti_ms(t1_ms: float, tr_ms: float) -> float:
    """Inversion time that nulls a tissue of ``t1_ms``: ``T1 (ln 2 - ln(1 + exp(-TR/T1)))``."""
    return float(t1_ms * (np.log(2.0) - np.log1p(np.exp(-tr_ms / t1_ms))))


def tissue_signal(p: TissueParams, sequence: str, tr_ms: float, te_ms: float,
                  ti_ms: Optional[float] = None, flip_angle_deg: float = 90.0) -> float:
    """Signal of one tissue for a sequence: ``"GradientEcho"`` uses the spoiled-GRE equation;
    spin-echo types use inversion recovery if ``ti_ms`` is given, else the spin-echo equation."""
    if sequence == "GradientEcho":
        return float(spoiled_gradient_echo(p.pd, p.t1_ms, p.t2star_ms, tr_ms, te_ms,
                                           flip_angle_deg))
    if ti_ms is not None:
        return float(inversion_recovery(p.pd, p.t1_ms, p.t2_ms, tr_ms, te_ms, ti_ms))
    return float(spin_echo(p.pd, p.t1_ms, p.t2_ms, tr_ms, te_ms))
