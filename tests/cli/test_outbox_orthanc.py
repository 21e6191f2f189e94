"""The outbox against a real Orthanc 1.10 in a private network namespace (issue 13): damaged
instances are never pushed (they go to ``rejected/`` with the reason), and a second push on
a locked outbox says that another push holds it. The module is also the scenario."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from tests.orthanc import REPO, run_cli, run_scenario, scenario_workdir, write_mr_instances

HOLD_LOCK = """
import sys, time
from pathlib import Path
from contextmri_core.io.dicom.outbox import Outbox
with Outbox(Path(sys.argv[1])).lock() as held:
    assert held
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


# ----------------------------------------------------------------------------- in the namespace
def _locked_push(orthanc, outbox: Path) -> Dict[str, Any]:
    """Hold the outbox's lock in another process; push meanwhile; push again after."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(outbox), "30"],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = len(orthanc.instances())
        blocked = run_cli("push", str(outbox), "--pacs", orthanc.pacs)
        blocked["stored"] = len(orthanc.instances()) - before
    finally:
        holder.kill()
        holder.wait(10)
    after = run_cli("push", str(outbox), "--pacs", orthanc.pacs)
    return {"blocked": blocked, "after": after}


def main(orthanc, params: Dict[str, Any]) -> Dict[str, Any]:
    orthanc.start()
    out: Dict[str, Any] = {"push": run_cli("push", params["outbox"], "--pacs", orthanc.pacs)}
    out["stored"] = sorted(orthanc.rest_get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"]
                           for i in orthanc.instances())
    rejected = Path(params["outbox"]) / "rejected"
    out["rejected"] = {p.name[:-len(".reason.txt")]: p.read_text().strip()
                       for p in rejected.glob("*.reason.txt")}
    out["left"] = sorted(p.name for p in Path(params["outbox"]).glob("*.dcm"))
    out["locked"] = _locked_push(orthanc, Path(params["outbox2"]))
    out["stored_total"] = len(orthanc.instances())
    return out


# ----------------------------------------------------------------------------- on the host
def _damage(files: Dict[str, Path], outbox: Path) -> Dict[str, str]:
    """Three damaged copies in the outbox: {file name: what is wrong}."""
    good = list(files.values())
    data = good[0].read_bytes()
    pixel_tag = data.rfind(b"\xe0\x7f\x10\x00")
    cuts = {"cut_before_pixels.dcm": (good[0], pixel_tag, "no PixelData"),
            "cut_in_pixels.dcm": (good[1], len(data) - 7, "pixel data"),
            "cut_in_a_tag.dcm": (good[2], pixel_tag + 3, "end")}
    for name, (src, cut, _) in cuts.items():
        (outbox / name).write_bytes(src.read_bytes()[:cut])
    return {name: why for name, (_, _, why) in cuts.items()}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from contextmri_core.io.dicom.outbox import Outbox

    work = scenario_workdir(tmp_path_factory, "outbox_orthanc")
    good = write_mr_instances(work / "good", 3, patient_id="GOOD01")
    outbox = Outbox(work / "outbox")
    outbox.enqueue(list(good.values()))
    damaged = _damage(good, outbox.root)
    more = write_mr_instances(work / "more", 2, patient_id="LOCK01")
    Outbox(work / "outbox2").enqueue(list(more.values()))
    t0 = time.monotonic()
    result = run_scenario(Path(__file__), {"outbox": str(outbox.root),
                                           "outbox2": str(work / "outbox2")}, work, timeout_s=120)
    result["seconds"] = time.monotonic() - t0
    return result, good, damaged, more


def test_damaged_instances_are_rejected_with_the_reason_and_never_pushed(scenario):
    result, good, damaged, _ = scenario
    assert result["stored"] == sorted(good), result  # the three good ones, nothing else
    assert result["push"]["rc"] == 1  # something was rejected: say so
    assert "3 not DICOM" in result["push"]["stdout"] or "3 rejected" in result["push"]["stdout"]
    assert set(result["rejected"]) == set(damaged)
    for name, why in damaged.items():
        assert why in result["rejected"][name], (name, result["rejected"][name])
    assert result["left"] == []


def test_a_second_push_on_a_locked_outbox_says_another_push_holds_it(scenario):
    result, _, _, more = scenario
    blocked, after = result["locked"]["blocked"], result["locked"]["after"]
    assert blocked["rc"] == 1 and blocked["stored"] == 0
    assert "another push holds" in blocked["stdout"] + blocked["stderr"], blocked
    assert after["rc"] == 0 and after["stdout"].startswith("sent 2, failed 0, still queued 0")
    assert result["stored_total"] == 3 + len(more)
