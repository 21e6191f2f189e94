"""The warm stream server behind ``contextmri serve``.

Concurrency model (documented on purpose): **one reconstruction at a time** (one GPU, one
model in memory) plus a **bounded queue** of accepted connections waiting their turn. An
accept thread takes connections and puts them in a ``queue.Queue(maxsize=queue_size)``; when
the queue is full the newcomer gets ERROR "server busy" + CLOSE at once (it never hangs). The
main thread serves the queue in order.

Per connection: CONFIG_FILE (1, a name) or CONFIG_TEXT (2, XML whose ``<property>`` entries map
onto ``StreamSettings``), optional TEXT (5, FIRE-style JSON parameters), HEADER (3), then
acquisitions (waveforms and stray texts are skipped) and CLOSE. Every ``recv`` waits at most
``idle_timeout_s``; every length field is bounded (``Limits``) and a session may read at most
``max_session_bytes``. Bad input (unknown id, truncated or oversized frame, a silent peer) is
logged, answered with ERROR + CLOSE where the socket still works, and the server goes on with
the next connection. SIGTERM/SIGINT stop accepting, let the running session finish (bounded by
the same timeouts), answer queued connections with ERROR "shutting down", and exit 0.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional, Tuple

from contextmri_core.io.mrd.images import GeometryTap
from contextmri_core.io.mrd.listener import Connection, accept, listen
from contextmri_core.io.mrd.stream import (ACQUISITION, CLOSE, CONFIG_FILE, CONFIG_TEXT, HEADER,
                                           TEXT, Limits, ProtocolError, SocketReader,
                                           frame_close, frame_error, read_message)
from contextmri_core.io.raw.ismrmrd_reader import record_from_acquisition
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
    max_session_bytes: int = 8 << 30
    limits: Limits = Limits()
    settings: StreamSettings = field(default_factory=StreamSettings)


class StreamServer:
    """Listen, queue, and serve sessions one at a time with a model loaded once."""

    def __init__(self, config: ServerConfig, engine: Optional[Engine] = None) -> None:
        self.config = config
        self.engine = engine or Engine()
        self.stopping = threading.Event()
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
        while not self.stopping.is_set():
            try:
                got = accept(self.sock)  # type: ignore[arg-type]
            except OSError:
                break
            if got is None:
                continue
            conn, peer = got
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
        acceptor.join(timeout=2.0)
        if self.sock is not None:
            self.sock.close()
        while not self.pending.empty():
            _refuse(self.pending.get_nowait()[0], "contextmri serve: shutting down")
        log.info("stopped after %d sessions", self.served)

    def stop(self, *_args: object) -> None:
        log.info("stop requested: finishing the current session, refusing the queue")
        self.stopping.set()

    def handle(self, conn: Connection, peer: tuple) -> SessionReport:
        """One session; never raises (the next client must be served)."""
        t0 = time.perf_counter()
        report = SessionReport()
        send = conn.sendall
        try:
            reader = SocketReader(conn, self.config.idle_timeout_s)
            settings, header = self._handshake(reader)
            tap = GeometryTap()
            report = run_session(self._records(reader, tap), header, settings, self.engine,
                                 tap, send)
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

    def _handshake(self, reader: SocketReader) -> Tuple[StreamSettings, bytes]:
        """Config, optional JSON text(s), header -> (settings, header bytes)."""
        limits = self.config.limits
        first = read_message(reader.read_exactly, limits)
        if first.mid not in (CONFIG_FILE, CONFIG_TEXT):
            raise ProtocolError(f"expected a config (id 1 or 2) first, got {first.name}")
        props = properties_from_config(first.payload) if first.mid == CONFIG_TEXT else {}
        if first.mid == CONFIG_FILE:
            log.info("config by name %r (the server's settings apply)", first.payload)
        while True:
            msg = read_message(reader.read_exactly, limits)
            if msg.mid == HEADER:
                return StreamSettings.from_properties(props, self.config.settings), msg.payload
            if msg.mid != TEXT:
                raise ProtocolError(f"expected the header (id 3) after the config, got {msg.name}")
            props.update(_json_props(msg.payload))

    def _records(self, reader: SocketReader, tap: GeometryTap) -> Iterator:
        """Acquisitions until CLOSE, as records; bounded in bytes per session."""
        while True:
            msg = read_message(reader.read_exactly, self.config.limits)
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
