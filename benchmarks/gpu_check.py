"""The GPU check: everything a short GPU loan should measure, in one unattended run.

    bash benchmarks/gpu_check.sh          # installs what is missing, then runs this

Parts, in this order, each bounded by the time left (the whole check, install included,
never runs past 600 s: ``--deadline``), each written to the JSON as soon as it ends:

1. ``environment``: torch, CUDA, GPU, driver, commit.
2. ``cpu_tests``: the CPU tests of the GPU code path (forced GPU branch under CPU autocast,
   half weights, the meta device, host reads counted in the DDS loop, torchrun plumbing).
3. ``cuda_tests``: ``pytest -m cuda`` (sync-free DDS loop, GPU vs CPU images and maps).
4. ``replay``: ``contextmri replay`` of a simulated 4-slice scan (fully sampled, undersampled
   uniform1d x4 by replay, 50 steps) on the CPU and on the GPU: wall times, PSNR/SSIM of
   each against the fully sampled reference, PSNR of the GPU images against the CPU ones.
5. ``training``: ``torchrun --nproc_per_node 1 -m training.fit``, 20 steps, NCCL, bf16.
6. ``timing``: ``gpu_timing.timing_grid`` over the shipped model and the paper-size preset
   (318M), 256 and 320 pixels, batch 1/4/16, fp32/bf16/fp16: seconds per slice at 50 and
   100 steps and peak memory; it gets whatever time is left.

Without CUDA it says so, runs the CPU parts (1, 2, the CPU half of 4, 5 on gloo in fp32 for
2 steps, 6 at one small point: every harness runs before a GPU day depends on it) and exits
0 if they pass. Output: ``$GPU_CHECK_OUT/gpu_check.json`` (default ``gpu_check_out/``) and
a short table on stdout; scratch data in ``gpu_check_out/work``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

RESERVE_S = 15.0  # kept back for writing the JSON and the table


class Check:
    """The results so far (written after every part) and the time left."""

    def __init__(self, out: Path, deadline: float, cuda: bool, work: Optional[Path] = None) -> None:
        self.out, self.deadline, self.cuda = out, deadline, cuda
        self.work = work or REPO / "gpu_check_out" / "work"
        self.results: Dict[str, object] = {"cuda": cuda, "parts": {}}
        self.py = sys.executable

    def left(self) -> float:
        return self.deadline - time.time() - RESERVE_S

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / ".gpu_check.json.partial"
        tmp.write_text(json.dumps(self.results, indent=1, default=str))
        tmp.replace(self.out / "gpu_check.json")

    def part(self, name: str, fn: Callable[["Check"], Dict[str, object]], cap_s: float) -> None:
        """Run ``fn`` with at most ``cap_s`` (and the time left); record status and seconds."""
        t0 = time.time()
        parts = self.results["parts"]
        if self.left() < 10:
            parts[name] = {"status": "skipped", "reason": "no time left"}
        else:
            self.cap = min(cap_s, self.left())
            try:
                parts[name] = {"status": "ok", **fn(self)}
            except subprocess.TimeoutExpired as exc:
                cmd = " ".join(str(a) for a in exc.cmd)
                parts[name] = {"status": "timeout", "reason": f"{cmd[:200]} > {exc.timeout:.0f} s"}
            except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others
                parts[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[-2000:]}
        parts[name]["seconds"] = round(time.time() - t0, 1)
        print(f"[gpu_check] {name}: {parts[name]['status']} ({parts[name]['seconds']} s)",
              flush=True)
        self.save()

    def run(self, args: List[str], timeout: Optional[float] = None, **env) -> subprocess.CompletedProcess:
        """A subprocess in the repository, bounded by the part's cap; raises on failure."""
        environ = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                       HF_HUB_OFFLINE="1", **env)
        limit = max(1.0, min(timeout or self.cap, self.left()))
        proc = subprocess.run(args, cwd=REPO, env=environ, capture_output=True, text=True,
                              timeout=limit)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[-6:])} exited {proc.returncode}: "
                               f"{(proc.stdout + proc.stderr)[-1500:]}")
        return proc


def environment(c: Check) -> Dict[str, object]:
    import diffusers

    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "diffusers": diffusers.__version__, "cuda_runtime": torch.version.cuda,
           "cpu_threads": torch.get_num_threads()}
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    env["commit"] = git.stdout.strip() or None
    if c.cuda:
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        env["driver"] = smi.stdout.strip() or None
    return env


def _pytest(c: Check, args: List[str]) -> Dict[str, object]:
    proc = subprocess.run([c.py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=c.cap,
                          env=dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else proc.stderr[-500:]
    out = {"summary": summary.strip("= ")}
    if proc.returncode not in (0, 5):  # 5: nothing collected/selected
        raise RuntimeError(f"pytest {' '.join(args)}: {summary}\n{proc.stdout[-3000:]}")
    return out


GPU_PATH_TESTS = ["tests/recon/test_gpu_path.py", "tests/sampling/test_host_sync.py",
                  "tests/training/test_distributed.py"]


def cpu_tests(c: Check) -> Dict[str, object]:
    return _pytest(c, GPU_PATH_TESTS)


def cuda_tests(c: Check) -> Dict[str, object]:
    if not c.cuda:
        return {"status": "skipped", "reason": "no CUDA"}
    return _pytest(c, ["-m", "cuda", "-rs", "tests"])


def replay(c: Check) -> Dict[str, object]:
    from benchmarks.gpu_end_to_end import replay_cpu_vs_gpu

    return replay_cpu_vs_gpu(c.run, c.py, c.work / "replay", c.cuda)


def training(c: Check) -> Dict[str, object]:
    from benchmarks.gpu_end_to_end import torchrun_training

    return torchrun_training(c.run, c.py, c.work / "training", c.cuda)


def timing(c: Check) -> Dict[str, object]:
    from benchmarks.gpu_timing import timing_grid
    from contextmri_core.io.models.checkpoint import load_prior
    from contextmri_core.models import DEFAULT_MODEL_DIR
    from contextmri_core.prior.build import new_prior

    dev = "cuda" if c.cuda else "cpu"

    def paper():
        with torch.device(dev):
            return new_prior("contextmri-paper", image_size=(320, 320)).eval()

    models = {"shipped": lambda: load_prior(DEFAULT_MODEL_DIR, dev), "paper-318M": paper}
    rows: List[dict] = []
    c.results["parts"]["timing"] = {"status": "running", "rows": rows}

    def on_row(row: dict) -> None:
        rows.append({k: v for k, v in row.items() if k != "image"})
        c.save()

    if c.cuda:
        grid = timing_grid(models, (256, 320), (1, 4, 16), ("bf16", "fp16", "fp32"), dev,
                           c.left, on_row)
    else:  # one small point on the CPU: the harness runs, the figure means little
        grid = timing_grid({"shipped": models["shipped"]}, (64,), (1,), ("fp32",), dev,
                           c.left, on_row, coils=4)
    return {"rows": [{k: v for k, v in r.items() if k != "image"} for r in grid]}


def _fmt(v, spec: str = ".3f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def _gib(mib: Optional[float]) -> Optional[float]:
    return None if mib is None else mib / 1024


def table(results: Dict[str, object]) -> str:
    """The short table: one line per part, then the timing grid."""
    parts = results["parts"]
    lines = ["", "part          status    seconds  figures"]
    for name, p in parts.items():
        fig = ""
        if name == "replay" and "cpu" in p:
            fig = (f"cpu dds {_fmt(p['cpu']['scores']['dds']['psnr'], '.2f')} dB"
                   f" ({p['cpu']['wall_s']} s)")
            if "cuda" in p:
                fig += (", gpu dds " + _fmt(p["cuda"]["scores"]["dds"]["psnr"], ".2f")
                        + f" dB, gpu vs cpu {_fmt(p.get('gpu_vs_cpu_psnr_db'), '.2f')} dB"
                        + f", wall cpu/gpu {p['cpu']['wall_s']}/{p['cuda']['wall_s']} s")
        elif name == "training" and "losses" in p:
            fig = f"{p['process_group']} {p['precision']} {p['steps']} steps, losses {p['losses']}"
        elif "summary" in p or "reason" in p:
            fig = str(p.get("summary") or p.get("reason"))[:90]
        lines.append(f"{name:<13} {p.get('status', '?'):<9} {_fmt(p.get('seconds'), '7.1f')}  {fig}")
    rows = parts.get("timing", {}).get("rows", [])
    if rows:
        lines += ["", "model       size batch prec  s/slice@50 s/slice@100  step_s  peak_GiB  vs_fp32"]
        for r in rows:
            note = r.get("skipped") or r.get("error")
            vals = ("  " + str(note)[:60]) if note else (
                f"  {_fmt(r.get('s_per_slice_50_steps'), '10.3f')} {_fmt(r.get('s_per_slice_100_steps'), '11.3f')}"
                f" {_fmt(r.get('step_s'), '7.3f')} {_fmt(_gib(r.get('peak_mib')), '9.2f'):>9}"
                f"  {_fmt(r.get('rel_diff_to_fp32'), '.1e')}")
            lines.append(f"{r['model']:<11} {r['size']:>4} {r['batch']:>5} {r['precision']:<5}{vals}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deadline", type=float, default=None,
                    help="epoch seconds by which everything must be written (default: now + 600)")
    args = ap.parse_args(argv)
    deadline = args.deadline or time.time() + 600
    cuda = torch.cuda.is_available()
    out = Path(os.environ.get("GPU_CHECK_OUT", REPO / "gpu_check_out"))
    c = Check(out, deadline, cuda)
    signal.signal(signal.SIGTERM, lambda *a: (c.results.update(interrupted=True), c.save(),
                                               sys.exit(1)))
    if not cuda:
        print("[gpu_check] no CUDA GPU here: running the CPU parts only", flush=True)
    c.part("environment", environment, 30)
    c.part("cpu_tests", cpu_tests, 240)
    c.part("cuda_tests", cuda_tests, 150)
    c.part("replay", replay, 150 if cuda else 180)
    c.part("training", training, 120)
    c.part("timing", timing, 600)
    c.results["total_s"] = round(600 - (deadline - time.time()), 1)
    c.save()
    print(table(c.results))
    print(f"[gpu_check] results: {out / 'gpu_check.json'}")
    failed = [n for n, p in c.results["parts"].items() if p.get("status") in ("failed", "timeout")]
    if not cuda:
        print("[gpu_check] no CUDA GPU: the GPU parts were not run (CPU parts "
              + ("FAILED: " + ", ".join(failed) if failed else "passed") + ")")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
