"""Tables, targets and figures of ``benchmarks/generalisation.py`` from its results.csv rows.

Averaging: a method's score for one sampler seed is the mean over the cases (slices) of a
group; the table gives the mean over seeds +- their standard deviation (seed-to-seed spread,
ddof 1), so "+-" is the sampler's randomness, not the spread between slices.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

METRICS = ("psnr", "ssim", "psnr_head", "ssim_head")
KEY_METHODS = ("zero_filled", "sense", "l1_wavelet", "bart_pics_l1", "bart_pics_l2",
               "old_dds_cfg1", "dds_cfg0", "dds_cfg1", "dds_cfg2")
FIGURE_METHODS = ("reference", "zero_filled", "sense", "bart_pics_l1", "old_dds_cfg1",
                  "dds_cfg1")
TARGET_GAIN_DB = 1.0
MAX_BELOW_SENSE = 0.05


def _typed(rows: Iterable[dict]) -> List[dict]:
    out = []
    for r in rows:
        t = dict(r)
        for k in METRICS + ("seconds", "spacing_mm"):
            t[k] = float(r[k])
        t["seed"], t["matrix"] = int(r["seed"]), int(r["matrix"])
        out.append(t)
    return out


def seed_stats(rows: Sequence[dict], metric: str) -> Tuple[float, float, int]:
    """(mean over seeds of the per-seed case mean, seed std (ddof 1; 0 for one seed), seeds)."""
    by_seed: Dict[int, List[float]] = defaultdict(list)
    for r in rows:
        by_seed[r["seed"]].append(r[metric])
    means = np.array([np.mean(v) for v in by_seed.values()])
    std = float(np.std(means, ddof=1)) if len(means) > 1 else 0.0
    return float(np.mean(means)), std, len(means)


def _select(rows, **where) -> List[dict]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def _methods(rows) -> List[str]:
    names = list(dict.fromkeys(r["method"] for r in rows))
    first = [m for m in KEY_METHODS if m in names]
    return first + [m for m in names if m not in first]


def _cell(rows, metric: str) -> str:
    if not rows:
        return "-"
    mean, std, n = seed_stats(rows, metric)
    digits = 2 if metric.startswith("psnr") else 3
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def mask_table(rows: List[dict], mask: str) -> str:
    """Methods x (PSNR, SSIM whole image, PSNR, SSIM head) for one mask, all cases."""
    lines = ["| method | PSNR dB | SSIM | PSNR dB (head) | SSIM (head) | s/slice | seeds |",
             "|---|---|---|---|---|---|---|"]
    sel = _select(rows, mask=mask)
    for m in _methods(sel):
        rs = _select(sel, method=m)
        secs = np.mean([r["seconds"] for r in rs])
        lines.append(f"| {m} | " + " | ".join(_cell(rs, k) for k in METRICS)
                     + f" | {secs:.1f} | {len({r['seed'] for r in rs})} |")
    return "\n".join(lines)


def group_table(rows: List[dict], mask: str, key) -> str:
    """Head PSNR / SSIM of the key methods per group (``key(row)``: plane or spacing)."""
    sel = _select(rows, mask=mask)
    groups = sorted({key(r) for r in sel})
    lines = ["| method | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for m in [m for m in _methods(sel) if m in KEY_METHODS]:
        cells = []
        for g in groups:
            rs = [r for r in sel if r["method"] == m and key(r) == g]
            cells.append(f"{_cell(rs, 'psnr_head')} / {_cell(rs, 'ssim_head')}" if rs else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_gain(rows: List[dict]) -> List[dict]:
    """DDS CFG 1 minus BART pics -l1 per plane at 256x256 and per mask (head scores)."""
    out = []
    for mask in dict.fromkeys(r["mask"] for r in rows):
        for plane in ("axial", "coronal", "sagittal"):
            dds = _select(rows, mask=mask, plane=plane, matrix=256, method="dds_cfg1")
            bart = _select(rows, mask=mask, plane=plane, matrix=256, method="bart_pics_l1")
            if not dds or not bart:
                continue
            d_p, d_s = seed_stats(dds, "psnr_head")[0], seed_stats(dds, "ssim_head")[0]
            b_p, b_s = seed_stats(bart, "psnr_head")[0], seed_stats(bart, "ssim_head")[0]
            out.append({"mask": mask, "plane": plane, "gain_db": d_p - b_p,
                        "ssim_dds": d_s, "ssim_bart": b_s,
                        "met": d_p - b_p >= TARGET_GAIN_DB and d_s >= b_s})
    return out


def below_sense(rows: List[dict]) -> Tuple[int, int]:
    """(slices x masks where DDS CFG 1's seed-mean head PSNR is below SENSE's, total)."""
    below = total = 0
    for case, mask in dict.fromkeys((r["case"], r["mask"]) for r in rows):
        dds = _select(rows, case=case, mask=mask, method="dds_cfg1")
        sense = _select(rows, case=case, mask=mask, method="sense")
        if dds and sense:
            total += 1
            below += int(np.mean([r["psnr_head"] for r in dds]) < sense[0]["psnr_head"])
    return below, total


def paired_difference(rows: List[dict], a: str, b: str, **where) -> Optional[Tuple[float, float, int]]:
    """Mean over seeds of (a - b) head PSNR, paired by (case, mask, seed); seed std; seeds."""
    sa = {(r["case"], r["mask"], r["seed"]): r["psnr_head"] for r in _select(rows, method=a, **where)}
    sb = {(r["case"], r["mask"], r["seed"]): r["psnr_head"] for r in _select(rows, method=b, **where)}
    common = sorted(set(sa) & set(sb))
    if not common:
        return None
    diffs = [{"seed": k[2], "d": sa[k] - sb[k]} for k in common]
    return seed_stats(diffs, "d")


def conditioning(rows: List[dict], swap_mask: str) -> Tuple[List[str], dict]:
    """Lines of the conditioning section and their numbers."""
    out, lines = {}, []
    d = paired_difference(rows, "dds_cfg1", "dds_cfg0")
    if d:
        out["cfg1_minus_cfg0_db"] = d
        lines.append(f"- CFG 1 minus CFG 0 (all cases and masks, head PSNR): {d[0]:+.3f} ± "
                     f"{d[1]:.3f} dB over {d[2]} seeds.")
    right = _select(rows, method="dds_cfg1", mask=swap_mask)
    if right:
        spread = seed_stats(right, "psnr_head")[1]
        out["seed_std_db"] = spread
        lines.append(f"- Metadata swap at {swap_mask} (CFG 1, same seeds, head PSNR; the "
                     f"seed-to-seed std of the right metadata is {spread:.3f} dB, so the bar "
                     f"is {2 * spread:.3f} dB):")
        for field in ("contrast", "plane", "spacing"):
            d = paired_difference(rows, "dds_cfg1", f"swap_{field}", mask=swap_mask)
            if d:
                verdict = "matters" if d[0] > 2 * spread else "IGNORED (not above 2x seed std)"
                out[f"right_minus_wrong_{field}_db"] = d
                lines.append(f"  - right minus wrong {field}: {d[0]:+.3f} ± {d[1]:.3f} dB "
                             f"-> the model {verdict}")
    return lines, out


def write_figures(out_dir: Path) -> List[str]:
    """PNG per mask from the saved figure images (reconstructions over |error| x5)."""
    from benchmarks.quality import write_figure

    names = []
    for pt in sorted(out_dir.glob("figure_*.pt")):
        images = torch.load(pt)
        shown = {k: images[k] for k in FIGURE_METHODS if k in images}
        ens = [k for k in images if k.startswith("dds_cfg1_ens")]
        shown.update({k: images[k] for k in ens})
        names.append(write_figure(pt.with_suffix(".png"), shown).name)
    return names


def header(args, wall_s: float, cases: Sequence) -> str:
    device = (f"{platform.machine()} CPU, {os.cpu_count()} cores" if args.device == "cpu"
              else torch.cuda.get_device_name(0))
    listed = "; ".join(f"{c.name}: {c.plane} {c.matrix}² at {c.spacing_mm} mm, {c.protocol}, "
                       f"seed {c.seed}" for c in cases)
    return "\n".join([
        "# Generalisation on held-out simulated subjects", "",
        f"- Cases (one slice each, 8 coils, SNR 40, 3 mm slices): {listed}.",
        "- Held out: subject master seeds 7000+ (training: `prepare_synthetic --seed 0`, "
        "validation `--seed 1`); every subject has its own deformation, scale and atrophy. "
        "All subjects still derive from ONE template (MNI152): unseen deformations, not "
        "unseen people.",
        "- Reference: the noise-free simulated truth. Scores: magnitudes after a least-squares "
        "intensity match, over the whole image and inside the head (tissue fraction > 0.5).",
        f"- DDS: {args.steps} steps, new model `{args.model}` at CFG "
        f"{', '.join(f'{g:g}' for g in args.guidances)} over {args.seeds} seeds; ensemble = mean "
        f"of the CFG 1 samples; old model (git {args.old_commit}) at CFG 1 over "
        f"{args.old_seeds} seeds. BART: `ecalib -m1` maps + `pics -l1 -r 0.01` / `pics -l2`.",
        "- ± = standard deviation over sampler seeds of the case-mean score.",
        f"- Machine: {device}, torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}, "
        f"this run {wall_s / 60:.1f} min.", ""])


def report(raw_rows: Iterable[dict], args, wall_s: float) -> str:
    """Write OUT/generalisation.md, OUT/summary.json and the figures; return the printout
    whose last line is ``generalisation ...``."""
    from benchmarks.generalisation import CASES, OLD_MODEL_COMMIT, SWAP_MASK

    args.old_commit = OLD_MODEL_COMMIT
    rows = _typed(raw_rows)
    masks = list(dict.fromkeys(r["mask"] for r in rows))
    gains, (below, total) = target_gain(rows), below_sense(rows)
    cond_lines, cond = conditioning(rows, SWAP_MASK)
    doc = [header(args, wall_s, [c for c in CASES if c.name in {r["case"] for r in rows}])]
    for mask in masks:
        doc += [f"## {mask}", "", mask_table(rows, mask), "",
                "Per plane and matrix (head PSNR / SSIM):", "",
                group_table(rows, mask, lambda r: f"{r['plane']} {r['matrix']}"), "",
                "Per pixel spacing (head PSNR / SSIM):", "",
                group_table(rows, mask, lambda r: f"{r['spacing_mm']:.2f} mm"), ""]
    doc += ["## Targets", "", "DDS CFG 1 minus BART pics -l1 at 256x256 (head PSNR; SSIM DDS "
            "vs BART):", ""]
    doc += [f"- {g['plane']} {g['mask']}: {g['gain_db']:+.2f} dB, SSIM {g['ssim_dds']:.3f} vs "
            f"{g['ssim_bart']:.3f} -> {'met' if g['met'] else 'NOT met'}" for g in gains]
    doc += ["", f"- DDS CFG 1 below our SENSE on {below} of {total} slice x mask pairs "
            f"(target at most {MAX_BELOW_SENSE:.0%}).", "", "## Conditioning", ""] + cond_lines
    figures = write_figures(args.out)
    doc += ["", "Figures: " + ", ".join(figures)] if figures else []
    (args.out / "generalisation.md").write_text("\n".join(doc) + "\n")
    (args.out / "summary.json").write_text(json.dumps(
        {"target_gain": gains, "below_sense": [below, total], "conditioning": cond}, indent=2,
        default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))
    met = sum(g["met"] for g in gains)
    mean_gain = np.mean([g["gain_db"] for g in gains]) if gains else float("nan")
    c10 = cond.get("cfg1_minus_cfg0_db", (float("nan"), 0.0, 0))
    last = (f"generalisation gain_vs_bart_l1_256={mean_gain:+.2f}dB met={met}/{len(gains)} "
            f"below_sense={below}/{total} cfg1_minus_cfg0={c10[0]:+.3f}±{c10[1]:.3f}dB")
    for field in ("contrast", "plane", "spacing"):
        d = cond.get(f"right_minus_wrong_{field}_db")
        if d:
            last += f" swap_{field}={d[0]:+.3f}±{d[1]:.3f}dB"
    return "\n".join(doc) + "\n" + last
