"""Test harness: a real Orthanc in a private network namespace, plus small MR DICOM files.

Orthanc 1.10 (Debian) always listens on 0.0.0.0, so it must never run in the host's network
namespace. The harness runs a *scenario* inside ``unshare --net`` (we run as root), where only
a loopback interface exists, and brings JSON results back. Host side (in a test)::

    from tests.orthanc import namespace_skip_reason, run_scenario, write_mr_instances

    reason = namespace_skip_reason()          # None, or why Orthanc/unshare cannot be used
    if reason: pytest.skip(reason)
    result = run_scenario(tmp_path / "scenario.py", {"outbox": str(outbox)}, tmp_path,
                          timeout_s=60)      # -> whatever the scenario's main() returned

A Python scenario is a file defining ``main(orthanc: Orthanc, params: dict) -> dict`` (JSON
values; ``params`` also carries ``"workdir"``; a test module can be its own scenario, see
``tests/cli/test_push_orthanc.py``). ``orthanc`` is a stopped ``Orthanc`` with its storage under ``<workdir>/orthanc``;
``orthanc.start()``, ``.stop()``, ``.rest_get("/instances")``, ``.instances()``, ``.pacs``
("127.0.0.1:4242:ORTHANC", for ``--pacs``), ``.dicom_port``/``.http_port``/``.aet``. A stopped
Orthanc restarts with the same storage; ``Orthanc(other_dir)`` gives a second one (ports are
free again once the first has stopped). Start Orthanc from the main thread (it is killed when
the thread that started it dies). Orthanc 1.10 waits for open associations before its
DICOM server stops: to stop it under a client's open association use ``stop(timeout_s=1)``
(SIGTERM, then SIGKILL). The scenario may import ``tests.*`` and ``contextmri_core``.

A bash scenario (``*.sh``) runs with Orthanc already started and ``ORTHANC_PACS``,
``ORTHANC_URL``, ``ORTHANC_DICOM_PORT``, ``ORTHANC_HTTP_PORT``, ``ORTHANC_AET`` and
``SCENARIO_PARAMS`` (the params JSON file) set; its result is ``{"rc", "stdout", "stderr",
"instances"}`` (instances = Orthanc's count afterwards).

``write_mr_instances(folder, count, patient_id=..., implicit=False)`` writes tiny MR Image
Storage files (one series) and returns ``{SOPInstanceUID: path}``.

Everything is bounded: Orthanc must answer ``/system`` within 30 s; ``stop()`` sends SIGTERM,
waits 10 s, then SIGKILL; Orthanc gets SIGKILL when the harness dies (PR_SET_PDEATHSIG); the
harness stops every Orthanc it started in a ``finally``; the host kills the harness's whole
process group after ``timeout_s`` and checks that no process of it is left. Errors inside the
namespace come back as an ``AssertionError`` with the traceback and Orthanc's log tail.
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
ORTHANC_BIN = "/usr/sbin/Orthanc"
AET = "ORTHANC"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


# ----------------------------------------------------------------------------- host side
@lru_cache(maxsize=1)
def namespace_skip_reason() -> Optional[str]:
    """None when Orthanc can run in a private network namespace here, else the reason."""
    if not os.access(ORTHANC_BIN, os.X_OK):
        return f"{ORTHANC_BIN} missing (Debian package orthanc)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} missing (util-linux / iproute2)"
    try:
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True,
                               timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare --net true` failed: {exc}"
    if probe.returncode != 0:
        return f"`unshare --net true` failed (needs root/CAP_SYS_ADMIN): {probe.stderr.strip()}"
    return None


def run_scenario(script: Path, params: Dict[str, Any], workdir: Path,
                 timeout_s: float = 120.0) -> Any:
    """Run ``script`` in a new network namespace with Orthanc available; return its result."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    params_file, out_file = workdir / "scenario-params.json", workdir / "scenario-out.json"
    params_file.write_text(json.dumps({**params, "workdir": str(workdir)}))
    out_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    cmd = ["unshare", "--net", "--", sys.executable, str(Path(__file__).resolve()),
           str(script), str(params_file), str(out_file)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _end_group(proc.pid)
        output, _ = proc.communicate()
        report = out_file.read_text()[-4000:] if out_file.exists() else "(no report)"
        raise AssertionError(f"scenario {script} ran past {timeout_s} s:\n{report}\n"
                             f"{output.decode(errors='replace')[-3000:]}") from None
    finally:
        _end_group(proc.pid)
    return _result(out_file, proc.returncode, output.decode(errors="replace"))


def _end_group(pgid: int) -> None:
    """SIGTERM then SIGKILL whatever is left of the harness's process group (ours)."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        deadline = time.monotonic() + wait_s
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} survived SIGKILL")


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is alive (zombies waiting for a reaper do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _result(out_file: Path, rc: int, output: str) -> Any:
    if not out_file.exists():
        raise AssertionError(f"scenario harness exited {rc} without results:\n{output[-4000:]}")
    report = json.loads(out_file.read_text())
    if not report["ok"]:
        raise AssertionError(f"scenario failed:\n{report['error']}\n--- Orthanc log tail ---\n"
                             f"{report.get('orthanc_log', '')}\n--- output ---\n{output[-3000:]}")
    return report["result"]


# ----------------------------------------------------------------------------- namespace side
def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the (thread that started it) parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Orthanc:
    """One Orthanc server (inside the namespace only): config, storage and log in ``workdir``."""

    started: List["Orthanc"] = []  # every instance started by this harness process

    def __init__(self, workdir: Path, dicom_port: int = 4242, http_port: int = 8042) -> None:
        self.workdir, self.dicom_port, self.http_port = Path(workdir), dicom_port, http_port
        self.aet = AET
        self.pacs = f"127.0.0.1:{dicom_port}:{AET}"
        self.url = f"http://127.0.0.1:{http_port}"
        self.log = self.workdir / "orthanc.log"
        self.proc: Optional[subprocess.Popen] = None
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxies

    def _config(self) -> Path:
        (self.workdir / "storage").mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "contextmri-test", "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"), "StorageCompression": False,
            "Plugins": [], "LuaScripts": [], "HttpServerEnabled": True,
            "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "SslEnabled": False, "DicomServerEnabled": True,
            "DicomAet": AET, "DicomPort": self.dicom_port, "DicomCheckCalledAet": False,
            "DicomModalities": {}, "OrthancPeers": {}, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True, "ConcurrentJobs": 1, "SaveJobs": False,
            "DeidentifyLogs": True, "ExecuteLuaEnabled": False,
        }
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "Orthanc":
        """Start and wait until REST ``/system`` answers; RuntimeError with the log if not."""
        if self.running:
            return self
        config = self._config()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([ORTHANC_BIN, str(config)], stdout=log, stderr=log,
                                         cwd=self.workdir, preexec_fn=_die_with_parent)
        Orthanc.started.append(self)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.rest_get("/system", timeout_s=1.0)
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s} s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, wait ``timeout_s``, then SIGKILL; returns once the process is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self.proc = None

    def rest_get(self, path: str, timeout_s: float = 10.0) -> Any:
        """GET ``path`` from the REST API; the decoded JSON."""
        with self._http.open(self.url + path, timeout=timeout_s) as response:
            return json.loads(response.read().decode())

    def instances(self) -> List[str]:
        """Orthanc's ids of the stored instances."""
        return self.rest_get("/instances")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _run_bash(script: Path, orthanc: Orthanc, params_file: Path) -> Dict[str, Any]:
    orthanc.start()
    env = {**os.environ, "ORTHANC_PACS": orthanc.pacs, "ORTHANC_URL": orthanc.url,
           "ORTHANC_DICOM_PORT": str(orthanc.dicom_port), "ORTHANC_AET": orthanc.aet,
           "ORTHANC_HTTP_PORT": str(orthanc.http_port), "SCENARIO_PARAMS": str(params_file)}
    done = subprocess.run(["bash", str(script)], env=env, cwd=REPO, capture_output=True,
                          text=True)
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
            "instances": len(orthanc.instances())}


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def namespace_main(argv: List[str]) -> int:
    """``orthanc.py SCENARIO PARAMS.json OUT.json`` inside ``unshare --net``: lo up, run, stop."""
    script, params_file, out_file = (Path(a) for a in argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    params = json.loads(params_file.read_text())
    orthanc = Orthanc(Path(params["workdir"]) / "orthanc")
    report: Dict[str, Any] = {"ok": False}
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        if script.suffix == ".sh":
            result = _run_bash(script, orthanc, params_file)
        else:
            result = runpy.run_path(str(script), run_name="scenario")["main"](orthanc, params)
        report = {"ok": True, "result": result}
    except BaseException:  # noqa: B902 - report everything, including SystemExit from SIGTERM
        report = {"ok": False, "error": traceback.format_exc()}
    finally:
        for server in Orthanc.started:
            server.stop()
        report["orthanc_log"] = "\n".join(s.log_tail(1500) for s in Orthanc.started)
        Path(out_file).write_text(json.dumps(report, default=str))
    return 0 if report["ok"] else 1


# ----------------------------------------------------------------------------- DICOM files
def write_mr_instances(folder: Path, count: int, patient_id: str = "PACSTEST01",
                       implicit: bool = False, size: int = 8) -> Dict[str, Path]:
    """``count`` tiny MR Image Storage files (one series, 16-bit MONOCHROME2, ``size``^2)
    written to ``folder``; ``{SOPInstanceUID: path}`` in instance order. pydicom 2.4 and 3.x."""
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    written: Dict[str, Path] = {}
    for index in range(count):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit \
            else ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID, ds.Modality = "Test^Pacs", patient_id, "MR"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, index + 1
        ds.StudyDate, ds.StudyTime = "20240101", "120000"
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        pixels = (np.arange(size * size, dtype=np.uint16) * (index + 1)).astype("<u2")
        ds.PixelData = pixels.tobytes()
        path = folder / f"mr{index:03d}.dcm"
        _save(ds, path, implicit)
        written[str(ds.SOPInstanceUID)] = path
    return written


def _save(ds: Any, path: Path, implicit: bool) -> None:
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.4 needs the encoding on the dataset
        ds.is_little_endian, ds.is_implicit_VR = True, implicit
        ds.save_as(path, write_like_original=False)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from tests.orthanc import namespace_main as _main  # one module object for the scenario too

    sys.exit(_main(sys.argv[1:]))


def run_cli(*args: str, timeout_s: float = 240.0) -> Dict[str, Any]:
    """``contextmri ARGS`` as a subprocess (from a scenario): rc, stdout, stderr tail."""
    done = subprocess.run([sys.executable, "-m", "contextmri_core.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout_s)
    return {"rc": done.returncode, "stdout": done.stdout.strip(), "stderr": done.stderr[-3000:]}


def scenario_workdir(tmp_path_factory: Any, name: str) -> Path:
    """A fresh work folder for a scenario, or a pytest skip when no private network
    namespace can be made here."""
    import pytest

    reason = namespace_skip_reason()
    if reason:
        pytest.skip(reason)
    return tmp_path_factory.mktemp(name)
