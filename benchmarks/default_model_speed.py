"""``contextmri replay`` of one 4-slice 256x256 volume (8 coils, uniform1d x4) with the shipped
default model against the previous one (git ``OLD_MODEL_COMMIT``), whole processes run
alternately (new, old, new, old, ...) so that both see the same machine load; prints the
median wall times and their ratio.

    .venv/bin/python benchmarks/default_model_speed.py [--repeats 2] [--steps 50] [--quick]

The last line is ``default_model_speed new_over_old=<ratio> new_s=<s> old_s=<s>``; issue 15's
bound is a ratio of at most 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generalisation import OLD_MODEL_COMMIT, old_model  # noqa: E402
from contextmri_core.models import DEFAULT_MODEL_DIR  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "contextmri_core.cli.main"]


def simulate_volume(out: Path, matrix: int) -> Path:
    """One 4-slice AXT1 volume, 8 coils, uniform1d x4 (held-out seed 2027)."""
    subprocess.run([*CLI, "simulate", "--out", str(out), "--seed", "2027", "--n-subjects", "0",
                    "0", "1", "--contrasts", "AXT1", "--acceleration", "4", "--slices", "4",
                    "--matrix", str(matrix), "--coils", "8", "--formats", "ismrmrd"],
                   check=True, capture_output=True, cwd=ROOT)
    return next(out.rglob("*.h5"))


def replay_seconds(scan: Path, model: Path, out: Path, steps: Optional[int]) -> float:
    """Wall time of one whole ``contextmri replay`` process (imports and model load included)."""
    extra = ["--steps", str(steps)] if steps else []
    t0 = time.perf_counter()
    proc = subprocess.run([*CLI, "replay", str(scan), "--out", str(out), "--model", str(model),
                           "--no-progress", *extra], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"replay with {model} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2, help="runs of each model (default 2)")
    p.add_argument("--steps", type=int, default=None,
                   help="DDS steps (default: replay's own default)")
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument("--new-model", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--old-model", type=Path, default=None,
                   help=f"default: extracted from git {OLD_MODEL_COMMIT}")
    p.add_argument("--quick", action="store_true", help="smoke run: 32x32, 2 steps, 1 repeat")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.matrix = 1, 2, 32
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scan = simulate_volume(tmp / "sim", args.matrix)
        old = args.old_model or old_model(tmp / "old_model")
        times: Dict[str, List[float]] = {"new": [], "old": []}
        for i in range(args.repeats):
            for name, model in (("new", args.new_model), ("old", old)):
                times[name].append(replay_seconds(scan, model, tmp / f"{name}{i}", args.steps))
                print(f"{name} model, run {i + 1}: {times[name][-1]:.1f} s", flush=True)
    new_s, old_s = statistics.median(times["new"]), statistics.median(times["old"])
    figures = {"new_s": new_s, "old_s": old_s, "new_over_old": new_s / old_s,
               "matrix": args.matrix, "steps": args.steps or "replay default",
               "repeats": args.repeats}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(f"default_model_speed new_over_old={new_s / old_s:.3f} new_s={new_s:.1f} "
          f"old_s={old_s:.1f}")
    return figures


if __name__ == "__main__":
    main()
