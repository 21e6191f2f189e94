"""``contextmri push`` against a real Orthanc 1.10 in a private network namespace.

The module is also the scenario: ``main(orthanc, params)`` below runs inside the namespace
(see ``tests/orthanc.py``); the tests check what it brought back. The last test checks the
CLI's exit codes against pynetdicom's own SCP (no Orthanc needed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from tests.orthanc import run_cli, run_scenario, scenario_workdir, write_mr_instances

TAGS = ("PatientID", "SOPInstanceUID", "Modality")


# ----------------------------------------------------------------------------- in the namespace
def _queued(folder: Path) -> Optional[List[str]]:
    """What a look at the folder shows as queued (the hidden .lock aside); None if missing."""
    if not folder.is_dir():
        return None
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _tags(orthanc) -> List[Dict[str, str]]:
    tags = [orthanc.rest_get(f"/instances/{i}/simplified-tags") for i in orthanc.instances()]
    return [{k: t.get(k) for k in TAGS} for t in tags]


def _stop_midway(orthanc, params: Dict[str, Any]) -> Dict[str, Any]:
    """Push with the library; Orthanc is stopped right after the 2nd instance was stored.
    Orthanc 1.10's DICOM server waits for open associations (ours, idle in ``on_sent``) before
    it stops, so the SIGTERM is followed by SIGKILL after 1 s."""
    from contextmri_core.io.dicom.pacs import Outbox, PacsTarget, find_dicom_files, push

    outbox = Outbox(Path(params["workdir"]) / "outbox2")
    outbox.enqueue(find_dicom_files([Path(params["second"])]))
    sent: List[str] = []

    def on_sent(path: Path) -> None:
        sent.append(path.name)
        if len(sent) == 2:
            orthanc.stop(timeout_s=1.0)

    t0 = time.monotonic()
    report = push(outbox, PacsTarget.parse(orthanc.pacs), retries=2, backoff_s=0.05,
                  on_sent=on_sent)
    return {"sent": report.sent, "failed": report.failed, "errors": list(report.errors),
            "remaining": sorted(p.name for p in report.remaining), "sent_names": sent,
            "pending": sorted(p.name for p in outbox.pending()), "push_s": time.monotonic() - t0}


def main(orthanc, params: Dict[str, Any]) -> Dict[str, Any]:
    """The scenario: CLI echo + push into one Orthanc; a stop mid-run and a resume in another."""
    from tests.orthanc import Orthanc

    work = Path(params["workdir"])
    orthanc.start()
    out: Dict[str, Any] = {"echo": run_cli("push", str(work / "outbox1"), "--pacs", orthanc.pacs,
                                        "--echo-only")}
    out["push"] = run_cli("push", str(work / "outbox1"), "--enqueue", params["first"],
                       "--pacs", orthanc.pacs)
    out["outbox1_left"] = _queued(work / "outbox1")
    out["tags"] = _tags(orthanc)
    orthanc.stop()

    second = Orthanc(work / "orthanc2").start()
    out["midrun"] = _stop_midway(second, params)
    second.start()  # same storage
    out["stored_before_resume"] = len(second.instances())
    out["resume"] = run_cli("push", str(work / "outbox2"), "--pacs", second.pacs)
    out["resume_pending"] = _queued(work / "outbox2")
    out["resume_count"] = len(second.instances())
    return out


# ----------------------------------------------------------------------------- on the host
@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    work = scenario_workdir(tmp_path_factory, "push_orthanc")
    first = write_mr_instances(work / "first", 6, patient_id="PUSH01")
    second = write_mr_instances(work / "second", 6, patient_id="PUSH02")
    result = run_scenario(Path(__file__), {"first": str(work / "first"),
                                           "second": str(work / "second")}, work, timeout_s=90)
    return result, first, second


def test_echo_reaches_orthanc(scenario):
    result, _, _ = scenario
    assert result["echo"]["rc"] == 0, result["echo"]
    assert "ok" in result["echo"]["stdout"]


def test_push_stores_every_instance_with_its_tags(scenario):
    result, first, _ = scenario
    push = result["push"]
    assert push["rc"] == 0, push
    assert push["stdout"].startswith("sent 6, failed 0, still queued 0 in ")
    assert result["outbox1_left"] == []
    got = sorted(result["tags"], key=lambda t: t["SOPInstanceUID"])
    assert got == [{"PatientID": "PUSH01", "SOPInstanceUID": uid, "Modality": "MR"}
                   for uid in sorted(first)]


def test_orthanc_stopping_mid_run_loses_nothing(scenario):
    result, _, second = scenario
    mid = result["midrun"]
    assert mid["sent"] == 2 and mid["failed"] == 4, mid
    names = sorted(f"{uid}.dcm" for uid in second)
    assert mid["remaining"] == mid["pending"] == sorted(set(names) - set(mid["sent_names"]))
    assert len(mid["remaining"]) == 4
    assert result["stored_before_resume"] == 2
    assert result["resume"]["rc"] == 0, result["resume"]
    assert result["resume"]["stdout"].startswith("sent 4, failed 0, still queued 0")
    assert result["resume_pending"] == [] and result["resume_count"] == 6


def test_cli_exit_codes_against_a_local_scp(tmp_path, capsys):
    """Without Orthanc: exit 0 when drained, 1 when something stays or is rejected, 2 for bad
    arguments; --enqueue keeps the originals."""
    from contextmri_core.cli.main import main as cli
    from tests.io.dicom.test_pacs import FakePacs

    files = write_mr_instances(tmp_path / "results", 3)
    outbox, pacs = tmp_path / "outbox", FakePacs()
    try:
        spec = f"127.0.0.1:{pacs.port}:FAKEPACS"
        assert cli(["push", str(outbox), "--enqueue", str(tmp_path / "results"),
                    "--pacs", spec]) == 0
        assert capsys.readouterr().out == f"sent 3, failed 0, still queued 0 in {outbox}\n"
        assert sorted(pacs.received) == sorted(files) and all(p.exists() for p in files.values())
        (outbox / "junk.dcm").write_text("junk")
        assert cli(["push", str(outbox), "--pacs", spec]) == 1
        assert "1 rejected" in capsys.readouterr().out
        pacs.fail.update(files)
        assert cli(["push", str(outbox), "--enqueue", *map(str, files.values()), "--pacs", spec,
                    "--retries", "0"]) == 1
        assert capsys.readouterr().out.startswith("sent 0, failed 3, still queued 3 in ")
    finally:
        pacs.server.shutdown()
    assert cli(["push", str(tmp_path / "nowhere"), "--pacs", spec]) == 2
    assert cli(["push", str(outbox), "--enqueue", str(tmp_path / "missing"), "--pacs", spec]) == 2
    assert cli(["push", str(outbox), "--pacs", "no-port:ORTHANC"]) == 2
