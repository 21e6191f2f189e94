"""Outputs that are complete or absent: write into a hidden staging folder, publish by rename.

Every output of one input (its DICOM series, PNG sheets, NIfTI and ISMRMRD files) is written
into ``OUT/.contextmri-staging-<host>-<pid>-<stem>-<random>/`` (mode 0o700) and, once all of
it is on disk, renamed to ``OUT/<stem>``. A run that is interrupted, killed or runs out of
disk space therefore never leaves files that look complete: the staging folder is removed on
the way out (``staged``) or, after SIGKILL or a power cut, by the next run (``clean_stale``,
which only touches staging folders of this host whose process is gone, so concurrent runs and
torchrun ranks sharing ``OUT`` are safe). ``probe_writable`` checks a folder before any work.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Iterator

from contextmri_core.errors import ConfigError

log = logging.getLogger(__name__)
STAGING = ".contextmri-staging-"
RETIRED = ".contextmri-retired-"


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


@contextlib.contextmanager
def staged(out: Path, stem: str) -> Iterator[Path]:
    """Yield a fresh staging folder in ``out``; publish it as ``out/stem`` when the block
    ends normally, remove it when the block raises (anything, including an interrupt)."""
    out = Path(out)
    _mkdir_private(out)
    tmp = out / f"{STAGING}{_host()}-{os.getpid()}-{stem}-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
        publish(tmp, out / stem)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an older ``final`` is moved aside first, then removed."""
    retired = None
    if final.exists():
        retired = final.parent / f"{RETIRED}{_host()}-{os.getpid()}-{final.name}-" \
                                 f"{secrets.token_hex(4)}"
        os.rename(final, retired)
    try:
        os.rename(tmp, final)
    except BaseException:
        if retired is not None:
            os.rename(retired, final)  # put the old results back
        raise
    _fsync_dir(final.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _owner_gone(name: str, prefix: str) -> bool:
    """Whether a staging/retired folder was made on this host by a process that has ended."""
    host, _, rest = name[len(prefix):].partition("-")
    pid_text = rest.split("-", 1)[0]
    if host != _host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clean_stale(out: Path) -> int:
    """Remove staging and retired folders in ``out`` left by ended processes of this host;
    returns how many were removed."""
    out = Path(out)
    if not out.is_dir():
        return 0
    removed = 0
    for path in out.iterdir():
        prefix = next((p for p in (STAGING, RETIRED) if path.name.startswith(p)), None)
        if prefix and path.is_dir() and _owner_gone(path.name, prefix):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if removed:
        log.warning("removed %d unfinished output folder(s) of an interrupted earlier run in %s",
                    removed, out)
    return removed


def probe_writable(folder: Path, what: str) -> Path:
    """Create ``folder`` (0o700) and write, sync and delete a probe file in it;
    ``ConfigError`` naming ``what``, the folder and the reason when that fails."""
    folder = Path(folder)
    probe = folder / f".contextmri-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _mkdir_private(folder)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"contextmri")
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            reason = "a file of that name is in the way"
        raise ConfigError(f"{what} {folder} is not usable: {reason}; choose another folder "
                          f"or fix its permissions") from None
    return folder
