"""How DDS should treat an acquired grid larger or smaller than the prior's training size
(``recon.grid``: ``full``, ``window``, ``window-zero``, ``pad``), measured on simulated scans.

The published ContextMRI UNet was trained on centred 320x320 crops, but fastMRI knees have
368 phase-encode lines (320x368 after readout-oversampling removal) and our scans are often
smaller. There is no published model here, so the shipped default prior (trained on 128x128
crops of 1.875 mm pixels) plays its part, with scans at the same pixel size on other grids:

- ``larger``: E1 148 x RO 128 (the knee's 368/320 = 1.15 along the phase encode; the field of
  view grows with the matrix, so the anatomy keeps its size in pixels and stays inside the
  128x128 window);
- ``smaller``: 112 x 112 at the same pixel size;
- ``crossing``: 148 x 148 with a 200 mm field of view: the anatomy (1.39x larger in pixels than
  in training) reaches past the window on every side, as a knee reaches past fastMRI's 320
  crop.

Per case: one held-out subject (seed 2000) x 2 central slices of an AXT2 and an AXFLAIR scan,
8 coils, uniform1d x4 (centre 0.08) along E1 with ESPIRiT maps from the remaining ACS;
reference = MVUE of the fully sampled data. Scores: PSNR/SSIM (magnitudes, least-squares
intensity match) inside the crop (the 128x128 window of the grid, or the whole grid when it is
smaller), and PSNR over the whole grid. Two sampler settings: ``paper`` (no support mask, no
clip, xi 5, 5 CG iterations, eta 0.8; 20 evenly spaced steps to stay within minutes on a CPU)
and ``contextmri`` (support mask, clip 3, xi 20, 10 CG iterations, 20 steps).

    .venv/bin/python benchmarks/grid.py [--out benchmarks/results] [--steps 20] [--threads 1]

Writes OUT/grid.md and OUT/grid.json; ~5 min on 2 free CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from contextmri_core.data.assembly import remove_readout_oversampling
from contextmri_core.data.scan import SliceData
from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.metrics import psnr
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.physics.window import Window
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import prepare_slices, undersample
from contextmri_core.sampling.dds import DDSConfig
from contextmri_core.synth.scan import SimConfig, simulate

CANVAS = (128, 128)
PIXEL_MM = 240.0 / 128
#: case -> (grid (E1, RO), pixel size in mm)
CASES = {"larger": ((148, 128), PIXEL_MM), "smaller": ((112, 112), PIXEL_MM),
         "crossing": ((148, 148), 200.0 / 148)}
STRATEGIES = ("full", "window", "window-zero", "pad")


def settings(steps: int) -> Dict[str, DDSConfig]:
    return {"paper": DDSConfig(steps=steps, eta=0.8, cg_iterations=5, xi=5.0, clip=0.0,
                               support_mask=False),
            "contextmri": DDSConfig(steps=steps)}


def case_slices(grid: Tuple[int, int], pixel_mm: float, seeds: List[int]) -> List[SliceData]:
    """Fully sampled slices on ``grid`` (E1, RO) with ``pixel_mm`` pixels."""
    e1, ro = grid
    cfg = SimConfig(matrix=e1, fov_mm=pixel_mm * e1, num_slices=6, num_coils=8,
                    readout_oversampling=1, lesion_probability=0.0)
    out = []
    for seed in seeds:
        for proto in ("AXT2", "AXFLAIR"):
            scan = simulate(seed, proto, cfg)
            for s in (2, 3):
                k = remove_readout_oversampling(scan.kspace[s], ro)  # exact: RO fully sampled
                out.append(SliceData(kspace=k, mask=np.ones(k.shape[-2:], np.float32),
                                     metadata=scan.slice_metadata(s)))
    return out


def scores(image: torch.Tensor, ref: torch.Tensor) -> Dict[str, float]:
    win = Window(tuple(ref.shape[-2:]), CANVAS)
    inside = score_slices(win.inside(image), win.inside(ref))
    whole = float(np.mean([psnr(a, b) for a, b in zip(image, ref)]))
    return {"psnr_crop": inside["psnr"], "ssim_crop": inside["ssim"], "psnr_grid": whole}


def run_case(prior, name: str, steps: int, labels: List[str],
             strategies: List[str]) -> List[dict]:
    grid, pixel_mm = CASES[name]
    full = case_slices(grid, pixel_mm, [2000])
    ref_batch = prepare_slices(full, None)
    ref = mvue(ref_batch.kspace, ref_batch.maps)
    mask = make_mask("uniform1d:4:0.08", grid, seed=0)
    b = prepare_slices([undersample(s, mask) for s in full], None)
    rows = []
    for label, dds in settings(steps).items():
        if label not in labels:
            continue
        for grid_rule in strategies:
            recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=dds, grid=grid_rule,
                                                                       batch_size=8, seed=0))
            t0 = time.perf_counter()
            img = recon(b.kspace, b.mask, b.maps, b.metadata).image
            row = {"case": name, "grid": f"{grid[0]}x{grid[1]}", "settings": label,
                   "strategy": grid_rule, **scores(img, ref),
                   "seconds": round(time.perf_counter() - t0, 1)}
            print(row, flush=True)
            rows.append(row)
    return rows


def table(rows: List[dict]) -> str:
    lines = ["| case (E1 x RO) | settings | strategy | PSNR in crop (dB) | SSIM in crop | "
             "PSNR whole grid (dB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} ({r['grid']}) | {r['settings']} | {r['strategy']} | "
                     f"{r['psnr_crop']:.2f} | {r['ssim_crop']:.3f} | {r['psnr_grid']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default=",".join(CASES), help="comma list of " + ", ".join(CASES))
    ap.add_argument("--settings", default="paper,contextmri", help="paper and/or contextmri")
    ap.add_argument("--strategies", default=",".join(STRATEGIES),
                    help="comma list of " + ", ".join(STRATEGIES))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = load_prior(DEFAULT_MODEL_DIR)
    cases, labels = args.cases.split(","), args.settings.split(",")
    strategies = args.strategies.split(",")
    new = [r for name in cases for r in run_case(prior, name, args.steps, labels, strategies)]
    args.out.mkdir(parents=True, exist_ok=True)
    old = json.loads((args.out / "grid.json").read_text()) if (args.out / "grid.json").exists() \
        else []
    key = lambda r: (r["case"], r["settings"], r["strategy"])  # noqa: E731
    rows = [r for r in old if key(r) not in {key(n) for n in new}] + new  # reruns replace
    rows.sort(key=lambda r: (list(CASES).index(r["case"]), -len(r["settings"]),
                             STRATEGIES.index(r["strategy"])))
    (args.out / "grid.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = (f"# Grid vs. the prior's size (benchmarks/grid.py, {args.steps} steps)\n\n"
            f"{table(rows)}\n")
    (args.out / "grid.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
