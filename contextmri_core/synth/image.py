"""Contrast: tissue fractions x sequence signal -> the magnitude of one slice.

``magnitude = sum_t fraction_t * signal_t(TR, TE, TI, flip)``; ``truth`` multiplies it by the
bias field, the receive shading of the coil array and the background phase.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from contextmri_core.synth.anatomy import TISSUES
from contextmri_core.synth.protocols import Protocol
from contextmri_core.synth.tissue import TissueParams, tissue_signal, with_contrast_agent


def tissue_weights(protocol: Protocol, table: Dict[str, TissueParams]) -> np.ndarray:
    """Signal of each tissue channel ``(T,)`` (order ``anatomy.TISSUES``) under ``protocol``;
    contrast agent applied where the protocol is post-contrast."""
    out = np.zeros(len(TISSUES), dtype=np.float64)
    for i, name in enumerate(TISSUES):
        p = table[name]
        if protocol.contrast_agent:
            p = with_contrast_agent(p)
        out[i] = tissue_signal(p, protocol.sequence, protocol.tr_ms, protocol.te_ms,
                               protocol.ti_ms, protocol.flip_angle_deg)
    return out


def magnitude(fractions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(T, ny, nx)`` fractions and ``(T,)`` weights -> magnitude ``(ny, nx)`` float32."""
    return np.tensordot(weights.astype(np.float32), fractions, axes=1).astype(np.float32)
