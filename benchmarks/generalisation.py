"""Generalisation of the prior to anatomy, planes and pixel sizes it never saw: held-out
simulated subjects in all three planes at 256x256 (0.8-1.0 mm) and 192x192 (1.2 mm), every
contrast, three masks; DDS (new and old default model) against zero-filled, our SENSE and
L1-wavelet, and BART ``pics -l1`` / ``-l2`` with BART's own ``ecalib`` maps.

    .venv/bin/python benchmarks/generalisation.py [--out benchmarks/results/generalisation]
        [--seeds 5] [--old-seeds 2] [--steps 50] [--cases ax256,cor256] [--quick]

Held out: subjects from master seeds 7000+ (training used ``prepare_synthetic --seed 0``,
validation ``--seed 1``), each deformed, scaled and atrophied by its own draw; the case table
``CASES`` fixes plane, matrix, pixel spacing and protocol. Each case is simulated as an
ISMRMRD file (8 coils, SNR 40, slice thickness 3 mm) and read back like a scanner file; the
reference is the simulation's noise-free truth image, scored over the whole image and inside
the head (tissue fraction > 0.5), after a least-squares intensity match of magnitudes.

Per case and mask: zero-filled, SENSE, L1-wavelet, BART pics -l1 / -l2; DDS with the new model
at CFG 0, 1, 2 over ``--seeds`` sampler seeds; the ensemble = mean of the CFG 1 samples;
the old default model (from git history) at CFG 1 over ``--old-seeds`` seeds; at uniform1d x8
the metadata-swap test (CFG 1 with a wrong contrast, plane or pixel spacing, same seeds).
Rows go to OUT/results.csv as they are computed; a rerun skips rows already there (resume).
The report (``benchmarks/generalisation_report.py``) writes OUT/generalisation.md, per-mask
figures and OUT/summary.json; the LAST printed line is ``generalisation ...`` with the targets.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.bart import BART_METHODS
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
from contextmri_core.io.raw.reader import read_scan
from contextmri_core.metrics import psnr, ssim
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.physics.masks import make_mask
from contextmri_core.recon.classical import CLASSICAL
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.recon.prepare import prepare_slices, undersample
from contextmri_core.sampling.dds import DDSConfig

log = logging.getLogger("benchmarks.generalisation")
ROOT = Path(__file__).resolve().parents[1]
#: The last commit whose shipped default model is the old one (one plane, one pixel size).
OLD_MODEL_COMMIT = "38fed14"
OLD_MODEL_FILES = ("contextmri.yaml", "unet.safetensors", "encoder.safetensors")
FIELDS = ("case", "plane", "matrix", "spacing_mm", "contrast", "mask", "method", "seed",
          "psnr", "ssim", "psnr_head", "ssim_head", "seconds")


@dataclass(frozen=True)
class Case:
    """One held-out slice: ``protocol`` is drawn in ``plane`` (renamed, e.g. COR T1)."""

    name: str
    plane: str
    matrix: int
    spacing_mm: float
    protocol: str
    seed: int


CASES: Tuple[Case, ...] = (
    Case("ax256", "axial", 256, 0.90, "AXT2", 7001),
    Case("cor256", "coronal", 256, 1.00, "AXT1", 7002),
    Case("sag256", "sagittal", 256, 0.80, "AXFLAIR", 7003),
    Case("ax192", "axial", 192, 1.20, "AXPD", 7004),
    Case("cor192", "coronal", 192, 1.20, "AXT1POST", 7005),
    Case("sag192", "sagittal", 192, 1.20, "AXT1PRE", 7006),
)
MASKS = ("uniform1d:4", "uniform1d:8", "poisson2d:8")
SWAP_MASK = "uniform1d:8"
WRONG_CONTRAST = {"T1": "T2", "T1PRE": "T2", "T1POST": "FLAIR", "T2": "T1", "FLAIR": "T1",
                  "PD": "FLAIR", None: "T2"}
WRONG_PLANE = {"axial": "sagittal", "coronal": "axial", "sagittal": "coronal",
               "oblique": "axial", None: "axial"}


def mask_spec(spec: str, matrix: int) -> str:
    """ContextMRI's centres (x4: 8 %, x8: 4 %), widened to the 8 lines ESPIRiT needs (x8 at
    192 keeps 8 lines, 4.2 %; at 256 4 % is 10 lines)."""
    kind, acc = spec.split(":")[:2]
    if kind != "uniform1d":
        return spec
    cf = 0.08 if acc == "4" else 0.04
    return f"{kind}:{acc}:{max(cf, 8.0 / matrix + 1e-6):.4f}"


def wrong(meta: ScanMetadata, what: str) -> ScanMetadata:
    """``meta`` with one wrong field: contrast, plane or pixel spacing (x2)."""
    if what == "contrast":
        return dataclasses.replace(meta, contrast=WRONG_CONTRAST[meta.contrast])
    if what == "plane":
        return dataclasses.replace(meta, slice_plane=WRONG_PLANE[meta.slice_plane])
    return dataclasses.replace(meta, pixel_spacing_mm=2.0 * (meta.pixel_spacing_mm or 1.0))


def old_model(dest: Path) -> Path:
    """The previous shipped default model, extracted from git history (``OLD_MODEL_COMMIT``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in OLD_MODEL_FILES:
        blob = subprocess.run(["git", "show", f"{OLD_MODEL_COMMIT}:contextmri_core/models/default/{name}"],
                              cwd=ROOT, capture_output=True, check=True).stdout
        (dest / name).write_bytes(blob)
    return dest


def simulate_case(case: Case, workdir: Path):
    """(ISMRMRD file read back, truth image (ny, nx) complex, head mask (ny, nx) bool)."""
    from contextmri_core.synth.scan import SimConfig, simulate

    cfg = SimConfig(matrix=case.matrix, pixel_spacing_mm=case.spacing_mm, plane=case.plane,
                    num_coils=8, num_slices=1, slice_thickness_mm=3.0, snr=40.0)
    sim = simulate(case.seed, case.protocol, cfg, index=case.seed)
    path = write_ismrmrd(workdir / f"heldout_{case.name}.h5", sim)
    head = torch.from_numpy(sim.tissue[0].sum(axis=0) > 0.5)
    return read_scan(path), torch.from_numpy(sim.image[0]), head


def score(image: torch.Tensor, truth: torch.Tensor, head: torch.Tensor) -> Dict[str, float]:
    img = image.detach().cpu()
    return {"psnr": psnr(img, truth), "ssim": ssim(img, truth),
            "psnr_head": psnr(img, truth, head), "ssim_head": ssim(img, truth, head)}


class Results:
    """results.csv, appended row by row; ``done`` says what a rerun may skip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: List[dict] = []
        if path.exists():
            with open(path, newline="") as fh:
                self.rows = list(csv.DictReader(fh))
        self._keys = {self.key(r) for r in self.rows}

    @staticmethod
    def key(r: dict) -> tuple:
        return (r["case"], r["mask"], r["method"], str(r["seed"]))

    def done(self, case: str, mask: str, method: str, seed) -> bool:
        return (case, mask, method, str(seed)) in self._keys

    def add(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.rows.append({k: str(v) for k, v in row.items()})
        self._keys.add(self.key(row))


def expected(args, spec: str) -> List[Tuple[str, int]]:
    """Every (method, seed) row of one case and mask."""
    rows = [(name, 0) for name in list(CLASSICAL) + list(BART_METHODS)]
    rows += [(name, s) for name, _, _, s, _ in dds_jobs(args, spec)]
    if 1.0 in args.guidances and args.seeds > 0:
        rows.append((f"dds_cfg1_ens{args.seeds}", 0))
    return rows


def dds_jobs(args, spec: str) -> Iterator[Tuple[str, str, float, int, Optional[str]]]:
    """(method, model "new"/"old", guidance, seed, wrong field or None) per DDS sample."""
    for g in args.guidances:
        for s in range(args.seeds):
            yield f"dds_cfg{g:g}", "new", g, s, None
    for s in range(args.old_seeds):
        yield "old_dds_cfg1", "old", 1.0, s, None
    if spec == SWAP_MASK:
        swap_seeds = getattr(args, "swap_seeds", None)
        swap_seeds = args.seeds if swap_seeds is None else swap_seeds
        for field in ("contrast", "plane", "spacing"):
            for s in range(swap_seeds):
                yield f"swap_{field}", "new", 1.0, s, field


def run_mask(case: Case, spec: str, sl, scan, truth, head, args, models, results) -> dict:
    """Every method on one case and mask; rows not yet in ``results`` are added. Returns the
    images (first seed of each method) for the figure."""
    mask = make_mask(mask_spec(spec, case.matrix), sl.mask.shape, case.seed)
    batch = prepare_slices([undersample(sl, mask)], scan.noise)
    base = {"case": case.name, "plane": case.plane, "matrix": case.matrix,
            "spacing_mm": case.spacing_mm, "contrast": sl.metadata.contrast, "mask": spec}
    images = {"reference": truth[None]}

    def record(method: str, seed: int, image: torch.Tensor, seconds: float) -> None:
        images.setdefault(method, image)
        if not results.done(case.name, spec, method, seed):
            scores = {k: round(v, 4) for k, v in score(image[0], truth, head).items()}
            results.add({**base, "method": method, "seed": seed, **scores,
                         "seconds": round(seconds, 2)})

    for name, method in {**CLASSICAL, **BART_METHODS}.items():
        rec = method() if isinstance(method, type) else method
        t0 = time.perf_counter()
        record(name, 0, rec(batch.kspace, batch.mask, batch.maps, batch.metadata).image,
               time.perf_counter() - t0)
    cfg1 = []
    ens_done = results.done(case.name, spec, f"dds_cfg1_ens{args.seeds}", 0)
    for name, which, g, s, field in dds_jobs(args, spec):
        if results.done(case.name, spec, name, s) and (name != "dds_cfg1" or ens_done):
            continue  # resumed: a row already there is not sampled again
        meta = [wrong(m, field) if field else m for m in batch.metadata]
        t0 = time.perf_counter()
        image = models[which].with_config(guidance=g, seed=s)(
            batch.kspace, batch.mask, batch.maps, meta).image
        record(name, s, image, time.perf_counter() - t0)
        log.info("%s %s %-14s seed %d: PSNR head %.2f", case.name, spec, name, s,
                 psnr(image[0].cpu(), truth, head))
        if name == "dds_cfg1":
            cfg1.append(image)
    if cfg1:
        record(f"dds_cfg1_ens{len(cfg1)}", 0, torch.stack(cfg1).mean(dim=0), 0.0)
    return {k: v[0].cpu() for k, v in images.items()}


def run_case(case: Case, args, models, results: Results, workdir: Path) -> None:
    """All masks of one case; (case, mask) pairs whose rows are all there are skipped."""
    todo = [spec for spec in args.masks
            if not all(results.done(case.name, spec, m, s) for m, s in expected(args, spec))]
    if not todo:
        return
    scan, truth, head = simulate_case(case, workdir)
    for spec in todo:
        images = run_mask(case, spec, scan.slices[0], scan, truth, head, args, models, results)
        if case.name == args.figure_case:
            torch.save(images, args.out / f"figure_{spec.replace(':', '_')}.pt")


def build_models(args, workdir: Path) -> Dict[str, DiffusionReconstructor]:
    cfg = DiffusionReconConfig(dds=DDSConfig(steps=args.steps), batch_size=1)
    models = {"new": DiffusionReconstructor(load_prior(args.model, device=args.device), cfg,
                                            device=args.device)}
    if args.old_seeds > 0:
        models["old"] = DiffusionReconstructor(
            load_prior(args.old_model or old_model(workdir / "old_model"), device=args.device),
            cfg, device=args.device)
    return models


def _list(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/generalisation")
    p.add_argument("--cases", type=_list, default=[c.name for c in CASES],
                   help="comma-separated case names (default all: "
                        + ",".join(c.name for c in CASES) + ")")
    p.add_argument("--masks", type=_list, default=list(MASKS), help="default " + ",".join(MASKS))
    p.add_argument("--seeds", type=int, default=5, help="sampler seeds per DDS setting (5)")
    p.add_argument("--swap-seeds", type=int, default=None,
                   help="sampler seeds of each metadata-swap setting (default: --seeds)")
    p.add_argument("--old-seeds", type=int, default=2, help="seeds for the old model (2; 0 skips)")
    p.add_argument("--guidances", type=lambda s: [float(g) for g in _list(s)], default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=50, help="DDS steps (default 50, as replay)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--old-model", type=Path, default=None,
                   help=f"old default model (default: extracted from git {OLD_MODEL_COMMIT})")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--figure-case", default="cor256", help="case shown in the figures")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 case, 1 mask, 2 seeds, 3 steps, into OUT/quick")
    args = p.parse_args(argv)
    if args.quick:
        args.cases, args.masks, args.seeds, args.old_seeds, args.steps = (
            ["ax192"], [SWAP_MASK], 2, 1, 3)
        args.out = args.out / "quick"
        args.figure_case = "ax192"
    unknown = set(args.cases) - {c.name for c in CASES}
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    from benchmarks.generalisation_report import report

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results, t0 = Results(args.out / "results.csv"), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="generalisation_") as tmp:
        models = build_models(args, Path(tmp))
        for case in (c for c in CASES if c.name in args.cases):
            log.info("case %s: %s %dx%d at %.2f mm, %s", case.name, case.plane, case.matrix,
                     case.matrix, case.spacing_mm, case.protocol)
            run_case(case, args, models, results, Path(tmp))
    print(report(results.rows, args, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
