"""The training data path, side by side: the streaming pipeline (``training.data``) against
the old in-memory path (``load_shards`` + ``TensorDataset``).

1. **Memory**: peak RSS of one rank (a fresh process each) training a few steps on 1x and 10x
   as many 256x256 shards, streaming and in-memory. Target: streaming 10x / 1x <= 1.2.
2. **Training throughput** (slices/s) on the same 128x128 shards, streaming vs in-memory, in
   ONE process that alternates the two paths step by step on the same model (so both see the
   same machine load). Target: streaming / in-memory >= 0.9.
3. **The lead's CPU scenario**: native 128-320 px shards at 0.69-1.72 mm, 128 px random crops,
   batch 6, every augmentation on (resampling to 0.7-1.8 mm, flips, phase, shading), with 0
   and 1 loader workers: slices/s and the share of wall time spent waiting for data.
4. **Loader alone** (no training) on that data with 0 and 2 workers, in slices/s, against the
   measured CPU step rate and a GPU step estimated from the network's FLOPs (counted with
   ``torch.utils.flop_counter`` on the meta device; training ~ 3x the forward) at an assumed
   sustained ``--gpu-tflops`` (default 200 TFLOP/s, bf16).

    .venv/bin/python benchmarks/train_data.py [--out benchmarks/results/train_data.json]
        [--steps 6] [--threads 2] [--gpu-tflops 200] [--quick]

Writes the JSON and prints a table. A few minutes on 2 idle CPU cores (``--quick``: less);
the machine's load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from contextmri_core.data.metadata import ScanMetadata  # noqa: E402
from contextmri_core.io.models.shard_manifest import write_manifest  # noqa: E402
from contextmri_core.io.models.shards import Shard, write_shard  # noqa: E402
from contextmri_core.physics.fft import ifft2c  # noqa: E402
from contextmri_core.physics.mvue import normalise  # noqa: E402

MODEL = {"preset": "contextmri-small", "encoder": {"kind": "structured"}, "lr": 2e-4,
         "warmup_steps": 1, "log_every": 1000, "checkpoint_every": 100000}
LEAD_AUGMENT = {"random_phase": True, "flip_lr": True, "intensity_scale": [0.8, 1.25],
                "resample_spacing_mm": [0.7, 1.8]}


# ------------------------------------------------------------------------------ data
def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """``(n, size, size)`` complex64 band-limited random images, normalised like targets."""
    g = torch.Generator().manual_seed(seed)
    band = max(8, size // 6)
    k = torch.zeros(n, size, size, dtype=torch.complex64)
    lo = size // 2 - band // 2
    k[:, lo:lo + band, lo:lo + band] = torch.randn(n, band, band, dtype=torch.complex64, generator=g)
    return normalise(ifft2c(k))[0]


def write_shards(folder: Path, sizes: List[int], slices: int, fov_mm: float = 220.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, size in enumerate(sizes):
        metas = tuple(ScanMetadata(anatomy="brain", contrast=("T2", "FLAIR", "T1")[k % 3],
                                   slice_index=i, tr_ms=9000.0, te_ms=90.0, slice_plane="axial",
                                   pixel_spacing_mm=fov_mm / size, slice_thickness_mm=5.0)
                      for i in range(slices))
        write_shard(folder / f"scan{k:04d}.safetensors",
                    Shard(x=smooth_images(slices, size, k), scale=torch.ones(slices),
                          metadata=metas, prompts=("",) * slices, source=f"scan{k}.h5",
                          slices=tuple(range(slices))))
    write_manifest(folder)
    return folder


def make_data(base: Path, shards: int, slices: int, lead_shards: int) -> Dict[str, str]:
    """x1 / x10: 256x256 shards (x1 = the first ``shards`` of x10, as links); same128: 128x128
    shards for the throughput comparison; lead: native 128-320 mixed."""
    x10 = write_shards(base / "x10", [256] * (10 * shards), slices)
    x1 = base / "x1"
    x1.mkdir()
    for p in sorted(x10.glob("*.safetensors"))[:shards]:
        (x1 / p.name).symlink_to(p)
    write_manifest(x1)
    same = write_shards(base / "same128", [128] * shards, slices)
    lead = write_shards(base / "lead", [(128, 192, 256, 320)[k % 4] for k in range(lead_shards)],
                        slices)
    return {"x1": str(x1), "x10": str(x10), "same128": str(same), "lead": str(lead)}


# ------------------------------------------------------------------------------ children
def memory_batches(data: str, batch: int, patch: int, seed: int = 0):
    """The old path: every shard concatenated in memory, a shuffling DistributedSampler;
    centre crops to ``patch`` (as the old ``prepare --size`` stored them)."""
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from contextmri_core.io.models.shards import list_shards, load_shards
    from contextmri_core.physics.mvue import center_crop
    from training.data import Batch

    x, meta, ids = load_shards(list_shards(data))
    x = center_crop(x, (patch, patch))
    ds = TensorDataset(x, torch.arange(x.shape[0]))
    epoch = 0
    while True:
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=seed,
                                     drop_last=True)
        sampler.set_epoch(epoch)
        for xb, idx in DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=True):
            yield Batch(xb, [meta[i] for i in idx.tolist()],
                        torch.tensor([epoch * 1_000_003 + i for i in idx.tolist()]),
                        [(0, i, epoch) for i in idx.tolist()])
        epoch += 1


def peak_rss_mib() -> Dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mib": round(me, 1), "peak_rss_worker_mib": round(kids, 1)}


def _trainer(spec: dict):
    from training.config import load_config
    from training.distributed import Dist
    from training.trainer import Trainer

    cfg = load_config(None, {**MODEL, "data": spec["data"], "out": spec["out"],
                             "batch_size": spec["batch"], "patch_size": [spec["patch"]] * 2,
                             "num_workers": spec.get("workers", 0),
                             "augment": spec.get("augment", {})})
    return Trainer(cfg, Dist())


def _stream(t):
    from training.loader import epochs

    return (b for _, _, b in epochs(t.train.loader, t.train.sampler, 0, 0))


def child_train(spec: dict) -> dict:
    """Train ``steps`` steps (after 2 warm-up steps); slices/s, data wait, peak RSS."""
    t = _trainer(spec)
    batches = (memory_batches(spec["data"], spec["batch"], spec["patch"]) if spec["mode"] == "memory"
               else _stream(t))
    wait = slices = 0.0
    for k in range(2 + spec["steps"]):
        if k == 2:
            t0, wait = time.perf_counter(), 0.0
        w0 = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - w0
        t.train_step(batch)
        slices += len(batch) if k >= 2 else 0
    wall = time.perf_counter() - t0
    return {"slices_per_s": round(slices / wall, 3), "s_per_step": round(wall / spec["steps"], 3),
            "data_wait_frac": round(wait / wall, 4), **peak_rss_mib()}


def child_alternate(spec: dict) -> dict:
    """One model, the two data paths in turn, step by step: slices/s of each."""
    t = _trainer(spec)
    paths = {"stream": _stream(t), "memory": memory_batches(spec["data"], spec["batch"], spec["patch"])}
    wall = {"stream": 0.0, "memory": 0.0}
    fetch = dict(wall)
    slices = dict(wall)
    for k in range(1 + spec["steps"]):
        for name, it in paths.items():
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            t.train_step(batch)
            if k:  # the first round warms up
                wall[name] += time.perf_counter() - t0
                fetch[name] += t1 - t0
                slices[name] += len(batch)
    return {name: {"slices_per_s": round(slices[name] / wall[name], 3),
                   "fetch_ms_per_step": round(1e3 * fetch[name] / spec["steps"], 2)}
            for name in paths}


def child_loader(spec: dict) -> dict:
    """Iterate the streaming loader only: slices/s after 2 warm-up batches."""
    from contextmri_core.io.models.shard_manifest import index_shards
    from training.augment import AugmentConfig
    from training.data import ShardDataset
    from training.loader import epochs, make_loader
    from training.sampler import ShardBatchSampler

    index = index_shards(spec["data"])
    ds = ShardDataset(index.entries, (spec["patch"],) * 2, AugmentConfig.from_dict(spec["augment"]))
    sampler = ShardBatchSampler([e.num_slices for e in index.entries], spec["batch"], 0)
    it = epochs(make_loader(ds, sampler, spec["workers"], 2, torch.device("cpu")), sampler, 0, 0)
    for _ in range(2):
        next(it)
    t0, n = time.perf_counter(), 0
    for _ in range(spec["batches"]):
        n += len(next(it)[2])
    rate = n / (time.perf_counter() - t0)
    it.close()  # ends the workers, so that their peak RSS is counted
    del it
    gc.collect()
    return {"slices_per_s": round(rate, 2), **peak_rss_mib()}


def run_child(spec: dict, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"child {spec['name']} failed:\n{r.stderr[-3000:]}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"  {spec['name']:<28} {result}", flush=True)
    return result


# ------------------------------------------------------------------------------ FLOPs
def forward_gflop(preset: str, size: int) -> float:
    """Forward FLOPs of one sample through ``preset`` at ``size``^2 (meta device: no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    from contextmri_core.prior.build import new_prior

    with torch.device("meta"):
        prior = new_prior(preset, image_size=(size, size))
        x = torch.zeros(1, size, size, dtype=torch.complex64)
        t = torch.zeros(1, dtype=torch.long)
        cond = torch.zeros(1, prior.encoder.seq_len, prior.encoder.dim)
    with FlopCounterMode(display=False) as fc:
        prior.eps(x, t, cond)
    return fc.get_total_flops() / 1e9


# ------------------------------------------------------------------------------ main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/train_data.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_data.json")
    p.add_argument("--steps", type=int, default=6, help="timed training steps per run")
    p.add_argument("--threads", type=int, default=2, help="torch threads of a training run")
    p.add_argument("--gpu-tflops", type=float, default=200.0,
                   help="assumed sustained GPU throughput for the estimate (TFLOP/s)")
    p.add_argument("--quick", action="store_true", help="fewer steps and shards (smoke run)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def measure(args, base: Path) -> dict:
    shards, steps = (4, 2) if args.quick else (12, args.steps)
    data = make_data(base / "data", shards, 16, 8 if args.quick else 12)
    out = str(base / "runs")
    res: dict = {"rss": {}, "lead": {}, "loader": {}}
    for mode in ("stream", "memory"):
        for scale in ("x1", "x10"):
            spec = {"name": f"rss {mode} {scale}", "mode": mode, "data": data[scale], "out": out,
                    "batch": 2, "patch": 64, "steps": 2}
            res["rss"][f"{mode}_{scale}"] = run_child(spec, args.threads)
    res["rss"]["data_mib"] = {k: round(sum(p.stat().st_size for p in Path(data[k]).glob(
        "*.safetensors")) / 2 ** 20, 1) for k in ("x1", "x10")}
    spec = {"name": "alternate stream/memory", "alternate": True, "data": data["same128"],
            "out": out, "batch": 6, "patch": 128, "steps": steps}
    res["throughput"] = run_child(spec, args.threads)
    for workers in (0, 1):
        spec = {"name": f"lead workers={workers}", "mode": "stream", "data": data["lead"],
                "out": out, "batch": 6, "patch": 128, "steps": steps, "workers": workers,
                "augment": LEAD_AUGMENT}
        res["lead"][f"workers_{workers}"] = run_child(spec, args.threads)
    for workers in (0, 2):
        spec = {"name": f"loader workers={workers}", "loader": True, "data": data["lead"],
                "batch": 6, "patch": 128, "workers": workers, "augment": LEAD_AUGMENT,
                "batches": 10 if args.quick else 40}
        res["loader"][f"workers_{workers}"] = run_child(spec, 1)
    return res


def summarise(res: dict, args) -> dict:
    rss, thr, lead, loader = res["rss"], res["throughput"], res["lead"], res["loader"]
    flops = {"contextmri-small@128": forward_gflop("contextmri-small", 128),
             "contextmri-paper@320": forward_gflop("contextmri-paper", 320)}
    gpu = {k: args.gpu_tflops * 1e3 / (3 * v) for k, v in flops.items()}  # slices/s
    cpu_rate = lead["workers_0"]["slices_per_s"]
    return {
        "rss_ratio_stream_10x_over_1x": round(rss["stream_x10"]["peak_rss_mib"] / rss["stream_x1"]["peak_rss_mib"], 3),
        "rss_ratio_memory_10x_over_1x": round(rss["memory_x10"]["peak_rss_mib"] / rss["memory_x1"]["peak_rss_mib"], 3),
        "throughput_ratio_stream_over_memory": round(thr["stream"]["slices_per_s"] / thr["memory"]["slices_per_s"], 3),
        "lead_cpu_slices_per_s_workers_0_1": [lead["workers_0"]["slices_per_s"], lead["workers_1"]["slices_per_s"]],
        "lead_data_wait_frac_workers_0_1": [lead["workers_0"]["data_wait_frac"], lead["workers_1"]["data_wait_frac"]],
        "forward_gflop_per_slice": {k: round(v, 1) for k, v in flops.items()},
        "gpu_estimate_slices_per_s": {k: round(v, 1) for k, v in gpu.items()},
        "loader_slices_per_s": {k: v["slices_per_s"] for k, v in loader.items()},
        "loader_over_cpu_step": {k: round(v["slices_per_s"] / cpu_rate, 1) for k, v in loader.items()},
        "loader_over_gpu_step": {f"{w}|{m}": round(v["slices_per_s"] / g, 3)
                                 for w, v in loader.items() for m, g in gpu.items()},
    }


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        run = (child_loader if spec.get("loader") else
               child_alternate if spec.get("alternate") else child_train)
        print(json.dumps(run(spec)))
        return 0
    t0, load0 = time.time(), [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="train_data_") as tmp:
        res = measure(args, Path(tmp))
    summary = summarise(res, args)
    doc = {"command": "python benchmarks/train_data.py " + " ".join(argv or sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load0,
                       "torch": torch.__version__, "threads": args.threads},
           "gpu_tflops_assumed": args.gpu_tflops, "results": res, "summary": summary,
           "seconds": round(time.time() - t0, 1)}
    doc["machine"]["load_avg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for k, v in summary.items():
        print(f"{k:<38} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
