"""EncodingInfo: the k-space geometry of a scan, from the first ``<encoding>`` of the header.

Pure: one function (``parse_encoding``) turns ISMRMRD XML into a frozen dataclass. Missing
pieces are ``None`` (matrices, FOVs, coils) or absent (limits); acceleration defaults to 1.
It never raises on an incomplete header, only (``HeaderError``) on XML that does not parse.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from contextmri_core.data.xmlutil import find_all_text, find_float, find_int, find_text, parse_xml

#: encodingLimits children, in the order of the ISMRMRD schema.
LIMIT_NAMES: Tuple[str, ...] = (
    "kspace_encoding_step_0", "kspace_encoding_step_1", "kspace_encoding_step_2", "average",
    "slice", "contrast", "phase", "repetition", "set", "segment",
)


@dataclass(frozen=True)
class Limit:
    """One ``encodingLimits`` entry (inclusive ``minimum``..``maximum``, ``center``)."""

    minimum: int
    maximum: int
    center: int

    @property
    def count(self) -> int:
        return self.maximum - self.minimum + 1


@dataclass(frozen=True)
class EncodingInfo:
    """Geometry of the first encoding space.

    Matrices are ``(x, y, z)`` = (readout, phase encode 1, phase encode 2) in samples;
    FOVs are ``(x, y, z)`` in mm. ``limits`` maps ``LIMIT_NAMES`` entries present in the
    header to ``Limit``. Acceleration factors default to 1 when the header has none.
    """

    trajectory: Optional[str] = None
    encoded_matrix: Optional[Tuple[int, int, int]] = None
    recon_matrix: Optional[Tuple[int, int, int]] = None
    encoded_fov_mm: Optional[Tuple[float, float, float]] = None
    recon_fov_mm: Optional[Tuple[float, float, float]] = None
    limits: Tuple[Tuple[str, Limit], ...] = ()
    acceleration_e1: int = 1
    acceleration_e2: int = 1
    calibration_mode: Optional[str] = None
    num_coils: Optional[int] = None
    coil_names: Tuple[str, ...] = ()

    def limit(self, name: str) -> Optional[Limit]:
        """The ``encodingLimits`` entry ``name`` (e.g. ``"kspace_encoding_step_1"``) or None."""
        return dict(self.limits).get(name)

    @property
    def is_cartesian(self) -> bool:
        """True for a ``cartesian`` trajectory (or none given: the ISMRMRD default)."""
        return self.trajectory is None or self.trajectory.lower() == "cartesian"

    @property
    def readout_oversampled(self) -> bool:
        """Encoded x > recon x and (when both FOVs are given) encoded FOV x > recon FOV x.

        Equal FOVs with a larger encoded matrix mean a resolution change, not oversampling.
        """
        if not self.encoded_matrix or not self.recon_matrix or self.recon_matrix[0] <= 0:
            return False
        if self.encoded_matrix[0] <= self.recon_matrix[0]:
            return False
        if self.encoded_fov_mm and self.recon_fov_mm:
            return self.encoded_fov_mm[0] > self.recon_fov_mm[0] * 1.0001
        return True

    @property
    def readout_oversampling(self) -> float:
        """Encoded over recon readout size when oversampled (2.0 usually), else 1."""
        if not self.readout_oversampled:
            return 1.0
        return self.encoded_matrix[0] / self.recon_matrix[0]  # type: ignore[index]


def _triple_int(node: Optional[ET.Element]) -> Optional[Tuple[int, int, int]]:
    values = [find_int(node, axis) for axis in ("x", "y", "z")]
    if values[0] is None or values[1] is None:
        return None
    return (values[0], values[1], values[2] if values[2] is not None else 1)


def _triple_float(node: Optional[ET.Element]) -> Optional[Tuple[float, float, float]]:
    values = [find_float(node, axis) for axis in ("x", "y", "z")]
    if any(v is None for v in values):
        return None
    return (float(values[0]), float(values[1]), float(values[2]))  # type: ignore[arg-type]


def _limits(enc: Optional[ET.Element]) -> Tuple[Tuple[str, Limit], ...]:
    node = enc.find("encodingLimits") if enc is not None else None
    out = []
    for name in LIMIT_NAMES:
        lim = node.find(name) if node is not None else None
        lo, hi = find_int(lim, "minimum"), find_int(lim, "maximum")
        if lim is None or lo is None or hi is None:
            continue
        centre = find_int(lim, "center")
        out.append((name, Limit(lo, hi, centre if centre is not None else (lo + hi + 1) // 2)))
    return tuple(out)


def parse_encoding(xml: Union[str, bytes, ET.Element]) -> EncodingInfo:
    """``EncodingInfo`` of the first ``<encoding>`` in an ISMRMRD header (text, bytes or tree)."""
    root = xml if isinstance(xml, ET.Element) else parse_xml(xml)
    enc = root.find("encoding")
    if enc is None:
        return EncodingInfo(num_coils=find_int(root, "acquisitionSystemInformation/receiverChannels"),
                            coil_names=_coil_names(root))
    par = enc.find("parallelImaging")
    return EncodingInfo(
        trajectory=find_text(enc, "trajectory"),
        encoded_matrix=_triple_int(enc.find("encodedSpace/matrixSize")),
        recon_matrix=_triple_int(enc.find("reconSpace/matrixSize")),
        encoded_fov_mm=_triple_float(enc.find("encodedSpace/fieldOfView_mm")),
        recon_fov_mm=_triple_float(enc.find("reconSpace/fieldOfView_mm")),
        limits=_limits(enc),
        acceleration_e1=find_int(par, "accelerationFactor/kspace_encoding_step_1") or 1,
        acceleration_e2=find_int(par, "accelerationFactor/kspace_encoding_step_2") or 1,
        calibration_mode=find_text(par, "calibrationMode"),
        num_coils=find_int(root, "acquisitionSystemInformation/receiverChannels"),
        coil_names=_coil_names(root),
    )


def _coil_names(root: ET.Element) -> Tuple[str, ...]:
    return tuple(find_all_text(root, "acquisitionSystemInformation/coilLabel/coilName"))
