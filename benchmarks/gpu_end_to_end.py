"""End-to-end runs of the GPU check, as a user runs them (whole processes):

- ``replay_cpu_vs_gpu``: ``contextmri simulate`` one fully sampled 4-slice FLAIR scan (128x128,
  8 coils, noise scan), then ``contextmri replay --undersample uniform1d:4`` (50 DDS steps,
  DICOM + NIfTI out, scores against the fully sampled reference) on the CPU and, with CUDA,
  on the GPU; the PSNR of the GPU magnitude images against the CPU ones. The two devices
  draw different random numbers, so the images are two posterior samples, not copies: the
  scores against the reference say whether the GPU is as good.
- ``torchrun_training``: a small simulated training set, ``training.prepare``, then
  ``torchrun --nproc_per_node 1 -m training.fit`` for 20 steps (NCCL, bf16 autocast; on a
  CPU gloo and fp32 for 2 steps on half the data, and replay runs 10 steps: the harness only).

Each takes ``run(args, timeout=None, **env) -> CompletedProcess`` (raising on failure).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Dict

import numpy as np

CLI = ["-m", "contextmri_core.cli.main"]
Run = Callable[..., object]


def _simulate(run: Run, py: str, out: Path, *extra: str) -> Path:
    run([py, *CLI, "simulate", "--out", str(out), *extra])
    return out


def _dds_volume(replay_dir: Path) -> np.ndarray:
    """The DDS magnitude volume that replay wrote as NIfTI."""
    import nibabel as nib

    files = sorted(replay_dir.rglob("*_dds_magnitude.nii*"))
    if not files:
        raise FileNotFoundError(f"no *_dds_magnitude.nii* under {replay_dir}")
    return np.asarray(nib.load(str(files[0])).get_fdata(), dtype=np.float64)


def psnr_between(x: np.ndarray, ref: np.ndarray) -> float:
    """PSNR (dB) of ``x`` against ``ref``, peak = max |ref| (no intensity matching: both come
    from the same data scale)."""
    mse = float(np.mean((x - ref) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(float(np.max(np.abs(ref))) ** 2 / mse)


def replay_cpu_vs_gpu(run: Run, py: str, work: Path, cuda: bool) -> Dict[str, object]:
    shutil.rmtree(work, ignore_errors=True)  # a rerun starts clean
    sim = _simulate(run, py, work / "sim", "--seed", "2026", "--n-subjects", "0", "0", "1",
                    "--contrasts", "AXFLAIR", "--acceleration", "1", "--slices", "4",
                    "--formats", "ismrmrd")
    scan = next(iter(sorted(sim.rglob("*.h5"))))
    steps = 50 if cuda else 10  # without CUDA only the harness runs: fewer steps
    res: Dict[str, object] = {"scan": "simulated AXFLAIR, 4 slices 128x128, 8 coils, "
                                      f"uniform1d x4 by replay, {steps} DDS steps, CFG 1"}
    volumes = {}
    for dev in (("cpu", "cuda") if cuda else ("cpu",)):
        out = work / f"replay_{dev}"
        t0 = time.perf_counter()
        run([py, *CLI, "replay", str(scan), "--out", str(out), "--device", dev, "--no-progress",
             "--steps", str(steps), "--undersample", "uniform1d:4", "--metrics-json",
             str(out / "metrics.json"), "--outputs", "dicom,nifti"])
        scores = json.loads((out / "metrics.json").read_text())
        res[dev] = {"wall_s": round(time.perf_counter() - t0, 1),
                    "scores": next(iter(scores.values()))}
        volumes[dev] = _dds_volume(out)
    if cuda:
        res["gpu_vs_cpu_psnr_db"] = round(psnr_between(volumes["cuda"], volumes["cpu"]), 2)
        cpu_dds, gpu_dds = (res[d]["scores"]["dds"] for d in ("cpu", "cuda"))
        res["gpu_minus_cpu_psnr_vs_reference_db"] = round(gpu_dds["psnr"] - cpu_dds["psnr"], 2)
    return res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_training(run: Run, py: str, work: Path, cuda: bool) -> Dict[str, object]:
    shutil.rmtree(work, ignore_errors=True)  # a rerun starts clean (no resume)
    subjects = "2" if cuda else "1"
    sim = _simulate(run, py, work / "sim", "--seed", "7", "--n-subjects", subjects, "0", "0",
                    "--matrix", "64", "--slices", "4", "--coils", "4", "--formats", "ismrmrd",
                    "--contrasts", "AXT2,AXFLAIR")
    shards = work / "shards"
    run([py, "-m", "training.prepare", str(sim), str(shards), "--size", "64", "64"])
    steps = 20 if cuda else 2
    cfg = work / "fit.yaml"
    cfg.write_text(f"preset: contextmri-small\nprecision: bf16\nbatch_size: {8 if cuda else 4}\n"
                   "warmup_steps: 5\nlog_every: 1\ncheckpoint_every: 1000\n")
    t0 = time.perf_counter()
    proc = run([py, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port",
                str(_free_port()), "-m", "training.fit", "--config", str(cfg), "--data",
                str(shards), "--out", str(work / "fit"), "--steps", str(steps), "--no-resume"])
    log = proc.stderr
    head = re.search(r"process group (\w+), precision (\w+)", log)
    losses = [float(x) for x in re.findall(r"step \d+/\d+ loss ([\d.eE+-]+|nan|inf)", log)]
    res = {"steps": steps, "wall_s": round(time.perf_counter() - t0, 1),
           "process_group": head.group(1) if head else None,
           "precision": head.group(2) if head else None, "losses": losses,
           "checkpoint": (work / "fit" / "model").is_dir()}
    if not head or not res["checkpoint"] or not all(math.isfinite(v) for v in losses):
        raise RuntimeError(f"training did not run as expected: {res}; log: {log[-1500:]}")
    if cuda and (res["process_group"], res["precision"]) != ("nccl", "bf16"):
        raise RuntimeError(f"expected NCCL and bf16, got {res}")
    return res
