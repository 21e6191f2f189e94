"""The GPU check's harness, on a CPU: the time guard, partial results, the table, the CI
command. (``bash benchmarks/gpu_check.sh`` itself runs its CPU parts here in a few minutes:
README, "The GPU check".)"""

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu_check import Check, table
from benchmarks.gpu_end_to_end import psnr_between
from benchmarks.gpu_timing import timing_grid

REPO = Path(__file__).resolve().parents[2]


def test_each_part_is_recorded_and_saved_as_it_ends(tmp_path):
    c = Check(tmp_path, time.time() + 100, cuda=False, work=tmp_path / "work")
    c.part("fine", lambda c: {"x": 1}, 30)
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["parts"]["fine"]["status"] == "ok" and saved["parts"]["fine"]["x"] == 1

    def broken(c):
        raise ValueError("boom")

    def slow(c):
        c.run(["sleep", "5"])  # bounded by the part's cap of 1 s
        return {}

    c.part("broken", broken, 30)
    c.part("slow", slow, 1)
    parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert parts["broken"]["status"] == "failed" and "boom" in parts["broken"]["reason"]
    assert parts["slow"]["status"] == "timeout" and parts["slow"]["seconds"] < 4


def test_a_part_without_time_left_is_skipped(tmp_path):
    c = Check(tmp_path, time.time() + 20, cuda=False, work=tmp_path / "work")  # less than the reserve + 10 s
    c.part("late", lambda c: {"never": True}, 30)
    assert c.results["parts"]["late"]["status"] == "skipped"


def test_the_timing_grid_skips_what_does_not_fit():
    loaded = []
    rows = timing_grid({"m": lambda: loaded.append(1)}, (256,), (1, 4), ("bf16",), "cpu",
                       seconds_left=lambda: 3.0)
    assert [r["batch"] for r in rows] == [1, 4] and all("skipped" in r for r in rows)
    assert loaded == []  # a model is loaded only when one of its points runs


def test_table_lists_parts_and_timing_rows():
    results = {"parts": {
        "cpu_tests": {"status": "ok", "seconds": 12.0, "summary": "13 passed in 11.2s"},
        "timing": {"status": "ok", "seconds": 40.0, "rows": [
            {"model": "shipped", "size": 256, "batch": 4, "precision": "bf16",
             "s_per_slice_50_steps": 0.5, "s_per_slice_100_steps": 1.0, "step_s": 0.04,
             "peak_mib": 2048.0, "rel_diff_to_fp32": 0.03},
            {"model": "paper-318M", "size": 320, "batch": 16, "precision": "fp32",
             "skipped": "time: 3 s left"}]}}}
    text = table(results)
    assert "13 passed" in text and "time: 3 s left" in text
    assert re.search(r"shipped\s+256\s+4 bf16\s+0\.500\s+1\.000\s+0\.040\s+2\.00\s+3\.0e-02", text)


def test_psnr_between_volumes():
    ref = np.ones((4, 8, 8))
    assert psnr_between(ref, ref) == float("inf")
    assert psnr_between(ref + 0.1, ref) == pytest.approx(20.0)


def test_ci_runs_readme_test_command_without_cuda_tests():
    readme_second = (REPO / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert '-m "not cuda"' in readme_second and readme_second in ci
    assert '-m "not cuda"' in (REPO / ".ci" / "compat").read_text()


def test_check_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")], check=True)
