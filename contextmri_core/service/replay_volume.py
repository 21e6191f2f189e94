"""One raw file through ``contextmri replay``: read, (undersample), reconstruct with fallback,
score, write the series in every asked-for format. The file loop, summary and scale-out live
in ``replay_run``; the flags in ``contextmri_core.cli.replay``."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from contextmri_core.data.grid_limits import GridLimits
from contextmri_core.data.scan import RawScan, SliceData
from contextmri_core.errors import InputFileError
from contextmri_core.io.dicom.writer import DicomSeries, StudyContext, write_series
from contextmri_core.io.images.outputs import (series_stem, write_ismrmrd_images, write_nifti,
                                              write_png)
from contextmri_core.io.publish import staged
from contextmri_core.io.raw.reader import read_scan
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.classical import CLASSICAL
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import PrepConfig, prepare_scan, undersample
from contextmri_core.recon.stream import StreamSettings, batches, reconstruct_groups
from contextmri_core.sampling.dds import Progress
from contextmri_core.service.series import (SeriesMaker, SlicesOut, crop_to, primary_series,
                                            protocol_label, recon_comments)

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
    limits: GridLimits = GridLimits()


@dataclass
class VolumeReport:
    """The result of one file: what was written, how it was reconstructed, its scores."""

    file: str
    ok: bool = False
    error: Optional[str] = None
    output: str = ""  # the folder (under --out) that holds this file's results
    slices: int = 0
    method: str = ""  # what made the images, e.g. "dds" or "sense FALLBACK (2/2)"
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
    """Per-slice results gathered over the batches of one volume, and the baselines."""

    slices: SlicesOut = field(default_factory=SlicesOut)
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
            got.slices.add(out, scan.geometry_of(len(got.slices.images)))
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


def _series(scan: RawScan, job: VolumeJob, got: _Collected,
            reference: Optional[torch.Tensor]) -> List[DicomSeries]:
    """Every series of the volume: primary (+ phase, uncertainty, labelled fallbacks) and,
    when asked, the classical baselines and the fully sampled reference."""
    proto = protocol_label(scan.metadata)
    comments = recon_comments(job.settings, job.model_name, undersample=job.undersample,
                              **got.slices.notes())
    maker = SeriesMaker(got.slices, scan.recon_matrix, proto, comments)
    out = primary_series(maker, job.settings)
    if job.baselines:
        every = list(range(len(got.slices.images)))
        for name, images in got.baselines.items():
            out += maker.make(every, images, BASELINE_SERIES[name], name)
        if reference is not None:
            out += maker.make(every, list(reference.numpy()), BASELINE_SERIES["reference"],
                              "reference")
    return out


def _metrics(got: _Collected, reference: torch.Tensor, method: str,
             matrix: Tuple[int, int]) -> Dict[str, Dict[str, float]]:
    """``{method: {psnr, ssim}}`` (means over slices, LS intensity match) on the recon grid."""
    ref = torch.from_numpy(np.stack([crop_to(r, matrix) for r in reference.numpy()]))
    stacks = {method: got.slices.images, **got.baselines}
    scores = {}
    for name, images in stacks.items():
        img = torch.from_numpy(np.stack([crop_to(np.asarray(i), matrix) for i in images]))
        scores[name] = {k: round(float(v), 4) for k, v in score_slices(img, ref).items()}
    return scores


def _write(series: List[DicomSeries], scan: RawScan, job: VolumeJob, root: Path,
           stem: str) -> List[Path]:
    """Every asked-for format of ``series`` under ``root`` (the staging folder)."""
    ctx = StudyContext.from_header(scan.header_xml, scan.fov_mm)
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


def _publish(series: List[DicomSeries], scan: RawScan, job: VolumeJob, stem: str,
             path: Path) -> List[Path]:
    """Write into a staging folder and publish it whole as ``job.out/stem`` (nothing partial
    is ever left under that name: see ``contextmri_core.io.publish``). ``InputFileError``
    naming the input and the folder when the outputs cannot be written (disk full, ...)."""
    try:
        with staged(job.out, stem) as root:
            written = _write(series, scan, job, root, stem)
    except (OSError, InputFileError) as exc:
        reason = exc.problem if isinstance(exc, InputFileError) else (exc.strerror or str(exc))
        raise InputFileError(path, f"cannot write the results to {job.out / stem} ({reason}); "
                                   f"nothing partial was left there") from None
    return [job.out / stem / p.relative_to(root) for p in written]


def _fallback_facts(report: VolumeReport, got: SlicesOut, primary: str) -> None:
    fallbacks = [e for e in got.errors if e is not None]
    report.method = got.made_by(primary)
    report.fallback_slices = len(fallbacks)
    report.fallback_reason = fallbacks[0] if fallbacks else None
    report.fallback_method = next((m for m, e in zip(got.methods, got.errors) if e), None)


def process_file(path: Path, job: VolumeJob, primary: Callable, stem: str,
                 progress: Optional[Callable[[int], Progress]] = None) -> VolumeReport:
    """Reconstruct and write one file; raises ``ContextMRIError`` for bad input.

    ``progress(total_steps)`` returns the sampler progress callback of this volume. A file
    some slice of which has no usable image even from the fallback is written (labelled)
    but reported as failed.
    """
    t0 = time.perf_counter()
    s = job.settings
    report = VolumeReport(file=str(path), output=stem)
    scan = read_scan(path, anatomy_override=s.anatomy, repetition=s.repetition,
                     limits=job.limits)
    if job.show_phi:
        from contextmri_core.data.study import parse_study

        study = parse_study(scan.header_xml)
        log.warning("%s: patient %s, ID %s", path.name, study.patient_name, study.patient_id)
    prep = PrepConfig(prewhiten=s.prewhiten, device=s.resolved_device(),
                      virtual_coils=s.virtual_coils)
    slices, reference = _inputs(scan, job, path, prep)
    n_groups = -(-len(slices) // s.batch_size)
    diffusion = s.method in ("dds", "dps")
    cb = progress(n_groups * s.ensemble * s.steps if diffusion else 0) if progress else None
    got = _reconstruct(slices, scan, job, primary, cb, job.baselines or reference is not None)
    report.slices = len(slices)
    _fallback_facts(report, got.slices, s.method)
    if reference is not None:
        report.metrics = _metrics(got, reference, s.method, scan.recon_matrix)
    report.outputs = [str(p) for p in _publish(_series(scan, job, got, reference), scan, job,
                                               stem, path)]
    report.seconds = round(time.perf_counter() - t0, 2)
    bad = got.slices.unusable_slices()
    if bad:
        report.error = (f"{path}: no usable image for slice(s) {bad} (written as labelled "
                        f"fallbacks, zero where not finite): {report.fallback_reason}")
    report.ok = not bad
    return report
