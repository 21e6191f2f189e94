"""``contextmri simulate``: a synthetic multi-coil brain data set (ISMRMRD and/or fastMRI .h5).

Deterministic from ``--seed``: subject ``i`` draws from ``SeedSequence([seed, i])`` and its
scan of protocol ``p`` (geometry, contrast kind, protocol, coils, noise) from
``SeedSequence([seed, i, p + 1])``, so the same seed gives byte-identical files and adding
subjects or contrasts does not change the ones already there.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Iterable, List, Tuple

import numpy as np


HELP = "simulate a synthetic multi-coil brain data set (MNI152 anatomy, not patient data)"
SPLITS = ("train", "val", "test")
FORMATS = ("ismrmrd", "fastmri")
DEFAULT_CONTRASTS = "AXT1,AXT1PRE,AXT1POST,AXT2,AXFLAIR,AXPD"
ANNOTATION_COLUMNS = ("file", "slice", "study_level", "x", "y", "width", "height", "label")
logger = logging.getLogger("contextmri.simulate")

_DESCRIPTION = """\
Simulate multi-coil brain scans from ONE averaged anatomy (the MNI152 template that nilearn
ships), varied per subject: head size and shape, a smooth random deformation (ventricles,
folds, head shape change by ~15 %), age-related atrophy (wider sulci and ventricles), optional
white-matter lesions, placement in the scanner. Tissue maps + literature relaxation times +
the sequence's signal equation (so TR/TE/TI/flip really set the contrast), or domain-
randomised tissue intensities (contrast unknown: --domain-random-fraction), head-array coil
sensitivities, bias field, background phase and correlated receiver noise with a noise scan.
Slices: axial, coronal and/or sagittal (--planes), tilted by up to --oblique degrees, at the
pixel spacing, matrix and slice thickness asked for (ranges are drawn per scan); the real
geometry goes into the ISMRMRD header and acquisitions. The template is 1 mm: pixels finer
than that are interpolated and show no finer anatomy. Simulation, not patient data.

Writes OUT/{train,val,test}/{ismrmrd,fastmri}/file_brain_<PROTOCOL>_simNNNNN.h5 (PROTOCOL
named for the plane, e.g. CORT2; domain-randomised scans AXSYNTH<k>), OUT/annotations.csv
(fastMRI+ columns; x/width along phase encode, y/height along readout, pixels of the
reconstruction grid) and OUT/manifest.json (seed, counts, per-file protocol and geometry).
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("simulate", help=HELP, description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--n-subjects", type=int, nargs=3, default=(4, 1, 1),
                   metavar=("TRAIN", "VAL", "TEST"), help="subjects per split (default 4 1 1)")
    p.add_argument("--matrix", type=int, nargs="+", default=[128], metavar="N",
                   help="reconstruction matrix (square): N, or LO HI drawn per scan in steps "
                        "of 16 (default 128)")
    p.add_argument("--fov", type=float, default=240.0,
                   help="field of view in mm when --pixel-spacing is not given (default 240)")
    p.add_argument("--pixel-spacing", type=float, nargs="+", metavar="MM",
                   help="in-plane pixel size: MM, or LO HI drawn per scan; the matrix is then "
                        "drawn among those whose FOV lies in --fov-range")
    p.add_argument("--fov-range", type=float, nargs=2, default=(160.0, 280.0),
                   metavar=("LO", "HI"), help="FOV window (mm) with --pixel-spacing "
                                               "(default 160 280)")
    p.add_argument("--planes", default="axial",
                   help="comma-separated slice planes drawn per scan: axial,coronal,sagittal "
                        "(default axial)")
    p.add_argument("--oblique", type=float, default=0.0, metavar="DEG",
                   help="tilt each stack by U(0, DEG) degrees about a random in-plane axis "
                        "(0..45, default 0)")
    p.add_argument("--slice-thickness", type=float, nargs="+", default=[5.0], metavar="MM",
                   help="slice thickness: MM, or LO HI drawn per scan (default 5); sampled at "
                        "1 mm through the slice (partial volume)")
    p.add_argument("--slice-gap", type=float, default=1.0, help="gap between slices, mm")
    p.add_argument("--domain-random-fraction", type=float, default=0.0, metavar="F",
                   help="fraction of scans with domain-randomised tissue intensities instead "
                        "of their protocol (no contrast/TR/TE/TI/flip in their metadata)")
    p.add_argument("--deformation-strength", type=float, default=1.0,
                   help="scale of the random anatomy (size, shape, deformation); 0 = the "
                        "template itself (default 1)")
    p.add_argument("--atrophy-strength", type=float, default=1.0,
                   help="scale of age-related atrophy; 0 = none (default 1)")
    p.add_argument("--coils", type=int, default=8, help="receive channels (default 8)")
    p.add_argument("--slices", type=int, default=8, help="slices per scan (default 8)")
    p.add_argument("--contrasts", default=DEFAULT_CONTRASTS,
                   help=f"comma-separated protocols (default {DEFAULT_CONTRASTS}; SYNTH = "
                        "domain-randomised); coronal/sagittal scans are renamed COR.../SAG...")
    p.add_argument("--formats", default="ismrmrd,fastmri", help="ismrmrd and/or fastmri")
    p.add_argument("--acceleration", type=int, default=1,
                   help="phase-encode undersampling R with uniform1d (1 = fully sampled)")
    p.add_argument("--calibration", choices=("embedded", "separate"), default="embedded",
                   help="ACS lines inside the imaging lines or acquired separately")
    p.add_argument("--lesion-probability", type=float, default=0.3,
                   help="probability that a subject has white-matter lesions (default 0.3)")
    p.add_argument("--field-strength", type=float, default=3.0, help="B0 in tesla")
    p.add_argument("--snr", type=float, default=40.0,
                   help="mean brain signal / noise std (default 40)")
    p.add_argument("--no-augment", action="store_true",
                   help="place every head identically (no rotation/scale/shift/flip)")
    p.set_defaults(func=run)
    return p


def _split_list(text: str, allowed: Iterable[str], what: str) -> List[str]:
    from contextmri_core.synth.variety import parse_choices

    return parse_choices(text, allowed, what)


def _progress(items: list):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="simulate", unit="scan", leave=False)


def _jobs(counts: Tuple[int, int, int], contrasts: List[str]) -> List[Tuple[str, int, str]]:
    jobs, index = [], 0
    for split, count in zip(SPLITS, counts):
        for _ in range(count):
            jobs += [(split, index, c) for c in contrasts]
            index += 1
    return jobs


class _Subjects:
    """Draws subject ``i`` from ``SeedSequence([seed, i])`` and keeps the last one (the jobs of
    one subject are consecutive; the deformation is the costly part of a subject)."""

    def __init__(self, seed: int, config) -> None:
        self.seed, self.config, self.last = seed, config, None

    def get(self, index: int):
        from contextmri_core.synth.scan import draw_config_subject

        if self.last is None or self.last[0] != index:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
            self.last = (index, draw_config_subject(rng, self.config, index))
        return self.last[1]


def _protocol(contrast: str, slot: int, synth: bool, rng, field_strength_t: float):
    """The job's protocol: drawn, or domain-randomised ``SYNTH<slot>`` (unique per subject)."""
    import dataclasses

    from contextmri_core.synth.protocols import SYNTH, draw_protocol, synthetic_protocol

    if contrast == SYNTH:
        return synthetic_protocol()
    if synth:
        return dataclasses.replace(synthetic_protocol(), name=f"{SYNTH}{slot}")
    return draw_protocol(contrast, rng, field_strength_t)


def _simulate_one(args, config, ranges, subjects: _Subjects, index: int, contrast: str,
                  slot: int):
    from contextmri_core.synth.protocols import PROTOCOL_NAMES
    from contextmri_core.synth.scan import simulate_scan
    from contextmri_core.synth.variety import draw_scan_config, draws_domain_random

    subject = subjects.get(index)
    key = PROTOCOL_NAMES.index(contrast)
    r_proto, r_scan, r_geom, r_kind = np.random.default_rng(
        np.random.SeedSequence([args.seed, index, key + 1])).spawn(4)
    scan_config = draw_scan_config(r_geom, ranges, config)
    synth = draws_domain_random(r_kind, ranges)
    protocol = _protocol(contrast, slot, synth, r_proto, config.field_strength_t)
    return simulate_scan(subject, protocol, scan_config, r_scan)


def _write(scan, out: Path, split: str, formats: List[str], name: str) -> dict:
    from contextmri_core.io.raw.fastmri_writer import write_fastmri
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd

    files = {}
    for fmt in formats:
        target = out / split / fmt / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (write_ismrmrd if fmt == "ismrmrd" else write_fastmri)(target, scan)
        files[fmt] = str(target.relative_to(out))
    return files


def _geometry_record(scan) -> dict:
    g, m = scan.geometry, scan.subject.morphology
    return {
        "plane": g.plane, "slice_plane": g.plane_label, "tilt_deg": g.tilt_deg,
        "read_dir": list(g.read_dir), "phase_dir": list(g.phase_dir),
        "slice_dir": list(g.slice_dir), "matrix": g.matrix,
        "pixel_spacing_mm": g.pixel_spacing_mm, "slice_thickness_mm": g.slice_thickness_mm,
        "positions_mm": [list(p) for p in g.positions_mm],
        "morphology": {"scale_xyz": list(m.scale_xyz), "atrophy": m.atrophy,
                       "thinning_mm": m.thinning_mm, "ventricle_push_mm": m.ventricle_push_mm,
                       "min_jacobian": m.min_jacobian},
    }


def _record(scan, split: str, files: dict) -> dict:
    s = scan.subject
    return {
        "split": split, "files": files, "patient_id": s.patient_id, "age_y": s.age_y,
        "sex": s.sex, "protocol": scan.protocol.to_dict(), "geometry": _geometry_record(scan),
        "placement": {
            "rotation_deg": s.placement.rotation_deg, "scale": s.placement.scale,
            "shift_mm": list(s.placement.shift_mm), "flip_lr": s.placement.flip_lr},
        "pathology": [list(p) for p in scan.pathology], "num_lesions": len(s.lesions),
        "acceleration": scan.plan.acceleration, "calibration": scan.plan.mode,
        "noise_std": scan.noise_std,
    }


def _config(args):
    from contextmri_core.synth.scan import SimConfig

    return SimConfig(matrix=args.matrix[0], num_coils=args.coils, num_slices=args.slices,
                     fov_mm=args.fov, slice_gap_mm=args.slice_gap,
                     field_strength_t=args.field_strength,
                     lesion_probability=args.lesion_probability, augment=not args.no_augment,
                     deformation_strength=args.deformation_strength,
                     atrophy_strength=args.atrophy_strength,
                     snr=args.snr if args.snr > 0 else None, acceleration=args.acceleration,
                     calibration=args.calibration)


def _ranges(args):
    from contextmri_core.synth.orientation import PLANES
    from contextmri_core.synth.variety import ScanRanges, parse_range

    spacing = args.pixel_spacing
    return ScanRanges(
        planes=tuple(_split_list(args.planes.lower(), PLANES, "planes")),
        oblique_max_deg=args.oblique, matrix=parse_range(args.matrix, "matrix", int),
        pixel_spacing_mm=parse_range(spacing, "pixel-spacing") if spacing else None,
        fov_mm=args.fov, fov_range_mm=tuple(args.fov_range),
        slice_thickness_mm=parse_range(args.slice_thickness, "slice-thickness"),
        domain_random_fraction=args.domain_random_fraction)


def run(args: argparse.Namespace) -> int:
    from contextmri_core.io.raw.fastmri_writer import fastmri_name
    from contextmri_core.synth.protocols import PROTOCOL_NAMES

    contrasts = _split_list(args.contrasts.upper(), PROTOCOL_NAMES, "contrasts")
    formats = _split_list(args.formats.lower(), FORMATS, "formats")
    config, ranges = _config(args), _ranges(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    records, rows = [], []
    subjects = _Subjects(args.seed, config)
    for split, index, contrast in _progress(_jobs(tuple(args.n_subjects), contrasts)):
        slot = contrasts.index(contrast) + 1
        scan = _simulate_one(args, config, ranges, subjects, index, contrast, slot)
        name = fastmri_name(scan.protocol.name, index)
        files = _write(scan, out, split, formats, name)
        records.append(_record(scan, split, files))
        rows += [(Path(name).stem, b.slice, "No", b.x, b.y, b.width, b.height, b.label)
                 for b in scan.boxes]
        logger.info("%s %s: %s", split, name, ", ".join(files.values()))
    with open(out / "annotations.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ANNOTATION_COLUMNS)
        writer.writerows(rows)
    manifest = {"seed": args.seed, "counts": dict(zip(SPLITS, args.n_subjects)),
                "contrasts": contrasts, "formats": formats, "config": config.__dict__,
                "ranges": ranges.__dict__,
                "note": "simulated from the MNI152 average anatomy; not patient data",
                "files": records}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    logger.info("wrote %d scans, %d lesion boxes to %s", len(records), len(rows), out)
    return 0
