"""``python -m training.prepare_synthetic OUT_DIR --seed S --n-subjects N``: synthetic training
shards straight from the simulator (noise-free truth images; no k-space, noise or ESPIRiT).

Per subject (``contextmri_core.synth.truth_set``): draw the subject (anatomy deformation,
atrophy, lesions, placement), split its ``--slices-per-subject`` slices into scans of at most
``--slices-per-scan`` slices, draw each scan's plane, tilt, pixel spacing, matrix, slice
thickness, coil count, field strength and protocol (or domain-randomised intensities), render
the truth on the scan's native grid, normalise by the 99th percentile of |x| and write one
shard per scan: OUT/s<seed>_sim<index>_g<scan>.safetensors (one matrix per shard). Subject
``i`` is the subject ``contextmri simulate --seed S`` draws as number ``i``: use other seeds
for held-out data. Parallel over subjects (spawn pool), resumable (existing shards are kept),
progress on stderr and a summary (also OUT/synthetic_summary.json) at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import List, Optional, Tuple

log = logging.getLogger("training.prepare_synthetic")

_DEFAULTS = {"planes": "axial,coronal,sagittal", "oblique": 20.0, "pixel_spacing": (0.5, 2.0),
             "matrix": (128, 320), "slice_thickness": (1.0, 6.0), "domain_random_fraction": 0.25}


def _parser() -> argparse.ArgumentParser:
    from contextmri_core.synth.protocols import BRAIN_PROTOCOLS

    d = _DEFAULTS
    p = argparse.ArgumentParser(prog="python -m training.prepare_synthetic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="directory for the shards (created)")
    p.add_argument("--seed", type=int, required=True, help="master seed of the subjects")
    p.add_argument("--n-subjects", type=int, required=True, help="subjects 0..N-1")
    p.add_argument("--first-subject", type=int, default=0,
                   help="start at subject number FIRST (to extend a set; default 0)")
    p.add_argument("--slices-per-subject", type=int, default=12, help="default 12")
    p.add_argument("--slices-per-scan", type=int, default=4,
                   help="slices per scan (= per shard; default 4)")
    p.add_argument("--workers", type=int, default=2,
                   help="parallel processes (default 2; 0 = in this process)")
    p.add_argument("--planes", default=d["planes"], help=f"default {d['planes']}")
    p.add_argument("--oblique", type=float, default=d["oblique"], metavar="DEG",
                   help=f"max stack tilt in degrees (default {d['oblique']:g})")
    p.add_argument("--pixel-spacing", type=float, nargs="+", default=d["pixel_spacing"],
                   metavar="MM", help="MM or LO HI (default 0.5 2.0)")
    p.add_argument("--fov-range", type=float, nargs=2, default=(160.0, 280.0),
                   metavar=("LO", "HI"), help="FOV window for the matrix draw (default 160 280)")
    p.add_argument("--matrix", type=int, nargs="+", default=d["matrix"], metavar="N",
                   help="N or LO HI (default 128 320)")
    p.add_argument("--slice-thickness", type=float, nargs="+", default=d["slice_thickness"],
                   metavar="MM", help="MM or LO HI (default 1 6)")
    p.add_argument("--slice-gap", type=float, default=1.0, help="gap in the whole-brain stack")
    p.add_argument("--domain-random-fraction", type=float, default=d["domain_random_fraction"],
                   metavar="F", help="fraction of domain-randomised scans (default 0.25)")
    p.add_argument("--contrasts", default=",".join(BRAIN_PROTOCOLS),
                   help="protocols of the other scans (default all)")
    p.add_argument("--coils", type=int, nargs="+", default=[8, 12, 16, 20, 32],
                   help="coil counts drawn per scan (receive shading; default 8 12 16 20 32)")
    p.add_argument("--field-strength", type=float, nargs="+", default=[1.5, 3.0],
                   help="B0 values drawn per scan (default 1.5 3)")
    p.add_argument("--lesion-probability", type=float, default=0.3)
    p.add_argument("--deformation-strength", type=float, default=1.0)
    p.add_argument("--atrophy-strength", type=float, default=1.0)
    return p


def build_config(args: argparse.Namespace):
    """``TruthSetConfig`` from the parsed flags (``ConfigError`` naming a bad one)."""
    from contextmri_core.synth.orientation import PLANES
    from contextmri_core.synth.protocols import BRAIN_PROTOCOLS
    from contextmri_core.synth.scan import SimConfig
    from contextmri_core.synth.truth_set import TruthSetConfig
    from contextmri_core.synth.variety import ScanRanges, parse_choices, parse_range

    ranges = ScanRanges(
        planes=tuple(parse_choices(args.planes.lower(), PLANES, "planes")),
        oblique_max_deg=args.oblique, matrix=parse_range(args.matrix, "matrix", int),
        pixel_spacing_mm=parse_range(args.pixel_spacing, "pixel-spacing"),
        fov_range_mm=tuple(args.fov_range),
        slice_thickness_mm=parse_range(args.slice_thickness, "slice-thickness"),
        domain_random_fraction=args.domain_random_fraction)
    base = SimConfig(slice_gap_mm=args.slice_gap, lesion_probability=args.lesion_probability,
                     deformation_strength=args.deformation_strength,
                     atrophy_strength=args.atrophy_strength, snr=None)
    return TruthSetConfig(
        ranges=ranges, base=base, slices_per_subject=args.slices_per_subject,
        slices_per_scan=args.slices_per_scan,
        contrasts=tuple(parse_choices(args.contrasts.upper(), BRAIN_PROTOCOLS, "contrasts")),
        coil_counts=tuple(args.coils), field_strengths_t=tuple(args.field_strength))


def prepare_subject(out: Path, seed: int, index: int, cfg) -> Tuple[List[dict], int]:
    """Write the missing shards of subject ``index``; returns (group infos written, skipped)."""
    import torch

    from contextmri_core.io.models.shards import Shard, write_shard
    from contextmri_core.synth import truth_set as ts

    torch.set_num_threads(1)
    todo = [g for g in ts.group_ids(cfg) if not (out / ts.shard_name(seed, index, g)).exists()]
    if not todo:
        return [], cfg.groups_per_subject
    subject = ts.draw_truth_subject(seed, index, cfg)
    infos = []
    for g in todo:
        grp = ts.render_group(seed, index, subject, g, cfg)
        write_shard(out / ts.shard_name(seed, index, g),
                    Shard(x=grp.x, scale=grp.scale, metadata=grp.metadata, prompts=grp.prompts,
                          source=ts.source_name(seed, index, g), slices=grp.slices))
        infos.append(grp.info)
    return infos, cfg.groups_per_subject - len(todo)


def _job(job) -> Tuple[int, List[dict], int, float, str]:
    out, seed, index, cfg = job
    t0 = time.perf_counter()
    try:
        infos, skipped = prepare_subject(Path(out), seed, index, cfg)
        return index, infos, skipped, time.perf_counter() - t0, ""
    except Exception as exc:  # noqa: BLE001 - one failed subject must not stop the others
        return index, [], 0, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _results(jobs: list, workers: int):
    """Job results as they finish: a spawn pool of ``workers``, or in order in this process."""
    if workers <= 0:
        yield (_job(j) for j in jobs)
        return
    with mp.get_context("spawn").Pool(workers) as pool:
        yield pool.imap_unordered(_job, jobs)


def summarise(infos: List[dict], seconds: float, failed: int, skipped: int) -> dict:
    """Counts per plane / matrix / contrast kind, slices and throughput."""
    slices = sum(i["slices"] for i in infos)
    return {
        "shards_written": len(infos), "shards_skipped": skipped, "subjects_failed": failed,
        "slices_written": slices, "seconds": round(seconds, 1),
        "seconds_per_slice_wall": round(seconds / slices, 3) if slices else None,
        "planes": dict(Counter(i["slice_plane"] for i in infos)),
        "matrices": dict(sorted(Counter(str(i["matrix"]) for i in infos).items())),
        "domain_randomised_shards": sum(bool(i["domain_randomised"]) for i in infos),
        "protocols": dict(Counter(i["protocol"] for i in infos)),
    }


def _write_manifest(out: Path) -> None:
    """The folder's ``manifest.json`` (``io.models.shard_manifest``), read by ``training.fit``."""
    from contextmri_core.io.models.shard_manifest import write_manifest

    write_manifest(out)
    log.info("wrote the shard manifest of %s", out)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    cfg = build_config(args)
    args.out.mkdir(parents=True, exist_ok=True)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one thread per worker: the workers are the parallelism
    indices = range(args.first_subject, args.first_subject + args.n_subjects)
    jobs = [(str(args.out), args.seed, i, cfg) for i in indices]
    log.info("%d subjects x %d slices (%d scans each) -> %s", len(jobs), cfg.slices_per_subject,
             cfg.groups_per_subject, args.out)
    infos, failed, skipped, t0 = [], [], 0, time.perf_counter()
    with _results(jobs, args.workers) as results:
        for k, (index, got, skip, sec, err) in enumerate(results, 1):
            skipped += skip
            if err:
                failed.append((index, err))
                log.warning("[%d/%d] sim%05d FAILED: %s", k, len(jobs), index, err)
                continue
            infos += got
            log.info("[%d/%d] sim%05d: %d shards (%d slices) in %.1f s%s", k, len(jobs), index,
                     len(got), sum(i["slices"] for i in got), sec,
                     f", {skip} already there" if skip else "")
    summary = summarise(infos, time.perf_counter() - t0, len(failed), skipped)
    (args.out / "synthetic_summary.json").write_text(json.dumps(summary, indent=1))
    log.info("summary: %s", json.dumps(summary))
    for index, err in failed:
        log.error("failed: sim%05d: %s", index, err)
    _write_manifest(args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
