"""``contextmri simulate``: a synthetic multi-coil brain data set (ISMRMRD and/or fastMRI .h5).

Deterministic from ``--seed``: subject ``i`` and protocol ``p`` draw from
``SeedSequence([seed, i, p])``, so the same seed gives byte-identical k-space and adding
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

from contextmri_core.errors import ConfigError

HELP = "simulate a synthetic multi-coil brain data set (MNI152 anatomy, not patient data)"
SPLITS = ("train", "val", "test")
FORMATS = ("ismrmrd", "fastmri")
DEFAULT_CONTRASTS = "AXT1,AXT1PRE,AXT1POST,AXT2,AXFLAIR,AXPD"
ANNOTATION_COLUMNS = ("file", "slice", "study_level", "x", "y", "width", "height", "label")
logger = logging.getLogger("contextmri.simulate")

_DESCRIPTION = """\
Simulate axial multi-coil brain scans from ONE averaged anatomy (the MNI152 template that
nilearn ships): tissue maps + literature relaxation times + the sequence's signal equation
(so TR/TE/TI/flip really set the contrast), head-array coil sensitivities, bias field,
background phase and correlated receiver noise with a noise scan. Every subject is the same
brain, moved/scaled/flipped, with optional white-matter lesions -- simulation, not patient data.

Writes OUT/{train,val,test}/{ismrmrd,fastmri}/file_brain_<PROTOCOL>_simNNNNN.h5,
OUT/annotations.csv (fastMRI+ columns; x/width along phase encode, y/height along readout,
pixels of the reconstruction grid) and OUT/manifest.json (seed, counts, per-file protocol).
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("simulate", help=HELP, description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--n-subjects", type=int, nargs=3, default=(4, 1, 1),
                   metavar=("TRAIN", "VAL", "TEST"), help="subjects per split (default 4 1 1)")
    p.add_argument("--matrix", type=int, default=128, help="reconstruction matrix (square)")
    p.add_argument("--coils", type=int, default=8, help="receive channels (default 8)")
    p.add_argument("--slices", type=int, default=8, help="axial slices per scan (default 8)")
    p.add_argument("--contrasts", default=DEFAULT_CONTRASTS,
                   help=f"comma-separated protocols (default {DEFAULT_CONTRASTS})")
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
    items = [t.strip() for t in text.split(",") if t.strip()]
    allowed = tuple(allowed)
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ConfigError(f"--{what} {text!r}: choose from {','.join(allowed)}")
    return items


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


def _simulate_one(args, config, index: int, contrast: str):
    from contextmri_core.synth.protocols import BRAIN_PROTOCOLS, draw_protocol
    from contextmri_core.synth.scan import simulate_scan
    from contextmri_core.synth.subject import draw_subject

    subject = draw_subject(np.random.default_rng(np.random.SeedSequence([args.seed, index])),
                           index, config.num_slices, config.lesion_probability, config.augment,
                           config.slice_thickness_mm, config.slice_gap_mm)
    key = list(BRAIN_PROTOCOLS).index(contrast)
    r_proto, r_scan = np.random.default_rng(
        np.random.SeedSequence([args.seed, index, key + 1])).spawn(2)
    protocol = draw_protocol(contrast, r_proto, config.field_strength_t)
    return simulate_scan(subject, protocol, config, r_scan)


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


def _record(scan, split: str, files: dict) -> dict:
    s = scan.subject
    return {
        "split": split, "files": files, "patient_id": s.patient_id, "age_y": s.age_y,
        "sex": s.sex, "protocol": scan.protocol.to_dict(),
        "slice_positions_mm": list(s.slice_positions_mm), "placement": {
            "rotation_deg": s.placement.rotation_deg, "scale": s.placement.scale,
            "shift_mm": list(s.placement.shift_mm), "flip_lr": s.placement.flip_lr},
        "pathology": [list(p) for p in scan.pathology], "num_lesions": len(s.lesions),
        "acceleration": scan.plan.acceleration, "calibration": scan.plan.mode,
        "noise_std": scan.noise_std,
    }


def _config(args):
    from contextmri_core.synth.scan import SimConfig

    return SimConfig(matrix=args.matrix, num_coils=args.coils, num_slices=args.slices,
                     field_strength_t=args.field_strength,
                     lesion_probability=args.lesion_probability, augment=not args.no_augment,
                     snr=args.snr if args.snr > 0 else None, acceleration=args.acceleration,
                     calibration=args.calibration)


def run(args: argparse.Namespace) -> int:
    from contextmri_core.io.raw.fastmri_writer import fastmri_name
    from contextmri_core.synth.protocols import BRAIN_PROTOCOLS

    contrasts = _split_list(args.contrasts.upper(), BRAIN_PROTOCOLS, "contrasts")
    formats = _split_list(args.formats.lower(), FORMATS, "formats")
    config = _config(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    records, rows = [], []
    jobs = _jobs(tuple(args.n_subjects), contrasts)
    for split, index, contrast in _progress(jobs):
        scan = _simulate_one(args, config, index, contrast)
        name = fastmri_name(contrast, index)
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
                "note": "simulated from the MNI152 average anatomy; not patient data",
                "files": records}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    logger.info("wrote %d scans, %d lesion boxes to %s", len(records), len(rows), out)
    return 0
