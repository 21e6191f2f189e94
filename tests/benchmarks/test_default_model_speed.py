"""benchmarks/default_model_speed.py: both models replay the same volume as whole processes and
the ratio is their median times' (smoke run: 32x32, 2 steps)."""

from __future__ import annotations

import json

from benchmarks import default_model_speed
from contextmri_core.models import DEFAULT_MODEL_DIR


def test_quick_run_times_both_models_and_reports_their_ratio(tmp_path, capsys):
    # the shipped model on both sides: the test must not depend on the clone's git history
    figures = default_model_speed.main(["--quick", "--old-model", str(DEFAULT_MODEL_DIR),
                                        "--json", str(tmp_path / "f.json")])
    assert figures["new_s"] > 0 and figures["old_s"] > 0
    assert abs(figures["new_over_old"] - figures["new_s"] / figures["old_s"]) < 1e-9
    assert json.loads((tmp_path / "f.json").read_text())["matrix"] == 32
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("default_model_speed new_over_old=")
