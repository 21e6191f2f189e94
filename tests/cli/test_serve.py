"""``contextmri serve`` over real TCP on 127.0.0.1: clients built on ``ismrmrd.serialization``
(an implementation we did not write), a warm model reused across connections, bad input
answered and survived, SIGTERM honoured."""

from __future__ import annotations

import json
import logging
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from contextmri_core.io.mrd import stream as ms
from tests import mrd_helpers as h

serialization = pytest.importorskip("ismrmrd.serialization")
log = logging.getLogger(__name__)
NAME = h.NON_ASCII_NAME


def launch_server(tmp: Path, *args: str):
    """Start ``contextmri serve`` on a free port; (process, ready info, seconds to ready)."""
    ready = tmp / "ready.json"
    cmd = [sys.executable, "-m", "contextmri_core.cli.main", "-v", "serve", "--port", "0",
           "--device", "cpu", "--ready-file", str(ready), *args]
    t0 = time.perf_counter()
    with (tmp / "server.log").open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=str(h.REPO), env=h.child_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        while not ready.exists() or not ready.read_text():
            assert proc.poll() is None, (tmp / "server.log").read_text()
            assert time.perf_counter() - t0 < h.TIMEOUT_S, "server did not start"
            time.sleep(0.05)
        time.sleep(0.05)
        return proc, json.loads(ready.read_text()), time.perf_counter() - t0
    except BaseException:
        h.stop(proc)
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    model, path, header, acqs = h.named_scan(tmp)
    proc, info, ready_s = launch_server(tmp, "--model", str(model), "--steps", "2",
                                        "--idle-timeout", "2", "--queue", "2")
    try:
        yield dict(proc=proc, port=info["port"], ready_s=ready_s, info=info, model=model,
                   path=path, header=header, acqs=acqs, log=tmp / "server.log")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            h.stop(proc)


def ismrmrd_client(port: int, header: bytes, acqs, first) -> list:
    """Send a scan with ismrmrd's ProtocolSerializer; read the answer with its deserializer."""
    import ismrmrd

    with socket.create_connection(("127.0.0.1", port), timeout=h.TIMEOUT_S) as sock:
        stream = sock.makefile("rwb")
        out = serialization.ProtocolSerializer(stream)
        for item in first:
            out.serialize(item)
        out.serialize(ismrmrd.xsd.CreateFromDocument(header))  # declares ascii, writes UTF-8
        for acq in acqs:
            out.serialize(acq)
        out.close()
        stream.flush()
        return list(serialization.ProtocolDeserializer(stream).deserialize())


def test_three_clients_get_the_reference_images_from_one_loaded_model(server):
    ref = h.reference_magnitudes(server["path"], server["model"])
    firsts = [[serialization.ConfigFile("contextmri")],
              [serialization.ConfigText(h.config_xml({"steps": "2"}))],
              [serialization.ConfigFile("contextmri"), json.dumps({"parameters": {"seed": 0}})]]
    seconds = []
    for first in firsts:
        t0 = time.perf_counter()
        images = ismrmrd_client(server["port"], server["header"], server["acqs"], first)
        seconds.append(time.perf_counter() - t0)
        got = np.stack([np.asarray(i.data).reshape(32, 32)
                        for i in sorted(images, key=lambda i: i.slice)])
        assert np.abs(got - ref).max() <= 1e-4 * ref.max()
        assert [i.image_series_index for i in images] == [1, 1]
        assert "brain, Slice" in images[0].attribute_string
    assert server["log"].read_text().count("loaded model") == 1
    timing = {"process_to_ready_s": round(server["ready_s"], 2),
              "model_load_s": round(server["info"]["model_load_s"], 2),
              "connections_s": [round(s, 3) for s in seconds]}
    log.warning("serve timing: %s", timing)
    print(f"\nserve timing: {timing}")
    assert max(seconds[1:]) < server["ready_s"]


def _bad(port: int, payload: bytes, shut: bool = False) -> tuple:
    """Send ``payload``; (frames received until the server closed, seconds it took)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=h.TIMEOUT_S) as sock:
        sock.sendall(payload)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        msgs = h.receive_all(sock, idle_s=15)
        assert sock.recv(16) == b""  # and then it closed the connection
    return msgs, time.perf_counter() - t0


def _wait_for_log(path: Path, text: str, count: int, within_s: float = 10.0) -> bool:
    """The server logs a session's end just after closing it: poll, bounded."""
    deadline = time.perf_counter() + within_s
    while path.read_text().count(text) < count:
        assert time.perf_counter() < deadline, path.read_text()
        time.sleep(0.05)
    return True


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def test_bad_input_is_answered_closed_and_the_next_client_is_served(server):
    port, header = server["port"], server["header"]
    start = ms.frame_config_file("contextmri") + ms.frame_header(header)
    acq = ms.frame_acquisition(server["acqs"][5])
    rss = _rss_kb(server["proc"].pid)
    cases = {
        "unknown message id 4242": (start + struct.pack("<H", 4242), False),
        "closed in the middle of a frame": (start + acq[: len(acq) // 2], True),
        "exceeds the limit": (struct.pack("<HI", ms.CONFIG_TEXT, 0xFFFFFFF0), False),
        "silent for 2.0 s": (b"", False),
    }
    for expected, (payload, shut) in cases.items():
        msgs, took = _bad(port, payload, shut)
        assert [m.mid for m in msgs] == [ms.ERROR, ms.CLOSE] and expected in msgs[0].payload
        assert took < 10.0, (expected, took)
    assert _rss_kb(server["proc"].pid) - rss < 200_000
    assert _wait_for_log(server["log"], "ended with errors", 4)
    images = ismrmrd_client(port, header, server["acqs"], [serialization.ConfigFile("x")])
    assert len(images) == 2


def test_sigterm_refuses_the_queue_and_exits_cleanly(tmp_path):
    proc, info, _ = launch_server(tmp_path, "--method", "sense", "--idle-timeout", "3",
                                  "--queue", "1")
    socks = []
    try:
        for _ in range(3):  # served (silent), queued, refused at once (queue of 1 is full)
            socks.append(socket.create_connection(("127.0.0.1", info["port"]), timeout=15))
            time.sleep(0.3)
        busy = h.receive_all(socks[2], idle_s=5)
        assert busy[0].mid == ms.ERROR and "busy" in busy[0].payload
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.perf_counter() - t0 < 10
        queued = h.receive_all(socks[1], idle_s=5)
        assert queued[0].mid == ms.ERROR and "shutting down" in queued[0].payload
        assert _wait_for_log(tmp_path / "server.log", "stopped after 1 sessions", 1)
    finally:
        for s in socks:
            s.close()
        h.stop(proc)
