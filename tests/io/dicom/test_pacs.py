"""PACS push through the outbox against pynetdicom's own Storage SCP bound to 127.0.0.1."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import List, Set

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt

from contextmri_core.errors import ConfigError, InputFileError
from contextmri_core.io.dicom.pacs import (Outbox, PacsTarget, PushReport, echo, find_dicom_files,
                                           push)
from tests.orthanc import MR_IMAGE_STORAGE, write_mr_instances

VERIFICATION = "1.2.840.10008.1.1"


class FakePacs:
    """A Storage SCP on 127.0.0.1 that records SOP Instance UIDs; per-UID answers."""

    def __init__(self) -> None:
        self.received: List[str] = []
        self.patient_ids: Set[str] = set()
        self.fail: Set[str] = set()  # answer 0xA700 (out of resources)
        self.warn: Set[str] = set()  # answer 0xB000 (coercion: stored)
        self.drop_once: Set[str] = set()  # abort the association the first time
        ae = AE(ae_title="FAKEPACS")
        ae.add_supported_context(MR_IMAGE_STORAGE, [ExplicitVRLittleEndian,
                                                    ImplicitVRLittleEndian])
        ae.add_supported_context(VERIFICATION)
        self.server = ae.start_server(("127.0.0.1", 0), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if uid in self.drop_once:
            self.drop_once.discard(uid)
            event.assoc.abort()
            return 0xC000
        if uid in self.fail:
            return 0xA700
        self.received.append(uid)
        self.patient_ids.add(str(event.dataset.PatientID))
        return 0xB000 if uid in self.warn else 0x0000

    def target(self) -> PacsTarget:
        return PacsTarget("127.0.0.1", self.port, "FAKEPACS", timeout_s=5.0)


@pytest.fixture
def pacs():
    server = FakePacs()
    yield server
    server.server.shutdown()


@pytest.fixture
def instances(tmp_path):
    """Five MR instances: three explicit, two implicit VR little endian."""
    files = write_mr_instances(tmp_path / "in", 3)
    files.update(write_mr_instances(tmp_path / "in_implicit", 2, implicit=True))
    return files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_push_sends_everything_and_empties_the_outbox(tmp_path, pacs, instances):
    outbox = Outbox(tmp_path / "outbox")
    queued = outbox.enqueue(instances.values())
    assert sorted(p.stem for p in queued) == sorted(instances)
    sent: List[Path] = []
    report = push(outbox, pacs.target(), on_sent=sent.append, sleep=pytest.fail)
    assert report == PushReport(5, 0, (), ())
    assert report.ok and outbox.pending() == []
    assert sorted(pacs.received) == sorted(instances) and pacs.patient_ids == {"PACSTEST01"}
    assert sorted(sent) == sorted(queued) and not any(p.exists() for p in sent)
    assert all(p.exists() for p in instances.values())  # originals untouched


def test_pacs_down_keeps_everything_with_exponential_backoff(tmp_path, instances):
    outbox = Outbox(tmp_path / "outbox")
    queued = outbox.enqueue(instances.values())
    before = {p: p.read_bytes() for p in queued}
    sleeps: List[float] = []
    target = PacsTarget("127.0.0.1", _free_port(), "NOBODY", timeout_s=2.0)
    report = push(outbox, target, retries=3, backoff_s=1.0, sleep=sleeps.append)
    assert sleeps == [1.0, 2.0, 4.0]
    assert not report.ok and report.sent == 0 and report.failed == 5
    assert set(report.remaining) == set(queued) == set(outbox.pending())
    assert {p: p.read_bytes() for p in queued} == before
    assert any("NOBODY@127.0.0.1" in e for e in report.errors)
    assert not echo(target)


def test_failure_status_keeps_only_that_instance(tmp_path, pacs, instances):
    bad = sorted(instances)[1]
    pacs.fail.add(bad)
    outbox = Outbox(tmp_path / "outbox")
    outbox.enqueue(instances.values())
    sleeps: List[float] = []
    report = push(outbox, pacs.target(), retries=2, backoff_s=0.5, sleep=sleeps.append)
    assert report.sent == 4 and report.failed == 1 and sleeps == [0.5, 1.0]
    assert [p.stem for p in report.remaining] == [bad] == [p.stem for p in outbox.pending()]
    assert any("0xA700" in e for e in report.errors)
    assert sorted(pacs.received) == sorted(set(instances) - {bad})


def test_warning_status_counts_as_stored(tmp_path, pacs, instances):
    pacs.warn.update(list(instances)[:2])
    outbox = Outbox(tmp_path / "outbox")
    outbox.enqueue(instances.values())
    assert push(outbox, pacs.target(), sleep=pytest.fail).sent == 5
    assert outbox.pending() == []


def test_dropped_association_is_reopened(tmp_path, pacs, instances):
    order = sorted(instances)
    pacs.drop_once.add(order[2])
    outbox = Outbox(tmp_path / "outbox")
    outbox.enqueue(instances.values())
    report = push(outbox, pacs.target(), sleep=pytest.fail)  # progress: no back-off needed
    assert report.ok and report.sent == 5 and sorted(pacs.received) == order
    assert any("lost" in e for e in report.errors)


def test_enqueue_twice_does_not_duplicate_and_is_private(tmp_path, instances):
    outbox = Outbox(tmp_path / "outbox")
    first = outbox.enqueue(instances.values())
    second = outbox.enqueue(list(instances.values()) * 2)
    assert first == second and outbox.pending() == sorted(first) and len(first) == 5
    assert _mode(outbox.root) == 0o700
    assert all(_mode(p) == 0o600 for p in outbox.pending())
    assert [p.name for p in outbox.root.iterdir() if p.name.startswith(".")] == []


def test_enqueue_refuses_non_dicom_before_copying_anything(tmp_path, instances):
    junk = tmp_path / "notes.dcm"
    junk.write_text("not dicom")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(next(iter(instances.values())).read_bytes()[:-40])
    outbox = Outbox(tmp_path / "outbox")
    for bad in (junk, truncated, tmp_path / "missing.dcm"):
        with pytest.raises(InputFileError, match=bad.name):
            outbox.enqueue([*instances.values(), bad])
    assert outbox.pending() == []


def test_unreadable_file_in_the_outbox_is_moved_aside(tmp_path, pacs, instances):
    outbox = Outbox(tmp_path / "outbox")
    outbox.enqueue(instances.values())
    (outbox.root / "garbage.dcm").write_bytes(b"\0" * 200)
    report = push(outbox, pacs.target(), sleep=pytest.fail)
    assert report.ok and report.sent == 5 and report.failed == 1
    assert report.rejected == (outbox.root / "rejected" / "garbage.dcm",)
    assert (outbox.root / "rejected" / "garbage.dcm.reason.txt").read_text().strip()
    assert any("garbage.dcm" in e for e in report.errors)


def test_a_second_push_on_a_busy_outbox_returns_at_once(tmp_path, pacs, instances):
    outbox = Outbox(tmp_path / "outbox")
    outbox.enqueue(instances.values())
    with outbox.lock() as held:
        assert held
        report = push(outbox, pacs.target(), sleep=pytest.fail)
    assert report.sent == 0 and len(report.remaining) == 5 and "another push" in report.errors[0]
    assert pacs.received == []


def test_echo(pacs):
    assert echo(pacs.target())


def test_find_dicom_files_walks_folders(tmp_path, instances):
    (tmp_path / "in" / "sidecar.json").write_text("{}")
    found = find_dicom_files([tmp_path / "in", tmp_path / "in_implicit"])
    assert sorted(found) == sorted(instances.values())
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no DICOM"):
        find_dicom_files([tmp_path / "empty"])
    with pytest.raises(InputFileError, match="no such"):
        find_dicom_files([tmp_path / "missing"])


@pytest.mark.parametrize("spec,expected", [
    ("pacs.example.org:104:ORTHANC", ("pacs.example.org", 104, "ORTHANC")),
    ("127.0.0.1:4242:ORTHANC", ("127.0.0.1", 4242, "ORTHANC")),
    ("[::1]:11112:STORESCP", ("::1", 11112, "STORESCP")),
])
def test_target_parse(spec, expected):
    target = PacsTarget.parse(spec, calling_aet="ME")
    assert (target.host, target.port, target.called_aet, target.calling_aet) == (*expected, "ME")


@pytest.mark.parametrize("spec,match", [
    ("pacs:104", "HOST:PORT:AET"), ("pacs:abc:AET", "not a number"),
    (":104:AET", "HOST:PORT:AET"), ("pacs:0:AET", "port"), ("pacs:70000:AET", "port"),
    ("pacs:104:WAY_TOO_LONG_AE_TITLE", "AE titles"), ("pacs:104:BAD\\AET", "AE titles"),
])
def test_target_parse_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        PacsTarget.parse(spec)


def test_bad_push_arguments_raise(tmp_path, pacs):
    outbox = Outbox(tmp_path / "outbox")
    for kwargs in ({"retries": -1}, {"backoff_s": -0.5}, {"retries": 1.5}):
        with pytest.raises(ConfigError):
            push(outbox, pacs.target(), **kwargs)
    with pytest.raises(ConfigError, match="calling_aet"):
        PacsTarget("h", 104, "AET", calling_aet="")
