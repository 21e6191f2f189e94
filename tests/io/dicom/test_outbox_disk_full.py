"""The outbox on a full disk (issue 13 item 7): a series is queued whole or not at all.

Runs the real ``Outbox.enqueue`` in a private mount namespace on a 12 KiB tmpfs (three
pages): the fourth instance does not fit, and the three already copied are taken back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.mrd_helpers import REPO, child_env
from tests.orthanc import write_mr_instances

SCRIPT = """
import sys
from pathlib import Path
from contextmri_core.errors import InputFileError
from contextmri_core.io.dicom.outbox import Outbox
box = Outbox(Path(sys.argv[1]) / "outbox")
try:
    box.enqueue(sorted(Path(sys.argv[2]).glob("*.dcm")))
    print("queued")
except InputFileError as exc:
    print("error:", exc)
print("left:", sorted(p.name for p in box.root.iterdir()))
"""


def test_a_series_that_does_not_fit_leaves_nothing_queued(tmp_path):
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --mount is not permitted here")
    write_mr_instances(tmp_path / "series", 6)
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-ec",
         f"mount -t tmpfs -o size=12k tmpfs {disk}; "
         f"{sys.executable} -c '{SCRIPT}' {disk} {tmp_path / 'series'}"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=child_env())
    assert proc.returncode == 0, proc.stderr
    assert "No space left on device" in proc.stdout and "none of the 6" in proc.stdout
    assert proc.stdout.strip().endswith("left: []"), proc.stdout
