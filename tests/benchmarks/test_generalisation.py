"""``benchmarks/generalisation.py``: the report's statistics on hand-made rows, the held-out
case table, and a smoke run end to end (one 192x192 axial case, x8, 2 seeds, 3 DDS steps) that
resumes without redoing anything."""

from __future__ import annotations

import csv
import shutil

import pytest

from benchmarks.generalisation import (CASES, MASKS, SWAP_MASK, expected, main, mask_spec,
                                       parse_args, wrong)
from benchmarks.generalisation_report import (below_sense, paired_difference, seed_stats,
                                              target_gain)
from contextmri_core.data.metadata import ScanMetadata


def row(method, seed, psnr_head, *, case="ax256", mask="uniform1d:4", plane="axial",
        matrix=256, ssim_head=0.9):
    return {"case": case, "mask": mask, "plane": plane, "matrix": matrix, "method": method,
            "seed": seed, "psnr": psnr_head, "ssim": ssim_head, "psnr_head": psnr_head,
            "ssim_head": ssim_head, "seconds": 1.0, "spacing_mm": 0.9}


def test_seed_stats_average_cases_first_then_seeds():
    rows = [row("d", 0, 30, case="a"), row("d", 0, 32, case="b"),
            row("d", 1, 34, case="a"), row("d", 1, 36, case="b")]
    mean, std, n = seed_stats(rows, "psnr_head")
    assert (mean, n) == (33.0, 2) and std == pytest.approx(2 ** 0.5 * 2)


def test_targets_and_below_sense():
    rows = [row("dds_cfg1", s, 31 + s) for s in range(3)] + [row("bart_pics_l1", 0, 30),
                                                            row("sense", 0, 33)]
    gain = target_gain(rows)
    assert len(gain) == 1 and gain[0]["gain_db"] == pytest.approx(2.0) and gain[0]["met"]
    assert below_sense(rows) == (1, 1)
    rows[-2]["ssim_head"] = 0.95  # BART's SSIM higher: not met
    assert not target_gain(rows)[0]["met"]


def test_paired_difference_pairs_by_case_mask_and_seed():
    rows = [row("a", s, 30 + s) for s in range(3)] + [row("b", s, 29 + s) for s in range(3)]
    mean, std, n = paired_difference(rows, "a", "b")
    assert (mean, std, n) == (1.0, 0.0, 3)


def test_cases_cover_planes_matrices_and_every_contrast():
    assert {c.plane for c in CASES} == {"axial", "coronal", "sagittal"}
    assert {(c.matrix, c.plane) for c in CASES if c.matrix == 192} == {
        (192, p) for p in ("axial", "coronal", "sagittal")}
    assert all(0.8 <= c.spacing_mm <= 1.0 for c in CASES if c.matrix == 256)
    assert {c.protocol for c in CASES} == {"AXT1", "AXT1PRE", "AXT1POST", "AXT2", "AXFLAIR", "AXPD"}
    assert min(c.seed for c in CASES) >= 7000


def test_masks_keep_contextmri_centres_but_enough_acs():
    assert mask_spec("uniform1d:8", 256) == "uniform1d:8:0.0400"  # 10 lines
    assert int(192 * float(mask_spec("uniform1d:8", 192).split(":")[2])) >= 8
    assert mask_spec("uniform1d:4", 256) == "uniform1d:4:0.0800"
    assert mask_spec("poisson2d:8", 256) == "poisson2d:8"


def test_wrong_metadata_changes_one_field():
    meta = ScanMetadata(contrast="T1", slice_plane="coronal", pixel_spacing_mm=1.0)
    assert wrong(meta, "contrast").contrast == "T2" and wrong(meta, "contrast").slice_plane == "coronal"
    assert wrong(meta, "plane").slice_plane == "axial"
    assert wrong(meta, "spacing").pixel_spacing_mm == 2.0


@pytest.mark.skipif(shutil.which("bart") is None, reason="Debian package 'bart' missing")
def test_quick_run_end_to_end_and_resume(tmp_path, capsys):
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    out = tmp_path / "quick"
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("generalisation ") and "swap_contrast=" in last
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    args = parse_args(["--quick"])
    want = {(m, str(s)) for m, s in expected(args, SWAP_MASK)}
    assert {(r["method"], r["seed"]) for r in rows} == want
    assert all(float(r["psnr_head"]) > 10 for r in rows)
    assert (out / "generalisation.md").is_file() and (out / "figure_uniform1d_8.png").is_file()
    n = len(rows)
    assert main(["--quick", "--out", str(tmp_path)]) == 0  # resume: nothing to redo
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == n
