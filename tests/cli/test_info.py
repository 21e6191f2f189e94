"""``contextmri info``: text and JSON output, bad files, and one real subprocess run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from contextmri_core.cli.main import main
from contextmri_core.data.metadata import ScanMetadata

ROOT = Path(__file__).resolve().parents[2]
HEADER = (ROOT / "tests" / "fixtures" / "fastmri_brain_axflair_header.xml").read_bytes()
PROMPT0 = ("brain, Slice 0, FLAIR, Sequence: TurboSpinEcho, TR: 9000, TE: 86, TI: 2500, "
           "Flip angle: 150")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("info")
    tool = "ismrmrd_generate_cartesian_shepp_logan"
    assert shutil.which(tool), f"{tool} missing: install Debian's ismrmrd-tools"
    subprocess.run([tool, "-C", "-a", "2", "-w", "32", "-m", "64", "-c", "4", "-o", "sl.h5"],
                   cwd=out, check=True, capture_output=True, timeout=60)
    kspace = np.zeros((2, 3, 640, 16), dtype=np.complex64)
    mask = np.zeros(16, dtype=bool)
    mask[[0, 4, 6, 7, 8, 9, 12]] = True
    kspace[..., mask] = 1.0
    fastmri = out / "file_brain_AXFLAIR_200_6002425.h5"
    with h5py.File(fastmri, "w") as f:
        f["kspace"] = kspace
        f["mask"] = mask
        f["ismrmrd_header"] = np.frombuffer(HEADER, dtype="S%d" % len(HEADER))[0]
        f.attrs["acquisition"] = "AXFLAIR"
    (out / "broken.h5").write_text("not hdf5")
    return {"sl": out / "sl.h5", "fastmri": fastmri, "broken": out / "broken.h5"}


def test_text_output(files, capsys):
    assert main(["info", str(files["sl"]), str(files["fastmri"])]) == 0
    out = capsys.readouterr().out
    assert "noise scans:  1 (4 coils x 128 samples)" in out
    assert "ACS lines:    32 (flagged)" in out and "acceleration: 2" in out
    assert "encoded 64 x 64" in out and "readout oversampling 2" in out
    assert "ACS lines:    4 (detected centre block)" in out
    assert f"slice 0: {PROMPT0}" in out and "HeadNeck_20:1:H13" in out


def test_json_output(files, capsys):
    assert main(["info", "--json", "--anatomy", "knee", str(files["sl"]),
                 str(files["fastmri"])]) == 0
    sl, fm = json.loads(capsys.readouterr().out)
    assert sl["file"] == str(files["sl"])
    assert set(sl["metadata"]) == set(ScanMetadata().to_dict())
    assert sl["metadata"]["anatomy"] == "knee" and sl["metadata"]["tr_ms"] is None
    assert sl["acs_lines"] == 32 and sl["acceleration"] == pytest.approx(2.0)
    assert sl["noise_scans"]["acquisitions"] == 1 and sl["coils"]["count"] == 4
    assert sl["matrix"]["encoded"] == [64, 64] and sl["slices"] == [
        {"slice": 0, "prompt": "knee, Slice 0", "acceleration": 2.0, "acs_lines": 32}]
    assert fm["noise_scans"] is None and fm["acs_lines"] == 4
    assert fm["matrix"]["encoded"] == [16, 320] and fm["matrix"]["recon"] == [260, 320]
    assert fm["acceleration"] == pytest.approx(16 / 7, abs=1e-3)
    assert [s["slice"] for s in fm["slices"]] == [0, 1]
    assert fm["slices"][0]["prompt"] == PROMPT0.replace("brain", "knee")


def test_bad_file_reported_and_others_processed(files, capsys):
    code = main(["info", "--json", str(files["broken"]), str(files["sl"])])
    captured = capsys.readouterr()
    assert code != 0
    assert "broken.h5" in captured.err and "not an HDF5" in captured.err
    bad, good = json.loads(captured.out)
    assert "broken.h5" in bad["error"] and good["acs_lines"] == 32


def test_subprocess(files):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "contextmri_core.cli.main", "info", str(files["fastmri"]),
         str(ROOT / "no_such_file.h5")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    assert PROMPT0 in proc.stdout
    assert "no_such_file.h5: no such file" in proc.stderr
