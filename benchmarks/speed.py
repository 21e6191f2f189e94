"""Speed where it counts, measured side by side in one run (ratios, not only seconds):

1. ESPIRiT coil maps: ours vs ``bart ecalib -m1`` on the same ACS (128/8 coils, 256/16 coils).
2. DDS seconds per slice vs number of steps and vs batch size (shipped default model, 128x128,
   8 coils); batching slices into one network call vs one slice at a time; CFG's two halves in
   one call vs two calls.
3. The share of a DDS step spent outside the network (CG data consistency, DDIM, FFTs);
   target < 10 %.
4. End-to-end ``contextmri replay`` of one simulated volume (4 slices, x4) with DDS and with
   SENSE only: wall time and peak memory of the whole process.
5. With a CUDA GPU: a few points of the GPU timing grid (``gpu_timing.py``; the whole grid,
   with replay and training on the GPU: ``bash benchmarks/gpu_check.sh``).

    .venv/bin/python benchmarks/speed.py [--threads 2] [--quick]

The last line is ``espirit_vs_bart=<ours/bart time> outside_network_share=<fraction>``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bart import run_bart, to_bart  # noqa: E402
from benchmarks.dds_step import measure_step, random_problem  # noqa: E402
from contextmri_core.io.raw.cfl import write_cfl  # noqa: E402
from contextmri_core.physics.calibration import calibration_data  # noqa: E402
from contextmri_core.physics.coils import espirit_maps  # noqa: E402
from contextmri_core.physics.masks import to_2d, uniform1d  # noqa: E402


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _coil_kspace(n: int, coils: int) -> np.ndarray:
    """Multi-coil k-space of a smooth disc object under smooth random coil maps, x4 uniform1d."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    obj = (x ** 2 + y ** 2 < 0.7).astype(np.complex64) * (1 + 0.3 * np.cos(6 * x))
    maps = []
    for c in range(coils):
        a = 2 * np.pi * c / coils
        cx, cy = 1.2 * np.cos(a), 1.2 * np.sin(a)
        maps.append(np.exp(-((x - cx) ** 2 + (y - cy) ** 2)) * np.exp(1j * rng.uniform(0, 6.28)))
    img = np.stack(maps) * obj
    ksp = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    mask = to_2d(uniform1d(n, 4, seed=0), n)
    return (ksp * mask).astype(np.complex64), mask


def espirit_vs_bart(sizes=((128, 8), (256, 16)), repeats: int = 5) -> List[Dict[str, float]]:
    """Median seconds of our ESPIRiT and of ``bart ecalib -m1`` (a whole process, as sites
    run it, cfl files on tmpfs-like /tmp) on the same undersampled k-space."""
    rows = []
    for n, coils in sizes:
        ksp, mask = _coil_kspace(n, coils)
        calib = torch.from_numpy(calibration_data(ksp, mask))
        ours = median_seconds(lambda: espirit_maps(calib, (n, n)), repeats)
        with tempfile.TemporaryDirectory() as tmp:
            write_cfl(Path(tmp) / "k", to_bart(ksp))
            cmd = ["ecalib", "-m1", "-c", "0.95", "-r", f"{n}:{n}:1", "k", "m"]
            bart = median_seconds(lambda: run_bart(cmd, Path(tmp)), repeats)
        rows.append({"matrix": n, "coils": coils, "acs_rows": int(calib.shape[1]),
                     "ours_s": ours, "bart_s": bart, "ratio": ours / bart})
    return rows


def _dds_seconds(prior, batch: int, steps: int, guidance: float = 1.0) -> float:
    """Wall seconds of one DDS reconstruction of ``batch`` random 128x128 8-coil slices."""
    from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
    from contextmri_core.sampling.dds import DDSConfig

    kspace, mask, maps = random_problem(128, 8, batch)
    recon = DiffusionReconstructor(prior, DiffusionReconConfig(
        dds=DDSConfig(steps=steps, guidance=guidance), batch_size=batch))
    return median_seconds(lambda: recon(kspace, mask, maps), 1)


def dds_scaling(prior, steps_list, batches) -> Dict[str, List[Dict[str, float]]]:
    """Seconds per slice vs steps (batch 4) and vs batch size (fixed steps)."""
    by_steps = [{"steps": s, "s_per_slice": _dds_seconds(prior, 4, s) / 4} for s in steps_list]
    s0 = steps_list[0]
    by_batch = [{"batch": b, "s_per_slice": _dds_seconds(prior, b, s0) / b} for b in batches]
    return {"by_steps": by_steps, "by_batch": by_batch, "batch_steps": s0}


def cfg_one_call_vs_two(prior, batch: int = 4, repeats: int = 3) -> Dict[str, float]:
    """Network seconds for CFG (scale 2): both halves in one batched call vs two calls."""
    g = torch.Generator().manual_seed(0)
    x = torch.complex(torch.randn(batch, 128, 128, generator=g), torch.randn(batch, 128, 128, generator=g))
    t = torch.full((batch,), 500, dtype=torch.long)
    cond = prior.encode([None] * batch)
    uncond = prior.unconditional(batch)
    with torch.no_grad():
        one = median_seconds(lambda: prior.eps(torch.cat([x, x]), torch.cat([t, t]),
                                               torch.cat([cond, uncond])), repeats)
        two = median_seconds(lambda: (prior.eps(x, t, cond), prior.eps(x, t, uncond)), repeats)
    return {"one_call_s": one, "two_calls_s": two, "ratio": one / two}


def replay_volume(steps: int) -> Dict[str, Dict[str, float]]:
    """Wall time and peak RSS of ``contextmri replay`` (one 4-slice 128x128 x4 volume), as a
    separate process each (model load and imports included), DDS vs SENSE only."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cli = [sys.executable, "-m", "contextmri_core.cli.main"]
        subprocess.run([*cli, "simulate", "--out", tmp, "--seed", "2026", "--n-subjects", "0",
                        "0", "1", "--contrasts", "AXFLAIR", "--acceleration", "4", "--slices",
                        "4", "--formats", "ismrmrd"], check=True, capture_output=True, cwd=REPO)
        scan = next(Path(tmp).rglob("*.h5"))
        for name, extra in (("dds", ["--steps", str(steps)]), ("sense", ["--method", "sense"])):
            t0 = time.perf_counter()
            proc = subprocess.run([*cli, "replay", str(scan), "--out", f"{tmp}/{name}",
                                   "--no-progress", *extra], capture_output=True, text=True,
                                  cwd=REPO)
            if proc.returncode != 0:
                raise RuntimeError(f"replay failed: {proc.stderr[-2000:]}")
            out[name] = {"wall_s": time.perf_counter() - t0}
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["peak_rss_mib_max_of_children"] = {"value": peak}
    return out


def gpu_figures(seconds: float = 120.0) -> Dict[str, object]:
    """A few points of the GPU timing grid (``benchmarks/gpu_timing.py``, the one place for GPU
    timing; the whole grid runs in ``bash benchmarks/gpu_check.sh``): the shipped and the
    paper-size (318M) model at 256x256, batch 1 and 4, bf16 vs fp32, in ``seconds``."""
    from benchmarks.gpu_timing import timing_grid
    from contextmri_core.io.models.checkpoint import load_prior
    from contextmri_core.models import DEFAULT_MODEL_DIR
    from contextmri_core.prior.build import new_prior

    def paper():
        with torch.device("cuda"):
            return new_prior("contextmri-paper", image_size=(320, 320)).eval()

    deadline = time.time() + seconds
    models = {"shipped": lambda: load_prior(DEFAULT_MODEL_DIR, "cuda"), "paper-318M": paper}
    return {"rows": timing_grid(models, (256,), (1, 4), ("bf16", "fp32"), "cuda",
                                lambda: deadline - time.time())}


def _print_table(title: str, rows: List[Dict[str, float]]) -> None:
    print(f"\n## {title}")
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys))


def main(argv=None) -> Dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and steps (smoke run)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from contextmri_core.io.models.checkpoint import load_prior
    from contextmri_core.models import DEFAULT_MODEL_DIR

    t_start = time.perf_counter()
    figures: Dict[str, object] = {"device": "cpu", "threads": args.threads}
    esp = espirit_vs_bart(((128, 8),) if args.quick else ((128, 8), (256, 16)),
                          repeats=2 if args.quick else 5)
    _print_table("ESPIRiT: ours vs bart ecalib -m1 (median seconds)", esp)
    prior = load_prior(DEFAULT_MODEL_DIR)
    steps_list, batches = ((2, 4), (1, 4)) if args.quick else ((5, 10, 20), (1, 2, 4, 8))
    scaling = dds_scaling(prior, steps_list, batches)
    _print_table("DDS seconds per slice vs steps (batch 4, CFG 1)", scaling["by_steps"])
    _print_table(f"DDS seconds per slice vs batch ({scaling['batch_steps']} steps, CFG 1)",
                 scaling["by_batch"])
    cfg = cfg_one_call_vs_two(prior, repeats=1 if args.quick else 3)
    _print_table("CFG scale 2: one batched network call vs two calls", [cfg])
    step = measure_step(prior, batch=4, steps=2 if args.quick else 6, guidance=2.0)
    _print_table("One DDS step, batch 4, CFG 2, 10 CG iterations", [step])
    e2e = replay_volume(steps=4 if args.quick else 50)
    print("\n## End-to-end replay of one volume (4 slices 128x128, 8 coils, x4), whole process")
    for k, v in e2e.items():
        print(f"{k}: " + ", ".join(f"{a}={b:.1f}" for a, b in v.items()))
    print(f"dds_vs_sense_wall_ratio={e2e['dds']['wall_s'] / e2e['sense']['wall_s']:.2f}")
    figures.update(espirit=esp, dds=scaling, cfg=cfg, step=step, replay=e2e)
    if torch.cuda.is_available():
        figures["device"] = torch.cuda.get_device_name(0)
        figures["gpu"] = gpu_figures()
        print("\n## GPU\n" + json.dumps(figures["gpu"], indent=1))
    figures["total_s"] = time.perf_counter() - t_start
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    print(f"\nbenchmark wall time {figures['total_s']:.0f} s")
    ratio = esp[0]["ratio"]
    print(f"espirit_vs_bart={ratio:.2f} outside_network_share={step['outside_network_share']:.3f}")
    return figures


if __name__ == "__main__":
    main()
