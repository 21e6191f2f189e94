"""``contextmri replay --pacs`` into a real Orthanc 1.10 (private network namespace): every
instance arrives with the header's tags; with Orthanc down the outbox keeps every instance and
a later ``contextmri push`` delivers them. The module is also the scenario (tests/orthanc.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

from tests.orthanc import run_cli, run_scenario, scenario_workdir

TAGS = ("PatientID", "SOPInstanceUID", "SeriesDescription", "RepetitionTime", "EchoTime",
        "FlipAngle", "ImageType")


# ----------------------------------------------------------------------------- in the namespace
def _replay(params: Dict[str, Any], out: Path, pacs: str) -> Dict[str, Any]:
    return run_cli("replay", params["scan"], "--model", params["model"], "--steps", "2",
                "--device", "cpu", "--no-progress", "--phase", "--out", str(out), "--pacs", pacs)


def main(orthanc, params: Dict[str, Any]) -> Dict[str, Any]:
    work = Path(params["workdir"])
    orthanc.start()
    out: Dict[str, Any] = {"up": _replay(params, work / "up", orthanc.pacs)}
    out["tags"] = [{k: t.get(k) for k in TAGS} for t in (
        orthanc.rest_get(f"/instances/{i}/simplified-tags") for i in orthanc.instances())]
    orthanc.stop(timeout_s=1.0)
    out["down"] = _replay(params, work / "down", orthanc.pacs)
    out["queued"] = sorted(p.name for p in (work / "down" / "outbox").glob("*.dcm"))
    orthanc.start()
    before = len(orthanc.instances())
    out["push"] = run_cli("push", str(work / "down" / "outbox"), "--pacs", orthanc.pacs)
    out["added_by_push"] = len(orthanc.instances()) - before
    out["left"] = sorted(p.name for p in (work / "down" / "outbox").glob("*.dcm"))
    return out


# ----------------------------------------------------------------------------- on the host
@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from tests.mrd_helpers import synthetic_scan, tiny_model

    work = scenario_workdir(tmp_path_factory, "replay_pacs")
    params = {"scan": str(synthetic_scan(work / "scan.h5")), "model": str(tiny_model(work / "m"))}
    return run_scenario(Path(__file__), params, work, timeout_s=240), work


def _written(root: Path):
    import pydicom

    return {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, root.rglob("dicom/**/*.dcm"))}


def test_replay_sends_every_instance_with_its_tags(scenario):
    result, work = scenario
    assert result["up"]["rc"] == 0, result["up"]
    assert "still queued 0" in result["up"]["stdout"]
    written = _written(work / "up")
    assert len(written) == 4  # 2 slices x (magnitude, phase)
    got = {t["SOPInstanceUID"]: t for t in result["tags"]}
    assert set(got) == set(written)
    for uid, ds in written.items():
        tag = got[uid]
        assert tag["PatientID"] == ds.PatientID and tag["SeriesDescription"] == ds.SeriesDescription
        assert float(tag["RepetitionTime"]) == pytest.approx(float(ds.RepetitionTime))
        assert float(tag["EchoTime"]) == pytest.approx(float(ds.EchoTime))
        assert float(tag["FlipAngle"]) == pytest.approx(float(ds.FlipAngle))
        assert tag["ImageType"].startswith("DERIVED")


def test_pacs_down_keeps_everything_and_push_delivers_later(scenario):
    result, work = scenario
    down = result["down"]
    assert down["rc"] == 1, down  # the recon worked, the delivery did not: say so
    assert "run `contextmri push` later" in down["stdout"]
    written = _written(work / "down")
    assert result["queued"] == sorted(f"{uid}.dcm" for uid in written)
    assert result["push"]["rc"] == 0, result["push"]
    assert result["added_by_push"] == len(written) and result["left"] == []
