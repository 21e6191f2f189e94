"""PACS push through an on-disk outbox, so that nothing is lost while a PACS is down.

Every instance is copied into the outbox (``Outbox.enqueue``, one ``<SOPInstanceUID>.dcm`` per
instance, atomic, mode 0o600) before anything is sent. ``push`` drains the outbox over one
association (C-STORE) and deletes a file only after the PACS answered a *storing* status:
0x0000 (success) or one of the warnings 0xB000 (coercion of data elements), 0xB006 (elements
discarded), 0xB007 (data set does not match SOP class), with which the PACS has still stored the
instance (DICOM PS3.4 B.2.3; they are logged). Anything else (refused connection, rejected or
aborted association, no answer, failure status) leaves the file queued; rounds without progress
are retried after ``backoff_s * 2**k`` seconds and what is left is reported, never raised.
Files that are not readable DICOM would block the queue forever: they are moved to
``<root>/rejected/`` with a ``.reason.txt`` next to them. Patient data is never logged (counts
and SOP Instance UIDs only). The only module that imports pynetdicom.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from contextmri_core.errors import ConfigError, check_fields
from contextmri_core.io.dicom.outbox import (Outbox, UnreadableDicom, find_dicom_files,
                                             read_instance, read_meta)

__all__ = ["PacsTarget", "Outbox", "PushReport", "echo", "push", "find_dicom_files",
           "STORED_STATUSES"]
log = logging.getLogger(__name__)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION = "1.2.840.10008.1.1"
#: C-STORE statuses after which the PACS holds the instance: success and the storage warnings.
STORED_STATUSES = {0x0000: "success", 0xB000: "warning: coercion of data elements",
                   0xB006: "warning: elements discarded",
                   0xB007: "warning: data set does not match SOP class"}
MAX_BACKOFF_S = 300.0
MAX_CONTEXTS = 128  # DICOM limit of presentation contexts per association
_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash


def _aet_ok(value: object) -> bool:
    return isinstance(value, str) and bool(_AET.match(value)) and bool(value.strip())


@dataclass(frozen=True)
class PacsTarget:
    """Where to send: a DICOM Storage SCP (``called_aet`` at ``host:port``); seconds per step."""

    host: str
    port: int
    called_aet: str
    calling_aet: str = "CONTEXTMRI"
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        aet_fix = "AE titles are 1-16 printable ASCII characters without backslash"
        check_fields(self, [
            ("host", isinstance(self.host, str) and bool(self.host)
             and not any(c.isspace() for c in self.host), "give a host name or IP address"),
            ("port", isinstance(self.port, int) and not isinstance(self.port, bool)
             and 1 <= self.port <= 65535, "use a TCP port 1..65535"),
            ("called_aet", _aet_ok(self.called_aet), aet_fix),
            ("calling_aet", _aet_ok(self.calling_aet), aet_fix),
            ("timeout_s", isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0
             and math.isfinite(self.timeout_s), "use a number of seconds > 0"),
        ])

    @classmethod
    def parse(cls, spec: str, calling_aet: str = "CONTEXTMRI") -> "PacsTarget":
        """``HOST:PORT:AET`` (e.g. ``pacs.example.org:104:ORTHANC``; ``[::1]:104:AET``)."""
        usage = f"PACS {spec!r}: expected HOST:PORT:AET, e.g. pacs.example.org:104:ORTHANC"
        parts = spec.rsplit(":", 2) if isinstance(spec, str) else []
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise ConfigError(usage)
        host, port, aet = (p.strip() for p in parts)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not port.isdigit():
            raise ConfigError(f"{usage} (port {port!r} is not a number)")
        try:
            return cls(host, int(port), aet, calling_aet)
        except ConfigError as exc:
            raise ConfigError(f"PACS {spec!r}: {exc}") from None

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"


# ----------------------------------------------------------------------------- association
def _quiet_pynetdicom() -> None:
    """pynetdicom logs every PDU at INFO: keep it at WARNING unless we log at DEBUG."""
    net = logging.getLogger("pynetdicom")
    if net.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        net.setLevel(logging.WARNING)


def _associate(target: PacsTarget, contexts: Sequence[Tuple[str, List[str]]]):
    """``(association, "")`` when established, else ``(None, why)``."""
    ae = AE(ae_title=target.calling_aet)
    for name in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, name, target.timeout_s)
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    try:
        assoc = ae.associate(target.host, target.port, ae_title=target.called_aet)
    except (OSError, RuntimeError, ValueError) as exc:
        return None, f"association with {target} failed: {exc}"
    if assoc.is_established:
        return assoc, ""
    why = "rejected" if assoc.is_rejected else "could not connect or aborted"
    return None, f"association with {target} failed ({why})"


def _release(assoc) -> None:
    if assoc.is_established:
        assoc.release()
    else:
        assoc.abort()


def echo(target: PacsTarget) -> bool:
    """C-ECHO: True when the PACS answered success; False (logged) otherwise, never raises."""
    _quiet_pynetdicom()
    assoc, why = _associate(target, [(VERIFICATION, list(_UNCOMPRESSED))])
    if assoc is None:
        log.warning("C-ECHO: %s", why)
        return False
    try:
        status = assoc.send_c_echo()
    except (OSError, RuntimeError) as exc:
        log.warning("C-ECHO to %s failed: %s", target, exc)
        return False
    finally:
        _release(assoc)
    ok = status.get("Status") == 0x0000
    log.info("C-ECHO to %s: %s", target, "success" if ok else f"status {status.get('Status')}")
    return ok


def _contexts(metas: Iterable[Tuple[str, str]]) -> List[Tuple[str, List[str]]]:
    """Presentation contexts for the (SOP class, transfer syntax) pairs queued: uncompressed
    files share one context per class (explicit and implicit VR LE offered; pynetdicom converts
    between them), any other syntax gets its own; MR Image Storage is always offered."""
    plain = tuple(_UNCOMPRESSED)
    wanted: Dict[Tuple[str, Tuple[str, ...]], None] = {(MR_IMAGE_STORAGE, plain): None}
    for sop, ts in metas:
        wanted[(sop, plain if ts in plain else (ts,))] = None
    contexts = [(sop, list(ts)) for sop, ts in wanted]
    if len(contexts) > MAX_CONTEXTS:
        log.warning("%d presentation contexts needed, %d offered: the rest waits for the next "
                    "round", len(contexts), MAX_CONTEXTS)
    return contexts[:MAX_CONTEXTS]


# ----------------------------------------------------------------------------- push
@dataclass(frozen=True)
class PushReport:
    """What a push did: instances stored, instances not stored (still queued after a failed
    attempt, or moved to ``rejected/``), the files still queued, and what went wrong."""

    sent: int
    failed: int
    remaining: Tuple[Path, ...]
    errors: Tuple[str, ...]
    rejected: Tuple[Path, ...] = ()
    locked: bool = False  # another push held the outbox: nothing was tried

    @property
    def ok(self) -> bool:
        return not self.remaining


class _Tally:
    """Running totals of one push."""

    def __init__(self) -> None:
        self.sent = 0
        self.tried: Set[Path] = set()
        self.rejected: List[Path] = []
        self.errors: Dict[str, None] = {}

    def error(self, message: str) -> None:
        if message not in self.errors:
            log.warning("%s", message)
        self.errors[message] = None


def push(outbox: Outbox, target: PacsTarget, retries: int = 3, backoff_s: float = 1.0,
         on_sent: Optional[Callable[[Path], None]] = None,
         sleep: Callable[[float], None] = time.sleep) -> PushReport:
    """Drain ``outbox`` into ``target`` (see the module docstring). A round that stores nothing
    is retried ``retries`` times, sleeping ``min(backoff_s * 2**k, 300)`` s before retry k+1;
    ``on_sent(path)`` runs after each stored file was removed (its exceptions propagate).
    ``ConfigError`` for bad arguments only; a push while another one drains the same outbox
    returns at once, sending nothing (error noted)."""
    _check_push_args(outbox, target, retries, backoff_s, on_sent, sleep)
    _quiet_pynetdicom()
    with outbox.lock() as held:
        if not held:
            return PushReport(0, 0, tuple(outbox.pending()),
                              (f"{outbox.root}: another push holds this outbox",), locked=True)
        tally = _Tally()
        misses = 0
        while outbox.pending():
            before = tally.sent
            _send_round(outbox, target, tally, on_sent)
            if tally.sent > before:
                misses = 0
                continue
            if misses >= retries or not outbox.pending():
                break
            delay = min(backoff_s * 2 ** misses, MAX_BACKOFF_S)
            misses += 1
            log.info("nothing stored: retry %d of %d in %g s", misses, retries, delay)
            sleep(delay)
    remaining = tuple(outbox.pending())
    failed = sum(p in tally.tried for p in remaining) + len(tally.rejected)
    log.info("push to %s: sent %d, failed %d, still queued %d", target, tally.sent, failed,
             len(remaining))
    return PushReport(tally.sent, failed, remaining, tuple(tally.errors), tuple(tally.rejected))


def _check_push_args(outbox, target, retries, backoff_s, on_sent, sleep) -> None:
    checks = [
        (isinstance(outbox, Outbox), f"outbox must be an Outbox, not {type(outbox).__name__}"),
        (isinstance(target, PacsTarget),
         f"target must be a PacsTarget, not {type(target).__name__}"),
        (isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0,
         f"retries={retries!r}: use a whole number >= 0"),
        (isinstance(backoff_s, (int, float)) and math.isfinite(backoff_s) and backoff_s >= 0,
         f"backoff_s={backoff_s!r}: use seconds >= 0"),
        (on_sent is None or callable(on_sent), "on_sent must be callable or None"),
        (callable(sleep), "sleep must be callable"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"push: {message}")


def _queued_metas(outbox: Outbox, tally: _Tally) -> List[Tuple[Path, str, str]]:
    """(path, SOP class, transfer syntax) of each queued file; unreadable ones are rejected."""
    metas = []
    for path in outbox.pending():
        try:
            sop, ts = read_meta(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            tally.tried.add(path)
            tally.error(f"{path.name}: cannot read ({exc.strerror or exc})")
            continue
        except UnreadableDicom as exc:
            _reject(outbox, path, str(exc), tally)
            continue
        metas.append((path, sop, ts))
    return metas


def _reject(outbox: Outbox, path: Path, reason: str, tally: _Tally) -> None:
    tally.rejected.append(outbox.reject(path, reason))
    tally.error(f"{path.name}: rejected: {reason}")


def _send_round(outbox: Outbox, target: PacsTarget, tally: _Tally,
                on_sent: Optional[Callable[[Path], None]]) -> None:
    """One association: send every queued file; stop at the first sign of a lost association."""
    metas = _queued_metas(outbox, tally)
    if not metas:
        return
    tally.tried.update(p for p, _, _ in metas)
    assoc, why = _associate(target, _contexts((sop, ts) for _, sop, ts in metas))
    if assoc is None:
        tally.error(f"{why}; {len(metas)} instance(s) stay queued")
        return
    try:
        for path, _, _ in metas:
            if not _send_one(assoc, outbox, path, tally, on_sent):
                tally.error(f"association with {target} lost (no answer, aborted or timed "
                            f"out); the rest stays queued")
                break
    finally:
        _release(assoc)


def _send_one(assoc, outbox: Outbox, path: Path, tally: _Tally,
              on_sent: Optional[Callable[[Path], None]]) -> bool:
    """C-STORE one file; False when the association is gone (the round ends)."""
    if not assoc.is_established:
        return False
    try:
        ds = read_instance(path)
    except UnreadableDicom as exc:
        _reject(outbox, path, str(exc), tally)
        return True
    except FileNotFoundError:  # taken away meanwhile: nothing to send
        return True
    except OSError as exc:
        tally.error(f"{path.name}: cannot read ({exc.strerror or exc})")
        return True
    try:
        status = assoc.send_c_store(ds)
    except (ValueError, AttributeError) as exc:  # no accepted context / cannot encode
        tally.error(f"{path.name}: not sent: {exc}")
        return True
    except (OSError, RuntimeError) as exc:
        tally.error(f"{path.name}: not sent: {exc}")
        return False
    code = status.get("Status")
    if code is None:  # no answer: timed out or the connection went away
        return False
    if code not in STORED_STATUSES:
        tally.error(f"{path.name}: PACS answered failure status 0x{code:04X}")
        return True
    if code:
        log.warning("%s: stored with status 0x%04X (%s)", path.name, code, STORED_STATUSES[code])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    tally.sent += 1
    if on_sent is not None:
        on_sent(path)
    return True
