"""DDS seconds per slice on a GPU: the one place for GPU timing code (``gpu_check.py`` runs
the whole grid, ``speed.py`` a few points of it).

A grid point is (model, image size, batch, precision). It times whole reconstructions
(``DiffusionReconstructor``: CG-SENSE scaling, encoding, DDS with 10 CG iterations, CFG 2
with both halves in ONE batched network call) of random 16-coil k-space at 1 and at 3 steps
after a 1-step warm-up, so ``T(n) = overhead + n * step`` and, per slice,
``(overhead + S * step) / batch`` for S = 50 and 100 steps: a few steps per point keep the
whole grid inside minutes. Peak memory is ``torch.cuda.max_memory_allocated`` over the timed
runs. Points that would not fit in the time left are skipped (predicted from the point of the
same model, size and precision with the next smaller batch), and an out-of-memory point is
recorded as such; the grid goes on.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch

from benchmarks.dds_step import random_problem
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.sampling.dds import DDSConfig

STEPS_PER_SLICE = (50, 100)
TIMED_STEPS = (1, 3)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(recon: DiffusionReconstructor, problem, device: str):
    _sync(device)
    t0 = time.perf_counter()
    out = recon(*problem)
    _sync(device)
    return time.perf_counter() - t0, out.image


def time_point(prior, size: int, batch: int, precision: str, device: str = "cuda",
               coils: int = 16, guidance: float = 2.0) -> Dict[str, object]:
    """One grid point: step and per-call seconds, seconds per slice at 50/100 steps, peak MiB,
    and the 3-step image (for comparing precisions on the same random numbers)."""
    problem = random_problem(size, coils, batch, device)
    cfg = DiffusionReconConfig(dds=DDSConfig(steps=1, guidance=guidance), batch_size=batch,
                               precision=precision)
    recon = DiffusionReconstructor(prior, cfg, device)
    _timed(recon, problem, device)  # warm-up: kernels, allocator, cuFFT plans
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t1, _ = _timed(recon.with_config(steps=TIMED_STEPS[0]), problem, device)
    t3, image = _timed(recon.with_config(steps=TIMED_STEPS[1]), problem, device)
    step = max((t3 - t1) / (TIMED_STEPS[1] - TIMED_STEPS[0]), 0.0)
    overhead = max(t1 - TIMED_STEPS[0] * step, 0.0)
    row: Dict[str, object] = {
        "size": size, "batch": batch, "precision": precision, "coils": coils,
        "network_batch": 2 * batch if guidance not in (0.0, 1.0) else batch,
        "step_s": step, "overhead_s": overhead, "measured_s": t1 + t3,
        "plan": {"autocast": str(recon.plan.autocast_dtype), "cfg_one_call": recon.plan.cfg_one_call},
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}
    for s in STEPS_PER_SLICE:
        row[f"s_per_slice_{s}_steps"] = (overhead + s * step) / batch
    row["image"] = image.cpu()
    return row


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-30))


def timing_grid(models: Dict[str, Callable[[], object]], sizes: Sequence[int],
                batches: Sequence[int], precisions: Sequence[str], device: str,
                seconds_left: Callable[[], float], on_row: Optional[Callable[[dict], None]] = None,
                coils: int = 16) -> List[Dict[str, object]]:
    """Time every point that fits in ``seconds_left()``; ``models`` maps a name to a loader
    (called once, when its first point runs). ``on_row`` sees each row as it is made."""
    rows: List[Dict[str, object]] = []
    for name, make in models.items():
        prior = None
        for size, precision in itertools.product(sizes, precisions):
            last: Optional[dict] = None
            for batch in batches:
                row: Dict[str, object] = {"model": name, "size": size, "batch": batch,
                                          "precision": precision}
                predicted = _predict(last, batch)
                if seconds_left() < max(predicted, 5.0):
                    row["skipped"] = f"time: {seconds_left():.0f} s left, needs ~{predicted:.0f} s"
                else:
                    prior = prior if prior is not None else make()
                    row = _run_point(prior, name, size, batch, precision, device, coils)
                    last = row if "error" not in row else last
                rows.append(row)
                if on_row is not None:
                    on_row(row)
        del prior
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    _precision_differences(rows)
    return rows


def _predict(last: Optional[dict], batch: int) -> float:
    """Seconds a point needs, from the same model/size/precision at a smaller batch (a first
    point: unknown, 0); warm-up + 1 + 3 steps, and the per-call work, scale with the batch."""
    if last is None:
        return 0.0
    return float(last["measured_s"]) * 1.5 * batch / int(last["batch"])


def _run_point(prior, name, size, batch, precision, device, coils) -> Dict[str, object]:
    try:
        row = time_point(prior, size, batch, precision, device, coils)
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        return {"model": name, "size": size, "batch": batch, "precision": precision,
                "error": f"out of memory: {str(exc).splitlines()[0]}"}
    row["model"] = name
    row["params_m"] = prior.num_parameters() / 1e6
    return row


def _precision_differences(rows: Iterable[Dict[str, object]]) -> None:
    """Relative L2 difference of each point's 3-step image to the fp32 one at the same model,
    size and batch (same random numbers: the same seed on the same device); drops images."""
    rows = list(rows)
    ref = {(r["model"], r["size"], r["batch"]): r.get("image") for r in rows
           if r["precision"] == "fp32" and "image" in r}
    for r in rows:
        img = r.pop("image", None)
        base = ref.get((r["model"], r["size"], r["batch"]))
        if img is not None and base is not None and r["precision"] != "fp32":
            r["rel_diff_to_fp32"] = _rel(img, base)
