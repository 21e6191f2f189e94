"""Reconstruction quality on held-out simulated brain scans: DDS (unconditional, CFG 1-3 and a
5-sample ensemble, shipped default model) against zero-filled, SENSE, our L1-wavelet and BART
``pics -l1 -r 0.01`` / ``pics -l2`` (BART's own ``ecalib -m1 -k K -r NX:NY:1`` maps, the
kernel K shrunk along a narrow ACS block by the same rule as our ESPIRiT).

    .venv/bin/python benchmarks/quality.py [--out benchmarks/results/quality] [--quick] ...

Default run (6 scans x 4 masks x 1 slice, 50 DDS steps): ~30 min on 2 CPU cores (per slice:
DDS ~6 s at CFG 0/1, ~12 s at CFG >= 2, ~35 s for the ensemble; classical + BART ~2 s).

Scans: one simulated subject per contrast (matrix 128, 8 coils, 8 slices, as in training),
seed MASTER+i (default 1000+i) via ``contextmri_core.synth.scan.simulate``, written as ISMRMRD
and read back with ``read_scan`` like scanner files; the central ``--slices-per-scan`` slices
are scored. The default model was trained on ``contextmri simulate --seed 0`` data, so these
scans are held out (AXT1PRE was not a training contrast: marked with a dagger).

Per scan and mask (one mask per scan, seed MASTER+i): reference = MVUE of the fully sampled
data with ESPIRiT maps from it; inputs = retrospective undersampling + ESPIRiT maps from the
ACS that remain (BART calibrates itself). Scores: PSNR/SSIM of magnitudes after a
least-squares intensity match (``score_slices``). Masks whose fully sampled centre is too
narrow for ESPIRiT (< 8 lines) are refused up front: at matrix 128 ContextMRI's uniform1d:8
(centre fraction 0.04) keeps 5 lines, so the default x8 mask is ``uniform1d:8:0.0625``.

Writes OUT/quality.md (a table per mask), OUT/results.csv (scan x slice x mask x method, with
seconds per slice), OUT/figure_<mask>.png (one slice: reconstructions over |error| x5) and
OUT/bart_check.json (BART zero-filled image vs ours). The LAST printed line is
``dds_vs_bart_l1_psnr_db MASK=+x.xx ...`` (DDS CFG 1 minus BART pics -l1, overall PSNR).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.bart import BART_METHODS, describe, zero_filled_check
from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.io.images.png import contact_sheet
from contextmri_core.io.raw.reader import read_scan
from contextmri_core.metrics import intensity_match
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.physics.calibration import calibration_box
from contextmri_core.physics.coils import MIN_CALIBRATION_LINES
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.classical import CLASSICAL
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import prepare_slices, undersample
from contextmri_core.sampling.dds import DDSConfig

log = logging.getLogger("benchmarks.quality")

CONTRASTS = ("AXT1", "AXT1PRE", "AXT1POST", "AXT2", "AXFLAIR", "AXPD")
NOT_IN_TRAINING = frozenset({"AXT1PRE"})
MASKS = ("uniform1d:4", "uniform1d:8:0.0625", "poisson2d:8", "poisson2d:15")
FIGURE_CONTRAST = "AXT2"
NUM_SLICES = 8  # as the default model's training scans
ERROR_GAIN = 5.0


def _list(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def check_masks(masks: Sequence[str], matrix: int, seed: int) -> None:
    """Refuse masks whose fully sampled centre is too small for ESPIRiT (ours and BART's)."""
    for spec in masks:
        rows, cols = calibration_box(make_mask(spec, (matrix, matrix), seed) > 0)
        lines = min(rows.stop - rows.start, cols.stop - cols.start)
        if lines < MIN_CALIBRATION_LINES:
            raise SystemExit(f"mask {spec}: only {lines} fully sampled centre lines at matrix "
                             f"{matrix}; ESPIRiT needs >= {MIN_CALIBRATION_LINES} (give a centre "
                             f"fraction, e.g. {spec.split(':')[0]}:{spec.split(':')[1]}:0.0625)")


def simulate_scans(contrasts: Sequence[str], workdir: Path, seed: int, matrix: int) -> List[Path]:
    """One ISMRMRD file per contrast: subject/protocol/noise from seed ``seed + i``."""
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate

    cfg = SimConfig(matrix=matrix, num_coils=8, num_slices=NUM_SLICES)
    paths = []
    for i, contrast in enumerate(contrasts):
        t0 = time.perf_counter()
        path = write_ismrmrd(workdir / f"heldout_{seed + i}_{contrast}.h5",
                             simulate(seed + i, contrast, cfg, index=i))
        log.info("simulated %s (seed %d) in %.1f s", path.name, seed + i, time.perf_counter() - t0)
        paths.append(path)
    return paths


def build_methods(args: argparse.Namespace) -> Dict[str, object]:
    """Every method by name, all with the shared reconstructor signature."""
    methods: Dict[str, object] = {name: cls() for name, cls in CLASSICAL.items()}
    methods.update(BART_METHODS)
    prior = load_prior(args.model, device=args.device)
    base = DiffusionReconstructor(prior, DiffusionReconConfig(
        dds=DDSConfig(steps=args.steps), seed=args.seed, batch_size=args.batch_size),
        device=args.device)
    for g in args.guidances:
        methods[f"dds_cfg{g:g}"] = base.with_config(guidance=g)
    if args.ensemble > 0:
        methods[f"dds_cfg1_ens{args.ensemble}"] = base.with_config(
            guidance=1.0, ensemble_size=args.ensemble)
    return methods


def evaluate_scan(path: Path, index: int, methods: Dict[str, object], args) -> Tuple[list, dict]:
    """Rows for every slice x mask x method of one scan; figure images ``{mask: {name: img}}``
    (first scored slice) and BART checks ``{mask: {...}}``."""
    scan = read_scan(path)
    start = max(len(scan.slices) // 2 - args.slices_per_scan // 2, 0)
    picked = list(range(len(scan.slices)))[start:start + args.slices_per_scan]
    slices = [scan.slices[i] for i in picked]
    full = prepare_slices(slices, scan.noise)
    ref = mvue(full.kspace, full.maps)
    contrast = path.stem.split("_")[-1]
    rows, figures, checks = [], {}, {}
    for spec in args.masks:
        mask = make_mask(spec, slices[0].mask.shape, args.seed + index)
        batch = prepare_slices([undersample(s, mask) for s in slices], scan.noise)
        checks[spec] = zero_filled_check(batch.kspace, batch.mask)
        images = {"reference": ref}
        for name, method in methods.items():
            t0 = time.perf_counter()
            images[name] = method(batch.kspace, batch.mask, batch.maps, batch.metadata).image
            seconds = (time.perf_counter() - t0) / len(slices)
            for j, sl in enumerate(picked):
                score = score_slices(images[name][j:j + 1], ref[j:j + 1])
                rows.append({"scan": path.name, "contrast": contrast,
                             "in_training": contrast not in NOT_IN_TRAINING, "slice": sl,
                             "mask": spec, "method": name, "psnr": round(score["psnr"], 3),
                             "ssim": round(score["ssim"], 4), "seconds": round(seconds, 2)})
            mean = score_slices(images[name], ref)
            log.info("%s %s %-16s PSNR %6.2f SSIM %.3f  %.1f s/slice", contrast, spec, name,
                     mean["psnr"], mean["ssim"], seconds)
        figures[spec] = {k: v[0].cpu() for k, v in images.items()}
    return rows, {"figures": figures, "checks": checks, "contrast": contrast}


def summarise(rows: List[dict]) -> Dict[str, Dict[str, Dict[str, Tuple[float, float, int]]]]:
    """``{mask: {method: {contrast|"overall": (mean PSNR, mean SSIM, n slices)}}}``."""
    acc: Dict[tuple, List[dict]] = defaultdict(list)
    for r in rows:
        acc[(r["mask"], r["method"], r["contrast"])].append(r)
        acc[(r["mask"], r["method"], "overall")].append(r)
    out: Dict[str, Dict[str, Dict[str, Tuple[float, float, int]]]] = {}
    for (mask, method, col), rs in acc.items():
        mean = (float(np.mean([r["psnr"] for r in rs])), float(np.mean([r["ssim"] for r in rs])))
        out.setdefault(mask, {}).setdefault(method, {})[col] = (*mean, len(rs))
    return out


def _label(contrast: str) -> str:
    return contrast + (" †" if contrast in NOT_IN_TRAINING else "")


def mask_table(per_method: Dict[str, Dict[str, tuple]], contrasts: Sequence[str]) -> str:
    """Markdown: rows methods, columns contrasts + overall, cells ``PSNR / SSIM``."""
    cols = list(contrasts) + ["overall"]
    lines = ["| method | " + " | ".join(_label(c) for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for method, cells in per_method.items():
        vals = [f"{cells[c][0]:.2f} / {cells[c][1]:.3f}" if c in cells else "-" for c in cols]
        lines.append(f"| {method} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def overall_table(summary: dict) -> str:
    """Plain text: rows methods, columns masks, overall ``PSNR/SSIM``."""
    masks = list(summary)
    methods = list(next(iter(summary.values())))
    head = f"{'method':<18}" + "".join(f"{m:>22}" for m in masks)
    body = [f"{name:<18}" + "".join(
        f"{summary[m][name]['overall'][0]:>13.2f} / {summary[m][name]['overall'][1]:.3f}"
        for m in masks) for name in methods]
    return "\n".join([head] + body)


def final_line(summary: dict) -> str:
    """``dds_vs_bart_l1_psnr_db MASK=+x.xx ...`` (DDS CFG 1 minus BART pics -l1, overall)."""
    parts = []
    for mask, per_method in summary.items():
        if "dds_cfg1" in per_method and "bart_pics_l1" in per_method:
            diff = per_method["dds_cfg1"]["overall"][0] - per_method["bart_pics_l1"]["overall"][0]
            parts.append(f"{mask}={diff:+.2f}")
    return "dds_vs_bart_l1_psnr_db " + (" ".join(parts) or "n/a")


def header(args, contrasts: Sequence[str], wall_s: float, checks: dict) -> str:
    """The Markdown preamble: data, seeds, settings, model, machine, BART check."""
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (
        f"{platform.machine()} CPU, {os.cpu_count()} cores, "
        f"torch {torch.get_num_threads()} threads")
    cfgs = ", ".join(f"{g:g}" for g in args.guidances)
    worst = min(c["corr"] for c in checks.values())
    return "\n".join([
        "# Reconstruction quality on held-out simulated brain scans", "",
        f"- Scans: one simulated subject per contrast ({', '.join(contrasts)}), matrix "
        f"{args.matrix}, 8 coils, {NUM_SLICES} slices; scored: the central {args.slices_per_scan} "
        f"slice(s) per scan. Scan and mask seeds {args.seed}+i (i = contrast index); DDS seed "
        f"{args.seed}.",
        "- Held out: the default model was trained on `contextmri simulate --seed 0` scans "
        "(SeedSequence([0, subject, contrast])); these come from `simulate(seed)` with seeds "
        f"{args.seed}.., so no training scan repeats. All simulated subjects share one averaged "
        "anatomy (augmented): held-out scans, not unseen anatomy. † = contrast not in the "
        "training set.",
        "- Reference: fully sampled MVUE (ESPIRiT maps from the full data). Scores: PSNR (dB) / "
        "SSIM of magnitudes after a least-squares intensity match, mean over slices. Masks: "
        f"{', '.join(args.masks)} (ContextMRI's uniform1d:8 keeps 5 centre lines at matrix 128, "
        "too few for ESPIRiT: hence uniform1d:8:0.0625, 8 lines, still 16 of 128 lines).",
        f"- DDS: model `{args.model}`, {args.steps} steps, CFG {cfgs}; ensemble: "
        f"{args.ensemble} samples at CFG 1 (mean image scored). Classical: zero-filled RSS, "
        "CG-SENSE, L1-wavelet (sigpy), ESPIRiT maps from the remaining ACS.",
        *[f"- BART {line}" for line in describe()],
        f"- BART axis check (zero-filled RSS, BART vs ours): worst correlation {worst:.5f} "
        "over scans and masks (bart_check.json). results.csv: seconds per slice.",
        f"- Machine: {device}, device `{args.device}`, torch {torch.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}, wall time {wall_s / 60:.1f} min.", ""])


def write_csv(path: Path, rows: List[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_figure(path: Path, images: Dict[str, torch.Tensor]) -> Path:
    """Top row: reference and reconstructions (``contact_sheet``, intensity-matched); below:
    ``|error| x5`` of each on the reference's window (a shared scale)."""
    from PIL import Image, ImageDraw

    ref = images["reference"].abs()
    matched = {k: intensity_match(v, ref) for k, v in images.items()}
    contact_sheet(path, {k: v[None].numpy() for k, v in matched.items()})
    top = Image.open(path)
    vmax = float(np.percentile(ref.numpy(), 99.5))
    errs = [ERROR_GAIN * (v - ref).abs().numpy() for v in matched.values()]
    row = (np.clip(np.hstack(errs) / vmax, 0, 1) * 255).astype(np.uint8)
    label_h = 14
    sheet = Image.new("L", (top.width, top.height + label_h + row.shape[0]))
    sheet.paste(top, (0, 0))
    sheet.paste(Image.fromarray(row), (0, top.height + label_h))
    ImageDraw.Draw(sheet).text((3, top.height + 1), f"|error| x{ERROR_GAIN:g} (reference window)",
                               fill=255)
    sheet.save(path)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"),
                   help="output directory (default benchmarks/results/quality)")
    p.add_argument("--contrasts", type=_list, default=None,
                   help=f"comma-separated (default all: {','.join(CONTRASTS)}; --quick: AXT2)")
    p.add_argument("--masks", type=_list, default=list(MASKS),
                   help=f"comma-separated mask specs (default {','.join(MASKS)})")
    p.add_argument("--slices-per-scan", type=int, default=1,
                   help=f"central slices scored per scan, 1..{NUM_SLICES} (default 1, for runtime)")
    p.add_argument("--steps", type=int, default=None, help="DDS steps (default 50; --quick: 4)")
    p.add_argument("--guidances", type=lambda s: [float(g) for g in _list(s)],
                   default=[0.0, 1.0, 2.0, 3.0],
                   help="comma-separated CFG scales (default 0,1,2,3; 0 = unconditional)")
    p.add_argument("--ensemble", type=int, default=5,
                   help="ensemble size at CFG 1 (default 5; 0 disables)")
    p.add_argument("--batch-size", type=int, default=4,
                   help="DDS slices per network batch (default 4)")
    p.add_argument("--seed", type=int, default=1000,
                   help="master seed (default 1000; never used in training)")
    p.add_argument("--matrix", type=int, default=128,
                   help="matrix (default 128: the default model was trained at 128)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                   help="prior checkpoint directory (default: the shipped default model)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="DDS device (default cuda when available, else cpu)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 contrast, 1 slice, 4 steps")
    return p


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse and resolve the --quick defaults (explicit flags win)."""
    args = _parser().parse_args(argv)
    args.contrasts = args.contrasts or ([FIGURE_CONTRAST] if args.quick else list(CONTRASTS))
    args.steps = args.steps or (4 if args.quick else 50)
    unknown = sorted(set(args.contrasts) - set(CONTRASTS))
    if unknown or not 1 <= args.slices_per_scan <= NUM_SLICES:
        raise SystemExit(f"contrasts must be among {CONTRASTS} (got {unknown}) and "
                         f"--slices-per-scan in 1..{NUM_SLICES}")
    return args


def run(args: argparse.Namespace) -> Tuple[List[dict], dict, dict]:
    """Simulate, reconstruct and score: ``(rows, figures of one scan, BART checks)``."""
    check_masks(args.masks, args.matrix, args.seed)
    methods = build_methods(args)
    rows, figures, checks = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="quality_scans_") as tmp:
        paths = simulate_scans(args.contrasts, Path(tmp), args.seed, args.matrix)
        for i, path in enumerate(paths):
            scan_rows, extra = evaluate_scan(path, i, methods, args)
            rows.extend(scan_rows)
            checks[path.name] = extra["checks"]
            if not figures or extra["contrast"] == FIGURE_CONTRAST:
                figures = extra["figures"]
    return rows, figures, checks


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    args = parse_args(argv)
    t0 = time.perf_counter()
    rows, figures, checks = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "results.csv", rows)
    (args.out / "bart_check.json").write_text(json.dumps(checks, indent=2))
    for spec, images in figures.items():
        write_figure(args.out / f"figure_{spec.replace(':', '_')}.png", images)
    summary = summarise(rows)
    flat = {f"{scan} {mask}": c for scan, per in checks.items() for mask, c in per.items()}
    doc = header(args, args.contrasts, time.perf_counter() - t0, flat)
    doc += "\n".join(f"\n## {mask}\n\n{mask_table(per, args.contrasts)}"
                     for mask, per in summary.items())
    (args.out / "quality.md").write_text(doc + "\n")
    n = len({(r["scan"], r["slice"]) for r in rows})
    print(f"\noverall PSNR (dB) / SSIM, mean over {n} slices (written to {args.out}):\n"
          f"{overall_table(summary)}\n{final_line(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
