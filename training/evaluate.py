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
from typing import Callable, Dict, List, Optional

import torch

from contextmri_core.data.published import choose_unet
from contextmri_core.data.scan import RawScan
from contextmri_core.io.models.official import ModelHandle
from contextmri_core.io.images.png import contact_sheet
from contextmri_core.io.raw.reader import read_scan
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.classical import CLASSICAL
from contextmri_core.recon.diffusion import DiffusionReconstructor
from contextmri_core.recon.presets import PAPER, preset_config, with_overrides
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import prepare_scan, prepare_slices, undersample

log = logging.getLogger("training.evaluate")


def evaluate_file(path: Path, make_recon: Callable[[RawScan], DiffusionReconstructor],
                  masks: List[str], guidances: List[float], max_slices: int, seed: int):
    """Rows ``{file, mask, method, psnr, ssim, seconds}`` and one figure column set per mask;
    ``make_recon(scan)`` gives the diffusion reconstructor for the scan (its UNet)."""
    scan = read_scan(path)
    recon = make_recon(scan)
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
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                   help="model folder: a contextmri checkpoint, the published ContextMRI "
                        "MRI_checkpoint/ or one UNet folder of it")
    p.add_argument("--unet", help="published checkpoint: fastmri or skm-tea (default: from "
                                  "each file's metadata)")
    p.add_argument("--preset", default="auto",
                   help="sampler settings: auto (paper for published checkpoints), paper, "
                        "contextmri")
    p.add_argument("--out", type=Path, default=Path("eval_out"))
    p.add_argument("--masks", default="uniform1d:4,uniform1d:8:0.0625",
                   help="comma-separated mask specs (default x4 and x8; at matrix 128 x8 needs "
                        "a 0.0625 centre: ESPIRiT needs >= 8 fully sampled lines)")
    p.add_argument("--guidance", default="0,1,2", help="comma-separated CFG scales")
    p.add_argument("--steps", type=int, default=None,
                   help="DDS steps (default 25 for our models, the paper's 100 for published)")
    p.add_argument("--max-slices", type=int, default=0,
                   help="evaluate only this many central slices per file (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    handle = ModelHandle(args.model, device=args.device)
    recons: Dict[Optional[str], DiffusionReconstructor] = {}

    def make_recon(scan: RawScan) -> DiffusionReconstructor:
        unet = args.unet or (choose_unet(scan.metadata, handle.unets) if handle.unets else None)
        if unet not in recons:
            prior = handle.prior(unet)
            cfg = preset_config(prior, args.preset)
            steps = args.steps or (cfg.dds.steps if cfg is PAPER else 25)
            recons[unet] = DiffusionReconstructor(
                prior, with_overrides(cfg, steps=steps, seed=args.seed), device=args.device)
        return recons[unet]

    masks = [m for m in args.masks.split(",") if m]
    guidances = [float(g) for g in args.guidance.split(",") if g]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, figures = [], {}
    for f in args.files:
        r, fig = evaluate_file(f, make_recon, masks, guidances, args.max_slices, args.seed)
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
