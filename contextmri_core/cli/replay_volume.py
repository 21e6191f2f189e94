"""One raw file through ``contextmri replay``: read, (undersample), reconstruct with fallback,
score, write the series in every asked-for format. The file loop, flags, summary and
scale-out live in ``contextmri_core.cli.replay``."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from contextmri_core.data.fftnp import crop_center
from contextmri_core.data.scan import RawScan, SliceData
from contextmri_core.errors import InputFileError
from contextmri_core.io.dicom_writer import DicomSeries, StudyContext, write_series
from contextmri_core.io.image_outputs import series_stem, write_ismrmrd_images, write_nifti, write_png
from contextmri_core.io.mrd_images import (SERIES_FALLBACK_OFFSET, SERIES_MAGNITUDE, SERIES_PHASE,
                                           SERIES_UNCERTAINTY)
from contextmri_core.io.reader import read_scan
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.classical import CLASSICAL
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import PrepConfig, prepare_scan, undersample
from contextmri_core.recon.stream import StreamSettings, batches, reconstruct_groups
from contextmri_core.sampling.dds import Progress

log = logging.getLogger(__name__)
OUTPUTS = ("dicom", "png", "ismrmrd", "nifti")
#: Series numbers of the classical baselines and of the fully sampled reference.
BASELINE_SERIES = {"sense": 21, "l1_wavelet": 22, "zero_filled": 23, "reference": 30}


@dataclass(frozen=True)
class VolumeJob:
    """What to do with every file (flags / YAML of ``contextmri replay``)."""

    out: Path
    settings: StreamSettings
    outputs: Tuple[str, ...] = ("dicom", "png")
    undersample: Optional[str] = None
    baselines: bool = False
    model_name: str = "default"
    show_phi: bool = False  # log patient name/ID (never by default)


@dataclass
class VolumeReport:
    """The result of one file: what was written, how it was reconstructed, its scores."""

    file: str
    ok: bool = False
    error: Optional[str] = None
    slices: int = 0
    method: str = ""
    fallback_slices: int = 0
    fallback_reason: Optional[str] = None
    fallback_method: Optional[str] = None
    seconds: float = 0.0
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    outputs: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Collected:
    """Per-slice results gathered over the batches of one volume."""

    primary: List[np.ndarray] = field(default_factory=list)
    uncertainty: List[Optional[np.ndarray]] = field(default_factory=list)
    errors: List[Optional[str]] = field(default_factory=list)
    methods: List[str] = field(default_factory=list)
    baselines: Dict[str, List[np.ndarray]] = field(default_factory=dict)


def _check_fully_sampled(scan: RawScan, path: Path) -> None:
    worst = max(sl.acceleration for sl in scan.slices)
    if worst > 1.05:
        raise InputFileError(path, f"--undersample needs a fully sampled file; this one is "
                                   f"already undersampled (R = {worst:.2f})")


def _inputs(scan: RawScan, job: VolumeJob, path: Path,
            prep: PrepConfig) -> Tuple[List[SliceData], Optional[torch.Tensor]]:
    """The slices to reconstruct and, when undersampling retrospectively, the fully sampled
    MVUE reference ``(S, E1, RO)``."""
    if not job.undersample:
        return list(scan.slices), None
    _check_fully_sampled(scan, path)
    full = prepare_scan(scan, prep)
    reference = mvue(full.kspace, full.maps).cpu()
    mask = make_mask(job.undersample, scan.slices[0].mask.shape, job.settings.seed)
    return [undersample(s, mask) for s in scan.slices], reference


def _reconstruct(slices: List[SliceData], scan: RawScan, job: VolumeJob, primary: Callable,
                 progress: Optional[Progress], want_baselines: bool) -> _Collected:
    got = _Collected()
    groups = batches(slices, job.settings.batch_size)
    for res in reconstruct_groups(groups, scan.noise, primary, job.settings, progress):
        for out in res.outcomes:
            got.primary.append(out.image)
            got.uncertainty.append(out.uncertainty)
            got.errors.append(out.error)
            got.methods.append(out.method)
        if not want_baselines:
            continue
        for name, cls in CLASSICAL.items():
            if res.batch is None:  # preparation failed: no coil maps, no baselines
                images = [o.image for o in res.outcomes]
            else:
                b = res.batch
                images = list(cls()(b.kspace, b.mask, b.maps, b.metadata).image.cpu().numpy())
            got.baselines.setdefault(name, []).extend(images)
    return got


def _crop(image: np.ndarray, matrix: Tuple[int, int]) -> np.ndarray:
    """Centre-crop ``(E1, RO)`` to the header's recon matrix ``(ny, nx)`` where smaller."""
    out = np.asarray(image)
    for axis, n in zip((-2, -1), matrix):
        if 0 < n < out.shape[axis]:
            out = crop_center(out, n, axis=axis)
    return out


def _series(scan: RawScan, job: VolumeJob, got: _Collected,
            reference: Optional[torch.Tensor]) -> List[DicomSeries]:
    """Every series of the volume: primary (magnitude, phase, uncertainty), its fallback
    slices as their own labelled series, baselines and reference when computed."""
    s = job.settings
    comments = {"guidance": s.guidance, "steps": s.steps, "model": job.model_name,
                "seed": s.seed, "ensemble": s.ensemble, "undersample": job.undersample}
    idx_ok = [i for i, e in enumerate(got.errors) if e is None]
    idx_fb = [i for i, e in enumerate(got.errors) if e is not None]
    proto = scan.metadata.protocol_name or scan.metadata.series_description or "scan"
    out: List[DicomSeries] = []

    def add(idx: Sequence[int], images: Sequence[np.ndarray], number: int, method: str,
            kind: str, reason: Optional[str] = None) -> None:
        if not idx:
            return
        label = f"{proto} contextmri {method.upper()}" + ("" if kind == "magnitude" else f" {kind}")
        out.append(DicomSeries(
            images=[_crop(_part(images[i], kind), scan.recon_matrix) for i in idx],
            geometry=[scan.geometry_of(i) for i in idx],
            metadata=[scan.slices[i].metadata for i in idx], series_number=number,
            description=label, kind=kind, method=method, fallback_reason=reason,
            comments=comments))

    add(idx_ok, got.primary, SERIES_MAGNITUDE, s.method, "magnitude")
    if s.phase:
        add(idx_ok, got.primary, SERIES_PHASE, s.method, "phase")
    if s.ensemble > 1:
        add(idx_ok, got.uncertainty, SERIES_UNCERTAINTY, s.method, "uncertainty")
    for k, method in enumerate(sorted({got.methods[i] for i in idx_fb})):
        idx = [i for i in idx_fb if got.methods[i] == method]
        add(idx, got.primary, SERIES_FALLBACK_OFFSET + SERIES_MAGNITUDE + k, method, "magnitude",
            got.errors[idx[0]])
    everything = list(range(len(got.primary)))
    if job.baselines:
        for name, images in got.baselines.items():
            add(everything, images, BASELINE_SERIES[name], name, "magnitude")
        if reference is not None:
            add(everything, list(reference.numpy()), BASELINE_SERIES["reference"], "reference",
                "magnitude")
    return out


def _part(image: np.ndarray, kind: str) -> np.ndarray:
    return np.angle(image) if kind == "phase" else np.abs(image)


def _metrics(got: _Collected, reference: torch.Tensor, method: str,
             matrix: Tuple[int, int]) -> Dict[str, Dict[str, float]]:
    """``{method: {psnr, ssim}}`` (means over slices, LS intensity match) on the recon grid."""
    ref = torch.from_numpy(np.stack([_crop(r, matrix) for r in reference.numpy()]))
    stacks = {method: got.primary, **got.baselines}
    scores = {}
    for name, images in stacks.items():
        img = torch.from_numpy(np.stack([_crop(np.asarray(i), matrix) for i in images]))
        scores[name] = {k: round(float(v), 4) for k, v in score_slices(img, ref).items()}
    return scores


def _write(series: List[DicomSeries], scan: RawScan, job: VolumeJob, stem: str) -> List[Path]:
    ctx = StudyContext.from_header(scan.header_xml, scan.fov_mm)
    root = job.out / stem
    written: List[Path] = []
    for sr in series:
        name = series_stem(sr)
        if "dicom" in job.outputs:
            written += write_series(root / "dicom" / name, sr, ctx)
        if "png" in job.outputs:
            written.append(write_png(root / "png" / f"{name}.png", sr))
        if "nifti" in job.outputs:
            written.append(write_nifti(root / "nifti" / f"{name}.nii.gz", sr, scan.fov_mm))
    if "ismrmrd" in job.outputs and series:
        written.append(write_ismrmrd_images(root / f"{stem}_images.h5", series,
                                            scan.header_xml, scan.fov_mm))
    return written


def process_file(path: Path, job: VolumeJob, primary: Callable, stem: str,
                 progress: Optional[Callable[[int], Progress]] = None) -> VolumeReport:
    """Reconstruct and write one file; raises ``ContextMRIError`` for bad input.

    ``progress(total_steps)`` returns the sampler progress callback of this volume.
    """
    t0 = time.perf_counter()
    s = job.settings
    report = VolumeReport(file=str(path))
    scan = read_scan(path, anatomy_override=s.anatomy, repetition=s.repetition)
    if job.show_phi:
        from contextmri_core.data.study import parse_study

        study = parse_study(scan.header_xml)
        log.warning("%s: patient %s, ID %s", path.name, study.patient_name, study.patient_id)
    prep = PrepConfig(prewhiten=s.prewhiten, device=s.resolved_device())
    slices, reference = _inputs(scan, job, path, prep)
    n_groups = -(-len(slices) // s.batch_size)
    diffusion = s.method in ("dds", "dps")
    cb = progress(n_groups * s.ensemble * s.steps if diffusion else 0) if progress else None
    got = _reconstruct(slices, scan, job, primary, cb, job.baselines or reference is not None)
    fallbacks = [e for e in got.errors if e is not None]
    report.slices, report.method = len(slices), s.method
    report.fallback_slices = len(fallbacks)
    report.fallback_reason = fallbacks[0] if fallbacks else None
    report.fallback_method = next((m for m, e in zip(got.methods, got.errors) if e), None)
    if reference is not None:
        report.metrics = _metrics(got, reference, s.method, scan.recon_matrix)
    report.outputs = [str(p) for p in _write(_series(scan, job, got, reference), scan, job, stem)]
    report.ok, report.seconds = True, round(time.perf_counter() - t0, 2)
    return report
