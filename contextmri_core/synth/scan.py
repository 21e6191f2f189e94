"""Compose subject + protocol into a multi-coil scan: k-space, noise scan, truth and labels.

Grid: phase encode E1 = ``matrix`` lines, readout RO = ``matrix`` samples reconstructed from
``RO_os = oversampling * RO`` acquired samples (the object sits in the centre of a field of
view ``oversampling`` times wider in readout, as in real raw data). Axis order per slice:
``(C, E1, RO_os)``; centred orthonormal FFTs.
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
from contextmri_core.synth import coils as coil_mod
from contextmri_core.synth import fields
from contextmri_core.synth.anatomy import LESION_LABEL, lesion_mask, tissue_index, tissue_slice
from contextmri_core.synth.geometry import pixel_centres_mm
from contextmri_core.synth.image import complex_object, magnitude, tissue_weights
from contextmri_core.synth.protocols import Protocol, draw_protocol
from contextmri_core.synth.sampling import SamplingPlan, sampling_plan
from contextmri_core.synth.subject import Subject, draw_subject
from contextmri_core.synth.tissue import tissue_table

logger = logging.getLogger(__name__)

VENDOR = "contextmri-sim"
GAMMA_HZ_PER_T = 42.577478518e6
#: Readout duration (us): 1 / pixel bandwidth, i.e. 200 Hz/pixel.
READOUT_DURATION_US = 5000.0


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. ``snr`` = mean brain magnitude / noise std (None: noiseless)."""

    matrix: int = 128
    num_coils: int = 8
    num_slices: int = 4
    readout_oversampling: int = 2
    fov_mm: float = 240.0
    slice_thickness_mm: float = 5.0
    slice_gap_mm: float = 1.0
    field_strength_t: float = 3.0
    lesion_probability: float = 0.3
    augment: bool = True
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
                  ("acceleration", int(self.acceleration) >= 1, "use an integer >= 1"))
        check_fields(self, checks)

    @property
    def readout_samples(self) -> int:
        """RO_os: acquired samples per line."""
        return self.matrix * self.readout_oversampling


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
    """A simulated multi-coil axial brain scan (S slices, C coils).

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
    plan: SamplingPlan
    coil_names: Tuple[str, ...]
    noise_std: float = 0.0
    sample_time_us: float = 5.0
    extras: dict = field(default_factory=dict)

    @property
    def fov_mm(self) -> Tuple[float, float, float]:
        """Reconstructed FOV (x = readout, y = phase encode, z = slice thickness) in mm."""
        return (self.config.fov_mm, self.config.fov_mm, self.subject.slice_thickness_mm)

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


def _metadata(protocol: Protocol, subject: Subject, config: SimConfig) -> ScanMetadata:
    ti = protocol.ti_ms
    return ScanMetadata(
        anatomy="brain", contrast=protocol.contrast, sequence=protocol.sequence,
        tr_ms=protocol.tr_ms, te_ms=protocol.te_ms, ti_ms=ti,
        flip_angle_deg=protocol.flip_angle_deg, tr_all_ms=(protocol.tr_ms,),
        te_all_ms=(protocol.te_ms,), ti_all_ms=(ti,) if ti is not None else (),
        flip_angle_all_deg=(protocol.flip_angle_deg,), patient_age_y=subject.age_y,
        patient_sex=subject.sex, field_strength_t=config.field_strength_t, vendor=VENDOR,
        model=f"SimScanner {config.field_strength_t:g}T", protocol_name=protocol.protocol_name,
        series_description=protocol.protocol_name)


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


def _slice_truth(subject, protocol, config, weights, array, bias, rng, z_mm):
    """Object ``(E1, RO_os)``, normalised maps ``(C, E1, RO_os)``, fractions ``(T, E1, RO)``.

    Tissue is evaluated on the reconstruction grid (the head fits its FOV) and zero-padded to
    the oversampled readout, so the oversampling band holds air, as in a real brain scan."""
    n, ro_os = config.matrix, config.readout_samples
    px = config.fov_mm / n
    frac = tissue_slice((n, n), (px, px), z_mm, subject.slice_thickness_mm,
                        subject.placement, subject.lesions)  # the head fits the recon FOV
    start = ro_os // 2 - n // 2  # where crop_readout takes the recon columns from
    pad = ((0, 0), (start, ro_os - n - start))
    mag = np.pad(magnitude(frac, weights), pad)
    obj = complex_object(mag, bias, fields.background_phase((n, ro_os), rng))
    phys = coil_mod.sensitivities(array, pixel_centres_mm(n, px), pixel_centres_mm(ro_os, px),
                                  z_mm)
    maps, shading = coil_mod.normalise(phys)
    return (obj * shading).astype(np.complex64), maps, frac


def simulate_scan(
    subject: Subject, protocol: Protocol, config: SimConfig, rng: np.random.Generator
) -> SimulatedScan:
    """Simulate ``protocol`` on ``subject``: see ``SimulatedScan`` for what comes back."""
    r_tissue, r_coils, r_fields, r_noise, r_mask = rng.spawn(5)
    if len(subject.slice_positions_mm) != config.num_slices:
        raise ConfigError("subject has %d slices but SimConfig.num_slices=%d"
                          % (len(subject.slice_positions_mm), config.num_slices))
    weights = tissue_weights(protocol, tissue_table(config.field_strength_t, r_tissue))
    array = coil_mod.head_array(config.num_coils, r_coils)
    n, ro_os = config.matrix, config.readout_samples
    bias = fields.bias_field((n, ro_os), r_fields)
    objs, maps, fracs = zip(*(_slice_truth(subject, protocol, config, weights, array, bias,
                                           r_fields, z) for z in subject.slice_positions_mm))
    objs, maps = np.stack(objs), np.stack(maps)
    kspace = fft2c(maps * objs[:, None]).astype(np.complex64)
    tissue = np.stack(fracs)
    image = crop_readout(objs, n)
    brain = tissue[:, tissue_index("wm")] + tissue[:, tissue_index("gm")] > 0.5
    level = float(np.mean(np.abs(image[brain]))) if brain.any() else 1.0
    sigma = level / config.snr if config.snr else 0.0
    scan_sigma = sigma if sigma > 0 else level * 1e-4  # noiseless: a faint noise scan
    psi = fields.noise_covariance(config.num_coils, r_noise) * scan_sigma ** 2
    noise = fields.correlated_noise(psi, (config.noise_samples,), r_noise)
    if sigma > 0:
        k_noise = fields.correlated_noise(psi, (kspace.shape[0],) + kspace.shape[2:], r_noise)
        kspace += np.moveaxis(k_noise, 0, 1)
    plan = sampling_plan(n, config.acceleration, int(r_mask.integers(2 ** 31)),
                         config.calibration, config.center_fraction)
    masks = lesion_mask(tissue)
    pathology = tuple((LESION_LABEL,) if m.any() else () for m in masks)
    return SimulatedScan(
        kspace=kspace, noise=noise.astype(np.complex64), noise_covariance=psi,
        image=np.ascontiguousarray(image), coil_maps=np.ascontiguousarray(crop_readout(maps, n)),
        tissue=np.ascontiguousarray(tissue), lesion_masks=masks, boxes=_boxes(masks),
        pathology=pathology, metadata=_metadata(protocol, subject, config), protocol=protocol,
        subject=subject, config=config, plan=plan, coil_names=array.names, noise_std=sigma,
        sample_time_us=round(READOUT_DURATION_US / config.readout_samples, 4))


def simulate(
    seed: int, protocol: str = "AXT2", config: Optional[SimConfig] = None, index: int = 0
) -> SimulatedScan:
    """One-call simulation: subject ``index`` and ``protocol`` drawn from ``seed``."""
    config = config or SimConfig()
    r_subject, r_protocol, r_scan = np.random.default_rng(seed).spawn(3)
    subject = draw_subject(r_subject, index, config.num_slices, config.lesion_probability,
                           config.augment, config.slice_thickness_mm, config.slice_gap_mm)
    proto = draw_protocol(protocol, r_protocol, config.field_strength_t)
    logger.debug("simulating %s for %s", proto.name, subject.patient_id)
    return simulate_scan(subject, proto, config, r_scan)
