"""The ISMRMRD v1 / Gadgetron stream protocol, written for this project (DESIGN.md §7).

Every frame is a little-endian ``uint16`` message id followed by its payload. This module
reads and writes the frames the product needs with *bounded* lengths (a length field larger
than :class:`Limits` allows is a :class:`ProtocolError` before anything is allocated), UTF-8
text (the header's bytes are forwarded untouched), ERROR frames (id 8, ``uint64`` length +
UTF-8 text) and unknown ids reported as errors, never as a silent end of stream. It works with
ismrmrd 1.14 (no ``ismrmrd.serialization``) and 1.15 on numpy 1.26 and 2.x: arrays are
converted with ``np.ascontiguousarray``/``astype`` and written with ``tobytes``, never
``np.array(..., copy=False)``.
"""

from __future__ import annotations

import ctypes
import logging
import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import ismrmrd
import numpy as np

from contextmri_core.errors import ContextMRIError

log = logging.getLogger(__name__)

CONFIG_FILE = 1
CONFIG_TEXT = 2
HEADER = 3
CLOSE = 4
TEXT = 5
ERROR = 8
ACQUISITION = 1008
IMAGE = 1022
RECON_DATA = 1023
IMAGE_ARRAY = 1024
WAVEFORM = 1026
NAMES = {CONFIG_FILE: "config file", CONFIG_TEXT: "config text", HEADER: "header",
         CLOSE: "close", TEXT: "text", ERROR: "error", ACQUISITION: "acquisition",
         IMAGE: "image", RECON_DATA: "recon data", IMAGE_ARRAY: "image array",
         WAVEFORM: "waveform"}
CONFIG_FILE_BYTES = 1024
ACQ_HEADER_BYTES = ctypes.sizeof(ismrmrd.AcquisitionHeader)
IMAGE_HEADER_BYTES = ctypes.sizeof(ismrmrd.ImageHeader)
WAVEFORM_HEADER_BYTES = ctypes.sizeof(ismrmrd.WaveformHeader)
#: ISMRMRD image data types (ismrmrd.h) <-> numpy.
DATA_TYPES = {1: np.uint16, 2: np.int16, 3: np.uint32, 4: np.int32, 5: np.float32,
              6: np.float64, 7: np.complex64, 8: np.complex128}
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")


class ProtocolError(ContextMRIError):
    """A stream that breaks the protocol: unknown id, absurd length, truncation, silence."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds of one frame; larger length fields are rejected before reading."""

    max_text_bytes: int = 16 << 20
    max_frame_bytes: int = 512 << 20

    def check(self, what: str, nbytes: int, limit: Optional[int] = None) -> int:
        limit = self.max_frame_bytes if limit is None else limit
        if nbytes < 0 or nbytes > limit:
            raise ProtocolError(f"{what}: length {nbytes} bytes exceeds the limit of {limit}")
        return int(nbytes)


@dataclass(frozen=True)
class Message:
    """One decoded frame: ``mid`` and its ``payload`` (str, bytes, ismrmrd object or None)."""

    mid: int
    payload: Any = None

    @property
    def name(self) -> str:
        return NAMES.get(self.mid, f"id {self.mid}")


class SocketReader:
    """``read_exactly(n)`` over a socket with bounded waits.

    Every wait for data ends after ``idle_timeout_s`` without a byte; a whole message must
    arrive within ``message_timeout_s`` of :meth:`begin_message` (a peer trickling bytes
    cannot hold the reader); nothing is read past ``session_deadline`` (``time.monotonic``);
    and a set ``stop`` event (server shutting down) ends any wait within half a second. Each
    ends in a :class:`ProtocolError` saying which limit it was.
    """

    def __init__(self, sock: socket.socket, idle_timeout_s: Optional[float] = 30.0,
                 message_timeout_s: Optional[float] = None,
                 session_deadline: Optional[float] = None, stop: Any = None) -> None:
        self.sock = sock
        self.idle_timeout_s = idle_timeout_s
        self.message_timeout_s = message_timeout_s
        self.session_deadline = session_deadline
        self.stop = stop
        self._message_deadline: Optional[float] = None
        sock.settimeout(idle_timeout_s)
        self.bytes_read = 0

    def begin_message(self) -> None:
        """Start the per-message clock (call before reading each message)."""
        if self.message_timeout_s is not None:
            self._message_deadline = time.monotonic() + self.message_timeout_s

    def _deadlines(self, last_byte: float) -> list:
        """(deadline, reason) pairs in force now."""
        out = []
        if self.idle_timeout_s is not None:
            out.append((last_byte + self.idle_timeout_s, f"peer silent for {self.idle_timeout_s} s"))
        if self._message_deadline is not None:
            out.append((self._message_deadline, f"message not complete within "
                        f"{self.message_timeout_s:g} s (the per-message deadline: peer too slow)"))
        if self.session_deadline is not None:
            out.append((self.session_deadline, "session time limit reached"))
        return out

    def _wait(self, last_byte: float, missing: int) -> None:
        """Set the socket timeout to the nearest limit; raise when one has passed."""
        if self.stop is not None and self.stop.is_set():
            raise ProtocolError("server shutting down")
        limits = self._deadlines(last_byte)
        now = time.monotonic()
        for deadline, reason in limits:
            if now >= deadline:
                raise ProtocolError(f"{reason} (waiting for {missing} more bytes)")
        wait = min([d - now for d, _ in limits] + ([0.5] if self.stop is not None else []),
                   default=None)
        self.sock.settimeout(None if wait is None else max(wait, 0.01))

    def read_exactly(self, n: int) -> bytes:
        buf = bytearray()
        last_byte = time.monotonic()
        while len(buf) < n:
            self._wait(last_byte, n - len(buf))
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                continue  # the next _wait says which limit passed, or waits on
            except OSError as exc:
                raise ProtocolError(f"connection failed: {exc}") from exc
            if not chunk:
                raise ProtocolError(f"connection closed in the middle of a frame "
                                    f"({len(buf)} of {n} bytes read)")
            buf += chunk
            last_byte = time.monotonic()
        self.bytes_read += n
        return bytes(buf)


ReadFn = Callable[[int], bytes]


def _u(read: ReadFn, st: struct.Struct) -> int:
    return int(st.unpack(read(st.size))[0])


def _text(read: ReadFn, limits: Limits, what: str, length: struct.Struct = _U32) -> bytes:
    n = limits.check(what, _u(read, length), limits.max_text_bytes)
    return read(n)


def read_acquisition(read: ReadFn, limits: Limits = Limits()) -> ismrmrd.Acquisition:
    """One acquisition payload, sizes checked from its header before the data is read."""
    head_bytes = read(ACQ_HEADER_BYTES)
    head = ismrmrd.AcquisitionHeader.from_buffer_copy(head_bytes)
    samples, channels = int(head.number_of_samples), int(head.active_channels)
    limits.check("acquisition", samples * (channels * 8 + int(head.trajectory_dimensions) * 4))
    pending = [head_bytes]
    return ismrmrd.Acquisition.deserialize_from(lambda k: pending.pop() if pending else read(k))


def read_waveform(read: ReadFn, limits: Limits = Limits()) -> Any:
    """One waveform payload (physiology), sizes checked before the samples are read."""
    head_bytes = read(WAVEFORM_HEADER_BYTES)
    head = ismrmrd.WaveformHeader.from_buffer_copy(head_bytes)
    limits.check("waveform", int(head.number_of_samples) * int(head.channels) * 4)
    pending = [head_bytes]
    return ismrmrd.Waveform.deserialize_from(lambda k: pending.pop() if pending else read(k))


def read_image(read: ReadFn, limits: Limits = Limits()) -> Tuple[Any, str, np.ndarray]:
    """One image payload -> (ImageHeader, attribute XML, data (channels, z, y, x))."""
    head = ismrmrd.ImageHeader.from_buffer_copy(read(IMAGE_HEADER_BYTES))
    attributes = _text(read, limits, "image attributes", _U64).rstrip(b"\0").decode("utf-8")
    dtype = np.dtype(DATA_TYPES.get(int(head.data_type), np.uint8))
    if int(head.data_type) not in DATA_TYPES:
        raise ProtocolError(f"image data_type {head.data_type} is not an ISMRMRD type")
    x, y, z = (int(v) for v in head.matrix_size)
    count = int(head.channels) * x * y * z
    data = read(limits.check("image data", count * dtype.itemsize))
    return head, attributes, np.frombuffer(data, dtype=dtype).reshape(int(head.channels), z, y, x)


def read_message(read: ReadFn, limits: Limits = Limits(),
                 extra: Optional[dict] = None) -> Message:
    """The next frame. ``extra`` maps further ids to ``reader(read) -> payload``.

    Raises :class:`ProtocolError` for an unknown id, a length over ``limits`` or a broken
    stream (the caller logs it, answers with ERROR and closes the connection).
    """
    mid = _u(read, _U16)
    if mid == CONFIG_FILE:
        return Message(mid, read(CONFIG_FILE_BYTES).split(b"\0", 1)[0].decode("utf-8", "replace"))
    if mid in (CONFIG_TEXT, TEXT):
        return Message(mid, _text(read, limits, NAMES[mid]).decode("utf-8", "replace"))
    if mid == HEADER:
        return Message(mid, _text(read, limits, "header"))
    if mid == ERROR:
        return Message(mid, _text(read, limits, "error", _U64).decode("utf-8", "replace"))
    if mid == CLOSE:
        return Message(mid)
    if mid == ACQUISITION:
        return Message(mid, read_acquisition(read, limits))
    if mid == IMAGE:
        return Message(mid, read_image(read, limits))
    if mid == WAVEFORM:
        return Message(mid, read_waveform(read, limits))
    if extra and mid in extra:
        return Message(mid, extra[mid](read))
    raise ProtocolError(f"unknown message id {mid} (expected one of "
                        f"{sorted(set(NAMES) - {RECON_DATA, IMAGE_ARRAY})})")


_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>\s*")


def header_text(raw: "bytes | str") -> str:
    """The header as text: bytes decoded as UTF-8 whatever the XML declaration claims (ismrmrd's
    serializer declares ``ascii`` but writes UTF-8), the declaration itself dropped."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    return _DECLARATION.sub("", text, count=1)


# ------------------------------------------------------------------------------ writing

def frame_id(mid: int) -> bytes:
    return _U16.pack(mid)


def frame_close() -> bytes:
    return frame_id(CLOSE)


def frame_error(text: str) -> bytes:
    """ERROR (8): ``uint64`` length + UTF-8 text (what Gadgetron reports as a remote error)."""
    data = text.encode("utf-8")
    return frame_id(ERROR) + _U64.pack(len(data)) + data


def frame_text(text: str, mid: int = TEXT) -> bytes:
    """TEXT (5) or CONFIG_TEXT (2): ``uint32`` length + UTF-8 text."""
    data = text.encode("utf-8")
    return frame_id(mid) + _U32.pack(len(data)) + data


def frame_config_file(name: str) -> bytes:
    """CONFIG_FILE (1): the name in a NUL-padded 1024-byte field."""
    data = name.encode("utf-8")
    if len(data) >= CONFIG_FILE_BYTES:
        raise ValueError(f"config name longer than {CONFIG_FILE_BYTES - 1} bytes")
    return frame_id(CONFIG_FILE) + data.ljust(CONFIG_FILE_BYTES, b"\0")


def frame_header(xml: "str | bytes") -> bytes:
    """HEADER (3): the XML as UTF-8 bytes (raw bytes are forwarded untouched)."""
    data = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
    return frame_id(HEADER) + _U32.pack(len(data)) + data


def frame_acquisition(acq: Any) -> bytes:
    """ACQUISITION (1008) from an ``ismrmrd.Acquisition`` (any version)."""
    data = np.ascontiguousarray(np.asarray(acq.data).astype(np.complex64, copy=False))
    traj = np.ascontiguousarray(np.asarray(acq.traj).astype(np.float32, copy=False))
    head = bytes(acq.getHead()) if hasattr(acq, "getHead") else bytes(acq._head)
    return frame_id(ACQUISITION) + head + traj.tobytes() + data.tobytes()


def data_type_of(dtype: np.dtype) -> int:
    """ISMRMRD data type number of ``dtype``; ``TypeError`` names the supported ones."""
    for number, candidate in DATA_TYPES.items():
        if np.dtype(candidate) == np.dtype(dtype):
            return number
    raise TypeError(f"no ISMRMRD image type for {np.dtype(dtype)}; use one of "
                    f"{[np.dtype(t).name for t in DATA_TYPES.values()]}")


def frame_image(header: Any, attributes: str, data: np.ndarray) -> bytes:
    """IMAGE (1022): header (``data_type``, ``channels``, ``matrix_size`` set from ``data``
    shaped ``(y, x)``, ``(z, y, x)`` or ``(channels, z, y, x)``), attributes, data."""
    array = np.asarray(data)
    supported = [np.dtype(t) for t in DATA_TYPES.values()]
    if array.dtype.byteorder == ">" or array.dtype not in supported:
        target = np.float32 if not np.iscomplexobj(array) else np.complex64
        array = array.astype(target)
    array = np.ascontiguousarray(array.reshape((1,) * (4 - array.ndim) + array.shape))
    head = ismrmrd.ImageHeader.from_buffer_copy(bytes(header))
    head.data_type = data_type_of(array.dtype)
    head.channels = array.shape[0]
    head.matrix_size[0], head.matrix_size[1], head.matrix_size[2] = (
        array.shape[3], array.shape[2], array.shape[1])
    attr = attributes.encode("utf-8")
    head.attribute_string_len = len(attr)
    return frame_id(IMAGE) + bytes(head) + _U64.pack(len(attr)) + attr + array.tobytes()
