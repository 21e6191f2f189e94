"""``python -m training.evaluate --model DIR RAW_FILES...``: held-out reconstruction quality.

For every file, mask and CFG scale: PSNR/SSIM (magnitudes, least-squares intensity match,
against the fully sampled MVUE) of DDS and of the classical baselines (zero-filled, SENSE,
L1-wavelet) on the same undersampled data and ESPIRiT maps. Writes ``OUT/results.csv``
(one row per file x mask x method), ``OUT/summary.md`` (means) and ``OUT/figure_<mask>.png``.
LPIPS is left out: its network weights cannot be fetched here.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

import torch

from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.io.images.png import contact_sheet
from contextmri_core.io.raw.reader import read_scan
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.classical import CLASSICAL
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import prepare_scan, prepare_slices, undersample
from contextmri_core.sampling.dds import DDSConfig

log = logging.getLogger("training.evaluate")


def evaluate_file(path: Path, recon: DiffusionReconstructor, masks: List[str],
                  guidances: List[float], max_slices: int, seed: int):
    """Rows ``{file, mask, method, psnr, ssim, seconds}`` and one figure column set per mask."""
    scan = read_scan(path)
    mid = len(scan.slices) // 2
    scan_slices = (scan.slices[max(mid - max_slices // 2, 0):][:max_slices] if max_slices
                   else scan.slices)
    full = prepare_scan(type(scan)(**{**scan.__dict__, "slices": tuple(scan_slices)}))
    ref = mvue(full.kspace, full.maps)
    rows, figures = [], {}
    for spec in masks:
        mask = make_mask(spec, scan_slices[0].mask.shape, seed)
        b = prepare_slices([undersample(s, mask) for s in scan_slices], scan.noise)
        images = {"reference": ref}
        methods = {n: cls() for n, cls in CLASSICAL.items()}
        methods.update({f"dds_cfg{g:g}": recon.with_config(guidance=g) for g in guidances})
        for name, method in methods.items():
            t0 = time.perf_counter()
            images[name] = method(b.kspace, b.mask, b.maps, b.metadata).image
            score = score_slices(images[name], ref)
            rows.append({"file": path.name, "mask": spec, "method": name, **score,
                         "seconds": round(time.perf_counter() - t0, 2)})
            log.info("%s %s %-12s PSNR %.2f SSIM %.3f", path.name, spec, name, score["psnr"], score["ssim"])
        figures[spec] = {k: v[:1].cpu().numpy() for k, v in images.items()}
    return rows, figures


def summarise(rows: List[dict]) -> str:
    """Markdown table of mean PSNR/SSIM per mask and method."""
    acc: Dict[tuple, List[dict]] = defaultdict(list)
    for r in rows:
        acc[(r["mask"], r["method"])].append(r)
    lines = ["| mask | method | PSNR (dB) | SSIM | n |", "|---|---|---|---|---|"]
    for (mask, method), rs in acc.items():
        p = sum(r["psnr"] for r in rs) / len(rs)
        s = sum(r["ssim"] for r in rs) / len(rs)
        lines.append(f"| {mask} | {method} | {p:.2f} | {s:.3f} | {len(rs)} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="fully sampled ISMRMRD/fastMRI .h5 files")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint directory")
    p.add_argument("--out", type=Path, default=Path("eval_out"))
    p.add_argument("--masks", default="uniform1d:4,uniform1d:8:0.0625",
                   help="comma-separated mask specs (default x4 and x8; at matrix 128 x8 needs "
                        "a 0.0625 centre: ESPIRiT needs >= 8 fully sampled lines)")
    p.add_argument("--guidance", default="0,1,2", help="comma-separated CFG scales")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--max-slices", type=int, default=0,
                   help="evaluate only this many central slices per file (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    prior = load_prior(args.model, device=args.device)
    recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDSConfig(steps=args.steps),
                                                               seed=args.seed), device=args.device)
    masks = [m for m in args.masks.split(",") if m]
    guidances = [float(g) for g in args.guidance.split(",") if g]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, figures = [], {}
    for f in args.files:
        r, fig = evaluate_file(f, recon, masks, guidances, args.max_slices, args.seed)
        rows.extend(r)
        figures = figures or fig
    with open(args.out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    table = summarise(rows)
    (args.out / "summary.md").write_text(f"model: {args.model}\n\n{table}\n")
    for spec, cols in figures.items():
        contact_sheet(args.out / f"figure_{spec.replace(':', 'x')}.png", cols)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
