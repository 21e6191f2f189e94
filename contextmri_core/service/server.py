"""The warm stream server behind ``contextmri serve``.

Concurrency model (documented on purpose): **one reconstruction at a time** (one GPU, one
model in memory) plus a **bounded queue** of accepted connections waiting their turn. An
accept thread takes connections and puts them in a ``queue.Queue(maxsize=queue_size)``; when
the queue is full the newcomer gets ERROR "server busy" + CLOSE at once (it never hangs). The
main thread serves the queue in order.

Per connection: CONFIG_FILE (1, a name) or CONFIG_TEXT (2, XML whose ``<property>`` entries
choose reconstruction parameters), optional TEXT (5, FIRE-style JSON parameters), HEADER (3),
then acquisitions (waveforms and stray texts are skipped) and CLOSE.

A client never steers the server: its properties go through ``ClientPolicy`` (recon
parameters within the server's bounds; the model, device, PACS, AE title and outbox come only
from the server's command line); a forbidden property or value gets an ERROR naming it.

Limits: every wait for data ends after ``idle_timeout_s`` without a byte; every message must
arrive within ``message_timeout_s`` (a client trickling bytes cannot hold the server); the
whole session (reading and reconstruction) within ``session_timeout_s``, after which the
sampler stops and the classical fallback finishes the images; every length field is bounded
(``Limits``), a session reads at most ``max_session_bytes``, and the k-space grid the header
asks for is checked against the data received and ``grid_limits`` before it is allocated.
Bad input is logged, answered with ERROR + CLOSE where the socket still works, and the server
goes on with the next connection. SIGTERM/SIGINT: new connections are refused at once (ERROR
"shutting down"), a running reconstruction stops within seconds (ERROR + fallback images),
queued connections are refused, and the process exits 0.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional, Tuple

from contextmri_core.data.grid_limits import GridLimits
from contextmri_core.io.mrd.images import GeometryTap
from contextmri_core.io.mrd.listener import Connection, accept, listen
from contextmri_core.io.mrd.stream import (ACQUISITION, CLOSE, CONFIG_FILE, CONFIG_TEXT, HEADER,
                                           TEXT, Limits, ProtocolError, SocketReader,
                                           frame_close, frame_error, read_message)
from contextmri_core.io.raw.ismrmrd_reader import record_from_acquisition
from contextmri_core.service.client_policy import ClientPolicy
from contextmri_core.recon.stream import StreamSettings
from contextmri_core.service.session import (Engine, SessionReport, properties_from_config,
                                             properties_from_json, report_error, run_session)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the server listens; ``settings`` are the defaults of every session."""

    host: str = "127.0.0.1"
    port: int = 9002
    queue_size: int = 4
    idle_timeout_s: float = 30.0
    message_timeout_s: float = 60.0
    session_timeout_s: float = 1800.0
    max_session_bytes: int = 8 << 30
    limits: Limits = Limits()
    grid_limits: GridLimits = GridLimits()
    policy: ClientPolicy = ClientPolicy()
    settings: StreamSettings = field(default_factory=StreamSettings)


class StreamServer:
    """Listen, queue, and serve sessions one at a time with a model loaded once."""

    def __init__(self, config: ServerConfig, engine: Optional[Engine] = None) -> None:
        self.config = config
        self.engine = engine or Engine()
        self.stopping = threading.Event()
        self.closed = threading.Event()
        self.pending: "queue.Queue[Tuple[Connection, tuple]]" = queue.Queue(config.queue_size)
        self.sock: Optional[Connection] = None
        self.served = 0

    def bind(self) -> Tuple[str, int]:
        """Bind and listen; returns the (host, port) actually bound (``port=0`` picks one)."""
        self.sock = listen(self.config.host, self.config.port, self.config.queue_size + 1)
        host, port = self.sock.getsockname()[:2]
        log.info("listening on %s:%d (queue %d, idle timeout %.1f s)", host, port,
                 self.config.queue_size, self.config.idle_timeout_s)
        return host, port

    def warm_up(self) -> float:
        """Load the default model now (not on the first scan); returns the seconds it took."""
        t0 = time.perf_counter()
        if self.config.settings.method in ("dds", "dps"):
            self.engine.prior(self.config.settings)
        return time.perf_counter() - t0

    def _accept_loop(self) -> None:
        while not self.closed.is_set():
            try:
                got = accept(self.sock)  # type: ignore[arg-type]
            except OSError:
                break
            if got is None:
                continue
            conn, peer = got
            if self.stopping.is_set():
                log.info("connection from %s refused: shutting down", peer)
                _refuse(conn, "contextmri serve: shutting down, not accepting new scans")
                continue
            try:
                self.pending.put_nowait((conn, peer))
                log.info("connection from %s queued (%d waiting)", peer, self.pending.qsize())
            except queue.Full:
                log.error("connection from %s refused: queue of %d is full", peer,
                          self.config.queue_size)
                _refuse(conn, "contextmri serve: server busy (queue full), try again later")

    def serve_forever(self) -> None:
        """Serve until :meth:`stop`; then refuse whatever is still queued."""
        acceptor = threading.Thread(target=self._accept_loop, name="accept", daemon=True)
        acceptor.start()
        while not self.stopping.is_set():
            try:
                conn, peer = self.pending.get(timeout=0.5)
            except queue.Empty:
                continue
            self.handle(conn, peer)
        while not self.pending.empty():
            _refuse(self.pending.get_nowait()[0], "contextmri serve: shutting down")
        self.closed.set()
        acceptor.join(timeout=2.0)
        if self.sock is not None:
            self.sock.close()
        log.info("stopped after %d sessions", self.served)

    def stop(self, *_args: object) -> None:
        """Stop: refuse new connections, stop a running recon (fallback images), refuse the
        queue. Safe to call from a signal handler."""
        if not self.stopping.is_set():
            log.warning("stop requested: refusing new connections, stopping the running "
                        "reconstruction (fallback images), refusing the queue")
        self.stopping.set()

    def _interrupt(self, deadline: float):
        """Why the running session must stop now (None while it may go on)."""
        def check() -> "str | None":
            if self.stopping.is_set():
                return "server shutting down"
            if time.monotonic() > deadline:
                return f"session time limit of {self.config.session_timeout_s:g} s reached"
            return None
        return check

    def handle(self, conn: Connection, peer: tuple) -> SessionReport:
        """One session; never raises (the next client must be served)."""
        t0 = time.perf_counter()
        report = SessionReport()
        send = conn.sendall
        cfg = self.config
        deadline = time.monotonic() + cfg.session_timeout_s
        try:
            reader = SocketReader(conn, cfg.idle_timeout_s, cfg.message_timeout_s, deadline,
                                  self.stopping)
            settings, header = self._handshake(reader)
            tap = GeometryTap()
            report = run_session(self._records(reader, tap), header, settings, self.engine,
                                 tap, send, interrupt=self._interrupt(deadline),
                                 grid_limits=cfg.grid_limits)
        except Exception as exc:  # noqa: BLE001 - logged and answered, then the next client
            log.error("session from %s failed: %s", peer, exc)
            message = f"contextmri serve: {exc}"
            _try(lambda: report_error(send, report, message))
        _try(lambda: send(frame_close()))
        _try(conn.close)
        self.served += 1
        level = logging.ERROR if report.errors else logging.INFO
        log.log(level, "session from %s: %d images in %.2f s%s", peer, report.images,
                time.perf_counter() - t0,
                f"; ended with errors: {' | '.join(report.errors)}" if report.errors else "")
        return report

    def _read(self, reader: SocketReader):
        reader.begin_message()
        return read_message(reader.read_exactly, self.config.limits)

    def _handshake(self, reader: SocketReader) -> Tuple[StreamSettings, bytes]:
        """Config, optional JSON text(s), header -> (settings, header bytes); the client's
        properties go through the server's ``ClientPolicy``."""
        first = self._read(reader)
        if first.mid not in (CONFIG_FILE, CONFIG_TEXT):
            raise ProtocolError(f"expected a config (id 1 or 2) first, got {first.name}")
        props = properties_from_config(first.payload) if first.mid == CONFIG_TEXT else {}
        if first.mid == CONFIG_FILE:
            log.info("config by name %r (the server's settings apply)", first.payload)
        while True:
            msg = self._read(reader)
            if msg.mid == HEADER:
                return self.config.policy.settings(props, self.config.settings), msg.payload
            if msg.mid != TEXT:
                raise ProtocolError(f"expected the header (id 3) after the config, got {msg.name}")
            props.update(_json_props(msg.payload))

    def _records(self, reader: SocketReader, tap: GeometryTap) -> Iterator:
        """Acquisitions until CLOSE, as records; bounded in bytes per session."""
        while True:
            msg = self._read(reader)
            if reader.bytes_read > self.config.max_session_bytes:
                raise ProtocolError(f"session exceeded {self.config.max_session_bytes} bytes")
            if msg.mid == CLOSE:
                return
            if msg.mid == ACQUISITION:
                tap.observe(msg.payload)
                yield record_from_acquisition(msg.payload)
            else:
                log.info("skipping a %s message inside the acquisition stream", msg.name)


def _json_props(text: str) -> dict:
    try:
        return properties_from_json(text)
    except ValueError as exc:
        log.warning("TEXT message is not JSON parameters (%s); ignored", exc)
        return {}


def _try(action) -> None:
    try:
        action()
    except OSError as exc:
        log.debug("peer gone: %s", exc)


def _refuse(conn: Connection, text: str) -> None:
    _try(lambda: conn.sendall(frame_error(text) + frame_close()))
    _try(conn.close)
