"""``contextmri serve`` as an attacker or a careless client would use it (issue 13), over real
TCP on 127.0.0.1: no client steers the server's PACS, outbox, model or device; recon
parameters are bounded; a trickling client cannot hold the server; a session has a wall-time
limit; absurd headers, huge grids and NaN samples are handled; SIGTERM stops a running
reconstruction within seconds with ERROR + fallback images and refuses new connections."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from contextmri_core.io.mrd import stream as ms
from tests import mrd_helpers as h
from tests.cli.test_serve import launch_server
from tests.scan_edits import edit_header, set_samples

CAPS = ("--max-steps", "50", "--max-ensemble", "2", "--max-batch-size", "4")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_limits")
    model = h.tiny_model(tmp / "model")
    path = h.synthetic_scan(tmp / "scan.h5")
    header, acqs = h.read_stream(path)
    proc, info, _ = launch_server(tmp, "--model", str(model), "--steps", "2", "--idle-timeout",
                                  "10", "--message-timeout", "3", "--queue", "2", *CAPS)
    try:
        yield dict(proc=proc, port=info["port"], header=header, acqs=acqs, path=path,
                   model=model, tmp=tmp, log=tmp / "server.log")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            h.stop(proc)


def session(port: int, first: bytes, header: bytes, acqs, idle_s: float = 60) -> list:
    """Config frame(s), header, acquisitions, CLOSE; every frame the server sent back."""
    with socket.create_connection(("127.0.0.1", port), timeout=h.TIMEOUT_S) as sock:
        sock.sendall(first + ms.frame_header(header))
        try:
            for acq in acqs:
                sock.sendall(ms.frame_acquisition(acq))
            sock.sendall(ms.frame_close())
        except OSError:
            pass  # the server refused and closed: read what it said
        return h.receive_all(sock, idle_s=idle_s)


def config(props: dict) -> bytes:
    return ms.frame_text(h.config_xml(props), ms.CONFIG_TEXT)


def errors(msgs) -> list:
    return [m.payload for m in msgs if m.mid == ms.ERROR]


def images(msgs) -> list:
    return [m for m in msgs if m.mid == ms.IMAGE]


# ----------------------------------------------------------------------------- item 1
def test_a_client_cannot_set_the_pacs_outbox_model_or_device(server):
    """The attacks of the issue, by pipeline property and by FIRE JSON: each is answered
    with an ERROR naming the property; no image, no connection to the attacker's "PACS",
    no folder created, and the answer does not depend on whether a path exists."""
    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen(4)
    trap.settimeout(0.2)
    attacks = {"pacs": f"127.0.0.1:{trap.getsockname()[1]}:ATTACK",
               "outbox": str(server["tmp"] / "attacker_outbox"), "model": "/etc",
               "device": "cuda:7", "calling_aet": "EVIL"}
    answers = {}
    try:
        for name, value in attacks.items():
            by_xml = session(server["port"], config({"steps": "2", name: value}),
                             server["header"], server["acqs"])
            fire = ms.frame_config_file("x") + ms.frame_text(json.dumps(
                {"parameters": {name: value}}))
            by_json = session(server["port"], fire, server["header"], server["acqs"])
            for msgs in (by_xml, by_json):
                assert images(msgs) == [], name
                (text,) = errors(msgs)
                assert f"'{name}'" in text and "server-side setting" in text, text
            answers[name] = errors(by_xml)[0]
        with pytest.raises(socket.timeout):
            trap.accept()  # nobody ever called the attacker's listener
    finally:
        trap.close()
    assert not (server["tmp"] / "attacker_outbox").exists()
    nowhere = session(server["port"], config({"model": "/no/such/dir"}), server["header"],
                      server["acqs"])
    assert errors(nowhere)[0] == answers["model"].replace("/etc", "/no/such/dir")


def test_client_recon_parameters_are_bounded(server):
    for name, value in (("steps", "1000"), ("ensemble", "50"), ("batch_size", "64"),
                        ("guidance", "nan"), ("guidance", "-1")):
        msgs = session(server["port"], config({name: value}), server["header"], server["acqs"])
        assert images(msgs) == []
        (text,) = errors(msgs)
        # outside the server's bounds, or (nan, negative) invalid for any StreamSettings
        assert (f"'{name}'" in text and "bounds" in text) or f"{name}={value}" in text, text
    ok = session(server["port"], config({"steps": "3", "ensemble": "2", "model": ""}),
                 server["header"], server["acqs"])
    assert errors(ok) == [] and {m.payload[0].image_series_index for m in images(ok)} == {1, 3}


# ----------------------------------------------------------------------------- item 2
def test_a_trickling_client_cannot_hold_the_server(server):
    """Client A sends its header one byte every 0.5 s (it would take minutes); the
    per-message deadline (3 s) ends it, and client B, waiting meanwhile, is served."""
    stop = threading.Event()
    got: dict = {}

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", server["port"]), timeout=60) as sock:
            sock.sendall(ms.frame_config_file("x"))
            t0 = time.perf_counter()
            try:
                for byte in ms.frame_header(server["header"]):
                    if stop.is_set():
                        break
                    sock.sendall(bytes([byte]))
                    time.sleep(0.5)
            except OSError:
                pass
            got["a"] = h.receive_all(sock, idle_s=30)
            got["a_s"] = time.perf_counter() - t0

    a = threading.Thread(target=trickle)
    a.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    got["b"] = session(server["port"], ms.frame_config_file("x"), server["header"],
                       server["acqs"])
    got["b_s"] = time.perf_counter() - t0
    stop.set()
    a.join(60)
    print(f"\ntrickling client cut after {got['a_s']:.1f} s; waiting client served in "
          f"{got['b_s']:.1f} s")
    assert "per-message deadline" in errors(got["a"])[0]
    assert got["a_s"] < 15, got["a_s"]
    assert len(images(got["b"])) == 2 and errors(got["b"]) == []


def test_session_wall_time_limit(tmp_path):
    """Each message arrives in time, but the whole session may not take longer than
    --session-timeout: the server answers ERROR and closes."""
    scan = h.synthetic_scan(tmp_path / "s.h5")
    header, acqs = h.read_stream(scan)
    proc, info, _ = launch_server(tmp_path, "--method", "sense", "--session-timeout", "3",
                                  "--message-timeout", "2")
    try:
        with socket.create_connection(("127.0.0.1", info["port"]), timeout=60) as sock:
            sock.sendall(ms.frame_config_file("x") + ms.frame_header(header))
            t0 = time.perf_counter()
            try:
                for acq in acqs:
                    sock.sendall(ms.frame_acquisition(acq))
                    time.sleep(0.5)
            except OSError:
                pass
            msgs = h.receive_all(sock, idle_s=30)
        assert "session time limit" in errors(msgs)[0]
        assert time.perf_counter() - t0 < 3 + 2 + 10
    finally:
        h.stop(proc)


def test_sigterm_stops_a_running_recon_with_fallback_images_and_refuses_newcomers(tmp_path):
    model = h.tiny_model(tmp_path / "model")
    scan = h.synthetic_scan(tmp_path / "s.h5")
    header, acqs = h.read_stream(scan)
    proc, info, _ = launch_server(tmp_path, "--model", str(model), "--steps", "2",
                                  "--max-steps", "1000", "--max-ensemble", "100")
    port, log = info["port"], tmp_path / "server.log"
    got: dict = {}

    def long_recon() -> None:
        long = {"steps": "1000", "ensemble": "50", "batch_size": "1"}  # 10^5 network calls
        got["msgs"] = session(port, config(long), header, acqs, idle_s=120)

    client = threading.Thread(target=long_recon)
    try:
        client.start()
        deadline = time.perf_counter() + 120
        while "prepared 1 slices" not in log.read_text():  # the sampler is running
            assert time.perf_counter() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1.0)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:  # a newcomer during the shutdown is refused at once, not left hanging
            with socket.create_connection(("127.0.0.1", port), timeout=10) as late:
                refused = h.receive_all(late, idle_s=10)
            assert "shutting down" in errors(refused)[0]
        except ConnectionRefusedError:
            pass
        client.join(60)
        stopped_s = time.perf_counter() - t0
        assert proc.wait(timeout=30) == 0
    finally:
        h.stop(proc)
    msgs = got["msgs"]
    text = " | ".join(errors(msgs))
    assert "server shutting down" in text and "sense FALLBACK" in text, text
    fallback = [m for m in images(msgs) if m.payload[0].image_series_index == 11]
    assert len(fallback) == 2 and all(np.isfinite(m.payload[2]).all() for m in fallback)
    print(f"\nSIGTERM -> ERROR + fallback images, process gone: {stopped_s:.1f} s")
    assert stopped_s < 20, stopped_s


# ----------------------------------------------------------------------------- items 3, 8, 9, 10, 11
def _stream_of(path: Path):
    return h.read_stream(path)


def test_a_huge_encoded_matrix_is_refused_without_allocating(server, tmp_path):
    big = edit_header(server["path"], tmp_path / "big.h5", ("<y>32</y>", "<y>100000</y>"))
    header, acqs = _stream_of(big)
    rss = _rss_kb(server["proc"].pid)
    msgs = session(server["port"], ms.frame_config_file("x"), header, acqs)
    assert images(msgs) == [] and "encodedSpace y=100000" in errors(msgs)[0]
    grew = _rss_kb(server["proc"].pid) - rss
    print(f"\nencodedSpace y=100000: refused, server RSS grew {grew} kB")
    assert grew < 200_000
    assert "Traceback" not in server["log"].read_text()


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def test_absurd_header_values_still_give_images(server, tmp_path):
    bad = edit_header(server["path"], tmp_path / "tr.h5", ("<TR>4250</TR>", "<TR>1e300</TR>"),
                      ("<flipAngle_deg>165", "<flipAngle_deg>1e300"),
                      ("1995-01-05", "19550831"))
    header, acqs = _stream_of(bad)
    msgs = session(server["port"], ms.frame_config_file("x"), header, acqs)
    assert len(images(msgs)) == 2 and errors(msgs) == []
    prompt = images(msgs)[0].payload[1]
    assert "brain, Slice" in prompt and "TR:" not in prompt and "Flip" not in prompt
    assert "19550831" not in server["log"].read_text()  # no PHI in the log (item 10)


def test_nan_samples_are_masked_and_the_error_names_the_method_used(server, tmp_path):
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate
    from tests.scan_edits import imaging_rows

    def scan(name: str, acceleration: int, centre: float) -> Path:
        cfg = SimConfig(matrix=32, num_slices=2, num_coils=4, acceleration=acceleration,
                        center_fraction=centre, lesion_probability=0.0)
        return write_ismrmrd(tmp_path / name, simulate(3, "AXT2", cfg))

    r2 = scan("r2.h5", 2, 0.25)
    bad = set_samples(r2, tmp_path / "nan.h5", [(imaging_rows(r2)[0], 0, 3, complex(np.nan, 0))])
    msgs = session(server["port"], ms.frame_config_file("x"), *_stream_of(bad))
    assert len(images(msgs)) == 2 and errors(msgs) == []
    assert all(np.isfinite(m.payload[2]).all() and m.payload[2].max() > 0 for m in images(msgs))
    assert "nonfinite_kspace_samples" in images(msgs)[0].payload[1]
    # no ACS block: the preparation fails and the ERROR names zero_filled, the method used
    msgs = session(server["port"], ms.frame_config_file("x"), *_stream_of(scan("a.h5", 4, 0.03)))
    text = " | ".join(errors(msgs))
    assert "zero_filled FALLBACK" in text and "sense" not in text, text
    assert {m.payload[0].image_series_index for m in images(msgs)} == {11}


def test_an_unusable_outbox_is_refused_before_the_model_loads(tmp_path):
    import subprocess
    import sys

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "contextmri_core.cli.main", "serve", "--port",
                           "0", "--pacs", "127.0.0.1:9:X", "--outbox", str(blocker / "box")],
                          capture_output=True, text=True, timeout=120, cwd=h.REPO,
                          env=h.child_env())
    assert proc.returncode == 2 and "not usable" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "serving on" not in proc.stderr
