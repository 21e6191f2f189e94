"""``benchmarks/quality.py`` end to end in a smoke configuration (1 simulated T2 slice at the
shipped model's matrix 128, 2 DDS steps, a 2-sample ensemble; ~25 s on 2 cores), and BART's
axis order."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from benchmarks.bart import BART_METHODS, from_bart, to_bart
from benchmarks.quality import MASKS, check_masks, main

pytestmark = pytest.mark.skipif(shutil.which("bart") is None,
                                reason="Debian package 'bart' missing (run .ci/install)")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    assert main(["--quick", "--steps", "2", "--ensemble", "2", "--out", str(out)]) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return out, rows


def test_bart_layout_round_trip():
    k = np.arange(2 * 3 * 5).reshape(2, 3, 5) + 0j  # (C, ky, kx)
    b = to_bart(k)
    assert b.shape == (5, 3, 1, 2) and b[4, 1, 0, 1] == k[1, 1, 4]
    assert np.array_equal(from_bart(b[..., 0]), k[0])


def test_outputs_exist_and_cover_every_mask_and_method(quick_run):
    out, rows = quick_run
    assert (out / "quality.md").is_file()
    for spec in MASKS:
        assert (out / f"figure_{spec.replace(':', '_')}.png").stat().st_size > 1000
    methods = {"zero_filled", "sense", "l1_wavelet", *BART_METHODS,
               "dds_cfg0", "dds_cfg1", "dds_cfg2", "dds_cfg3", "dds_cfg1_ens2"}
    assert {(r["mask"], r["method"]) for r in rows} == {(m, n) for m in MASKS for n in methods}
    assert all(np.isfinite(float(r["psnr"])) and float(r["seconds"]) >= 0 for r in rows)
    assert "## uniform1d:4" in (out / "quality.md").read_text()


def test_bart_zero_filled_image_matches_ours(quick_run):
    """Catches a swapped x/y (correlation ~0.65) or a wrong coil axis (garbage or a crash)."""
    out, _ = quick_run
    checks = json.loads((out / "bart_check.json").read_text())
    for per_mask in checks.values():
        for c in per_mask.values():
            assert c["corr"] > 0.99 and c["corr_transposed"] < 0.9
            assert abs(c["scale"] - 1) < 1e-3  # both unitary centred FFTs


def test_bart_l1_beats_zero_filled_at_uniform1d_x4(quick_run):
    _, rows = quick_run
    psnr = {r["method"]: float(r["psnr"]) for r in rows if r["mask"] == "uniform1d:4"}
    assert psnr["bart_pics_l1"] > psnr["zero_filled"] + 2


def test_masks_with_too_few_acs_lines_are_refused_up_front():
    """ContextMRI's uniform1d:8 keeps int(128 * 0.04) = 5 centre lines: ESPIRiT needs 8."""
    with pytest.raises(SystemExit, match="uniform1d:8:0.0625"):
        check_masks(["uniform1d:8"], 128, 1000)
    check_masks(list(MASKS), 128, 1000)


def test_bart_pics_image_is_not_transposed():
    """BART pics on a non-square, asymmetric phantom returns our (ny, nx) orientation."""
    from contextmri_core.physics.fft import fft2c

    ny, nx, c = 48, 40, 4
    yy, xx = np.mgrid[:ny, :nx]
    img = ((np.abs(yy - 20) < 12) & (np.abs(xx - 16) < 6)).astype(np.complex64)
    maps = np.stack([np.exp(-((yy - ny * i / c) ** 2) / 800.0) for i in range(c)])
    maps = maps.astype(np.complex64)
    k = fft2c(torch.from_numpy(maps * img))[None]
    out = BART_METHODS["bart_pics_l2"](k, torch.ones(ny, nx), torch.from_numpy(maps)).image[0]
    assert out.shape == (ny, nx)
    assert np.corrcoef(np.abs(out.numpy()).ravel(), np.abs(img).ravel())[0, 1] > 0.95
