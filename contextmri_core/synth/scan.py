"""Compose subject + protocol + slice geometry into a multi-coil scan: k-space, noise scan,
truth and labels.

Grid: phase encode E1 = ``matrix`` lines, readout RO = ``matrix`` samples reconstructed from
``RO_os = oversampling * RO`` acquired samples (the object is rendered inside the recon field
of view and sits in the centre of a readout field of view ``oversampling`` times wider, as in
real raw data). Axis order per slice: ``(C, E1, RO_os)``; centred orthonormal FFTs. The plane,
tilt, pixel spacing and slice thickness come from ``SimConfig`` (``orientation``); the object
is rendered inside the FOV only, so a FOV smaller than the head crops it (no fold-over).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage as ndi

from contextmri_core.data.fftnp import crop_center, fftc, ifftc
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import ConfigError, check_fields
from contextmri_core.synth import fields
from contextmri_core.synth.anatomy import LESION_LABEL, lesion_mask, tissue_index
from contextmri_core.synth.orientation import (
    PLANE_PREFIX, PLANES, ScanGeometry, draw_geometry, normal_axis,
)
from contextmri_core.synth.protocols import Protocol, draw_protocol, in_plane
from contextmri_core.synth.sampling import SamplingPlan, sampling_plan
from contextmri_core.synth.subject import Subject, draw_subject
from contextmri_core.synth.truth import draw_scan_fields, slice_truth

logger = logging.getLogger(__name__)

VENDOR = "contextmri-sim"
GAMMA_HZ_PER_T = 42.577478518e6
#: Readout duration (us): 1 / pixel bandwidth, i.e. 200 Hz/pixel.
READOUT_DURATION_US = 5000.0


@dataclass(frozen=True)
class SimConfig:
    """What to simulate (one scan). ``snr`` = mean brain magnitude / noise std (None:
    noiseless). The in-plane pixel size is ``pixel_spacing_mm``, or ``fov_mm / matrix`` when
    that is None. ``plane`` is tilted by up to ``oblique_max_deg``. ``deformation_strength``
    and ``atrophy_strength`` scale the subject's anatomy variation (0: the template itself)."""

    matrix: int = 128
    num_coils: int = 8
    num_slices: int = 4
    readout_oversampling: int = 2
    fov_mm: float = 240.0
    pixel_spacing_mm: Optional[float] = None
    plane: str = "axial"
    oblique_max_deg: float = 0.0
    slice_thickness_mm: float = 5.0
    slice_gap_mm: float = 1.0
    field_strength_t: float = 3.0
    lesion_probability: float = 0.3
    augment: bool = True
    deformation_strength: float = 1.0
    atrophy_strength: float = 1.0
    snr: Optional[float] = 40.0
    noise_samples: int = 2048
    acceleration: int = 1
    calibration: str = "embedded"
    center_fraction: Optional[float] = None

    def __post_init__(self) -> None:
        checks = (("matrix", self.matrix >= 16, "use >= 16"),
                  ("num_coils", 1 <= self.num_coils <= 64, "use 1..64"),
                  ("num_slices", self.num_slices >= 1, "use >= 1"),
                  ("readout_oversampling", self.readout_oversampling in (1, 2), "use 1 or 2"),
                  ("field_strength_t", 0.5 <= self.field_strength_t <= 7.0, "use 0.5..7 T"),
                  ("lesion_probability", 0.0 <= self.lesion_probability <= 1.0, "use 0..1"),
                  ("snr", self.snr is None or self.snr > 0, "use > 0 or None"),
                  ("noise_samples", self.noise_samples >= 1, "use >= 1"),
                  ("acceleration", int(self.acceleration) >= 1, "use an integer >= 1"),
                  ("plane", self.plane in PLANES, f"use one of {', '.join(PLANES)}"),
                  ("oblique_max_deg", 0.0 <= self.oblique_max_deg <= 45.0, "use 0..45"),
                  ("pixel_spacing_mm", self.pixel_spacing_mm is None
                   or 0.1 <= self.pixel_spacing_mm <= 10.0, "use 0.1..10 mm or None"),
                  ("slice_thickness_mm", 0.5 <= self.slice_thickness_mm <= 20.0,
                   "use 0.5..20 mm"),
                  ("slice_gap_mm", self.slice_gap_mm >= 0, "use >= 0"),
                  ("deformation_strength", 0.0 <= self.deformation_strength <= 3.0,
                   "use 0..3"),
                  ("atrophy_strength", 0.0 <= self.atrophy_strength <= 3.0, "use 0..3"))
        check_fields(self, checks)

    @property
    def readout_samples(self) -> int:
        """RO_os: acquired samples per line."""
        return self.matrix * self.readout_oversampling

    @property
    def spacing_mm(self) -> float:
        """In-plane pixel size (mm) of the recon grid."""
        return self.pixel_spacing_mm if self.pixel_spacing_mm else self.fov_mm / self.matrix


@dataclass(frozen=True)
class LesionBox:
    """A fastMRI+-style box on the reconstruction grid, in pixels: ``x``/``width`` along E1
    (phase encode, the columns of fastMRI's ``reconstruction_rss``), ``y``/``height`` along RO
    (readout, its rows)."""

    slice: int
    x: int
    y: int
    width: int
    height: int
    label: str = LESION_LABEL


@dataclass(frozen=True)
class SimulatedScan:
    """A simulated multi-coil brain scan (S slices, C coils) with its slice ``geometry``.

    kspace:            (S, C, E1, RO_os) complex64, fully sampled, noisy.
    noise:             (C, N) complex64 noise-only samples (the noise scan).
    noise_covariance:  (C, C) complex128, the covariance of ``noise`` (and of the k-space noise
                       unless ``config.snr`` is None: then k-space is noiseless and the noise
                       scan is faint, 1e-4 of the brain signal).
    image:             (S, E1, RO) complex64 noise-free ground truth on the recon grid.
    coil_maps:         (S, C, E1, RO) complex64 with ``sum_c |S_c|^2 = 1``.
    tissue:            (S, T, E1, RO) float32 tissue fractions (``anatomy.TISSUES``).
    lesion_masks:      (S, E1, RO) bool.
    plan:              which lines are acquired / flagged calibration.
    """

    kspace: np.ndarray
    noise: np.ndarray
    noise_covariance: np.ndarray
    image: np.ndarray
    coil_maps: np.ndarray
    tissue: np.ndarray
    lesion_masks: np.ndarray
    boxes: Tuple[LesionBox, ...]
    pathology: Tuple[Tuple[str, ...], ...]
    metadata: ScanMetadata
    protocol: Protocol
    subject: Subject
    config: SimConfig
    geometry: ScanGeometry
    plan: SamplingPlan
    coil_names: Tuple[str, ...]
    noise_std: float = 0.0
    sample_time_us: float = 5.0
    extras: dict = field(default_factory=dict)

    @property
    def fov_mm(self) -> Tuple[float, float, float]:
        """Reconstructed FOV (x = readout, y = phase encode, z = slice thickness) in mm."""
        g = self.geometry
        return (g.fov_mm, g.fov_mm, g.slice_thickness_mm)

    @property
    def coil_images(self) -> np.ndarray:
        """Noise-free coil images ``(S, C, E1, RO)`` = maps x image."""
        return self.coil_maps * self.image[:, None]

    def slice_metadata(self, index: int) -> ScanMetadata:
        return self.metadata.for_slice(index, self.pathology[index])

    def acquired_kspace(self) -> np.ndarray:
        """``kspace`` with the lines the plan does not acquire for imaging set to 0."""
        return self.kspace * self.plan.imaging[None, None, :, None]


def fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (numpy)."""
    return fftc(x, axes=(-2, -1))


def ifft2c(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2D FFT over the last two axes (numpy)."""
    return ifftc(k, axes=(-2, -1))


def crop_readout(x: np.ndarray, num: int) -> np.ndarray:
    """Centre ``num`` samples of the last axis (the readout)."""
    return crop_center(x, num, axis=-1)


def scan_metadata(protocol: Protocol, subject: Subject, field_strength_t: float,
                  geom: ScanGeometry) -> ScanMetadata:
    """The ``ScanMetadata`` a reader would build for this scan, plus its geometry fields
    (plane from the slice normal, pixel spacing, slice thickness); None where the protocol
    has no value (domain-randomised scans: no contrast, sequence or timing)."""
    ti = protocol.ti_ms
    return ScanMetadata(
        anatomy="brain", contrast=protocol.contrast, sequence=protocol.sequence,
        tr_ms=protocol.tr_ms, te_ms=protocol.te_ms, ti_ms=ti,
        flip_angle_deg=protocol.flip_angle_deg,
        tr_all_ms=(protocol.tr_ms,) if protocol.tr_ms is not None else (),
        te_all_ms=(protocol.te_ms,) if protocol.te_ms is not None else (),
        ti_all_ms=(ti,) if ti is not None else (),
        flip_angle_all_deg=((protocol.flip_angle_deg,) if protocol.flip_angle_deg is not None
                            else ()),
        patient_age_y=subject.age_y,
        patient_sex=subject.sex, field_strength_t=field_strength_t, vendor=VENDOR,
        model=f"SimScanner {field_strength_t:g}T", protocol_name=protocol.protocol_name,
        series_description=protocol.protocol_name, slice_plane=geom.plane_label,
        pixel_spacing_mm=geom.pixel_spacing_mm, slice_thickness_mm=geom.slice_thickness_mm)


def _boxes(masks: np.ndarray) -> Tuple[LesionBox, ...]:
    """One box per connected lesion region of each slice mask ``(S, E1, RO)``."""
    boxes = []
    for s, m in enumerate(masks):
        labels, _ = ndi.label(m)
        for sl in ndi.find_objects(labels):
            e1, ro = sl
            boxes.append(LesionBox(s, int(e1.start), int(ro.start), int(e1.stop - e1.start),
                                   int(ro.stop - ro.start)))
    return tuple(boxes)


def scan_geometry(config: SimConfig, subject: Subject, rng: np.random.Generator,
                  layout: str = "stack") -> ScanGeometry:
    """Draw the slice geometry of a scan of ``subject`` as ``config`` asks (``layout``: see
    ``orientation.stack_offsets_mm``)."""
    head_scale = subject.placement.scale * subject.morphology.scale_xyz[normal_axis(config.plane)]
    return draw_geometry(rng, config.plane, config.matrix, config.spacing_mm,
                         config.slice_thickness_mm, config.num_slices, config.slice_gap_mm,
                         config.oblique_max_deg, head_scale, layout)


def _noise(config: SimConfig, image: np.ndarray, tissue: np.ndarray, shape, rng):
    """(noise std, covariance, noise scan, k-space noise or None) for the scan."""
    brain = tissue[:, tissue_index("wm")] + tissue[:, tissue_index("gm")] > 0.5
    level = float(np.mean(np.abs(image[brain]))) if brain.any() else 1.0
    sigma = level / config.snr if config.snr else 0.0
    scan_sigma = sigma if sigma > 0 else level * 1e-4  # noiseless: a faint noise scan
    psi = fields.noise_covariance(config.num_coils, rng) * scan_sigma ** 2
    noise = fields.correlated_noise(psi, (config.noise_samples,), rng)
    k_noise = None
    if sigma > 0:
        k_noise = np.moveaxis(fields.correlated_noise(psi, (shape[0],) + shape[2:], rng), 0, 1)
    return sigma, psi, noise, k_noise


def simulate_scan(
    subject: Subject, protocol: Protocol, config: SimConfig, rng: np.random.Generator,
    geometry: Optional[ScanGeometry] = None,
) -> SimulatedScan:
    """Simulate ``protocol`` on ``subject`` (renamed for the plane, e.g. ``COR T2``); the
    slice geometry is drawn from ``rng`` unless given. See ``SimulatedScan``."""
    r_tissue, r_coils, r_fields, r_noise, r_mask, r_geom = rng.spawn(6)
    geom = geometry or scan_geometry(config, subject, r_geom)
    if geom.num_slices != config.num_slices or geom.matrix != config.matrix:
        raise ConfigError("geometry has %d slices of %d px but SimConfig asks %d of %d px"
                          % (geom.num_slices, geom.matrix, config.num_slices, config.matrix))
    protocol = in_plane(protocol, PLANE_PREFIX[geom.plane])
    scan_fields = draw_scan_fields(protocol, config.num_coils, config.field_strength_t,
                                   r_tissue, r_coils, r_fields)
    truths = [slice_truth(subject, geom, k, scan_fields, r_fields)
              for k in range(geom.num_slices)]
    image = np.stack([t.image for t in truths])
    maps = np.stack([t.maps for t in truths])
    tissue = np.stack([t.fractions for t in truths])
    n, ro_os = config.matrix, config.readout_samples
    start = ro_os // 2 - n // 2  # where crop_readout takes the recon columns from
    coil_images = np.pad(maps * image[:, None], ((0, 0), (0, 0), (0, 0),
                                                 (start, ro_os - n - start)))
    kspace = fft2c(coil_images).astype(np.complex64)
    sigma, psi, noise, k_noise = _noise(config, image, tissue, kspace.shape, r_noise)
    if k_noise is not None:
        kspace += k_noise
    plan = sampling_plan(n, config.acceleration, int(r_mask.integers(2 ** 31)),
                         config.calibration, config.center_fraction)
    masks = lesion_mask(tissue)
    pathology = tuple((LESION_LABEL,) if m.any() else () for m in masks)
    return SimulatedScan(
        kspace=kspace, noise=noise.astype(np.complex64), noise_covariance=psi,
        image=np.ascontiguousarray(image), coil_maps=np.ascontiguousarray(maps),
        tissue=np.ascontiguousarray(tissue), lesion_masks=masks, boxes=_boxes(masks),
        pathology=pathology,
        metadata=scan_metadata(protocol, subject, config.field_strength_t, geom),
        protocol=protocol, subject=subject, config=config, geometry=geom, plan=plan,
        coil_names=scan_fields.array.names, noise_std=sigma,
        sample_time_us=round(READOUT_DURATION_US / config.readout_samples, 4))


def draw_config_subject(rng: np.random.Generator, config: SimConfig, index: int) -> Subject:
    """``draw_subject`` with the config's lesion probability, augmentation and strengths."""
    return draw_subject(rng, index, config.lesion_probability, config.augment,
                        config.deformation_strength, config.atrophy_strength)


def simulate(
    seed: int, protocol: str = "AXT2", config: Optional[SimConfig] = None, index: int = 0
) -> SimulatedScan:
    """One-call simulation: subject ``index`` and ``protocol`` (``SYNTH`` for domain-randomised
    intensities) drawn from ``seed``."""
    config = config or SimConfig()
    r_subject, r_protocol, r_scan = np.random.default_rng(seed).spawn(3)
    subject = draw_config_subject(r_subject, config, index)
    proto = draw_protocol(protocol, r_protocol, config.field_strength_t)
    logger.debug("simulating %s for %s", proto.name, subject.patient_id)
    return simulate_scan(subject, proto, config, r_scan)
