"""The DICOM outbox: a private folder of Part-10 files waiting for a PACS (see ``io.dicom.pacs``).

``Outbox.enqueue`` checks and copies files in atomically (hidden temporary, fsync,
``os.replace``, mode 0o600) under ``<SOPInstanceUID>.dcm``, so re-enqueueing an instance never
duplicates it; ``read_instance``/``read_meta`` say why a file cannot be sent (``UnreadableDicom``);
``Outbox.reject`` moves such a file to ``rejected/`` with the reason next to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Dict, Iterable, Iterator, List, Tuple, Union

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian)

from contextmri_core.errors import ConfigError, InputFileError

log = logging.getLogger(__name__)

_NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
           DeflatedExplicitVRLittleEndian}  # pixel data not encapsulated
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# pydicom raises all of these on corrupt input
_PARSE_ERRORS = (InvalidDicomError, EOFError, ValueError, KeyError, IndexError, TypeError,
                 AttributeError, NotImplementedError, OverflowError)


class UnreadableDicom(Exception):
    """A file that cannot be sent as a DICOM instance (the message says why)."""


def read_instance(path: Path, pixels: bool = True) -> Dataset:
    """The dataset of a Part-10 file, checked to be sendable whole; ``UnreadableDicom``
    saying why not: unreadable, truncated or with trailing bytes (not parseable to the end),
    a value that does not parse, no SOP UIDs, or (with ``pixels``) an image without
    PixelData or with PixelData of the wrong size."""
    try:
        ds = pydicom.dcmread(os.fspath(path), stop_before_pixels=not pixels)
        if pixels:
            _check_read_to_the_end(ds, os.path.getsize(path))
        for elem in ds.iterall():  # values are parsed lazily: parse every one now
            _ = elem.value
    except _PARSE_ERRORS as exc:
        raise UnreadableDicom(f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise UnreadableDicom("no Transfer Syntax UID in the file meta information")
    for kw in ("SOPClassUID", "SOPInstanceUID"):
        value = ds.get(kw)
        text = "" if value is None else str(value)
        if not (_UID.match(text) and len(text) <= 64):
            raise UnreadableDicom(f"missing or invalid {kw}")
    if pixels:
        _check_pixels(ds)
    return ds


def _check_read_to_the_end(ds: Dataset, size: int) -> None:
    """``UnreadableDicom`` when the last element read does not end where the file ends:
    pydicom stops quietly at a truncated element header and reads short values."""
    if str(ds.file_meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian:
        return  # offsets refer to the inflated stream
    tags = list(ds.keys())
    if not tags:
        raise UnreadableDicom("no data set after the file meta information")
    last = ds.get_item(max(tags))
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return  # converted already, or undefined length: nothing to compare
    end = int(tell) + int(length)
    if end > size:
        what = "pixel data" if int(last.tag) == 0x7FE00010 else f"element {last.tag}"
        raise UnreadableDicom(f"truncated {what} ({max(size - int(tell), 0)} of {length} "
                              f"bytes in the file)")
    if end < size:
        raise UnreadableDicom(f"not parseable to the end: {size - end} trailing bytes after "
                              f"the last element (a truncated element?)")


def _has_image(ds: Dataset) -> bool:
    name = getattr(pydicom.uid.UID(str(ds.get("SOPClassUID", ""))), "name", "")
    return "Image Storage" in str(name) or any(k in ds for k in ("Rows", "Columns"))


def _check_pixels(ds: Dataset) -> None:
    """An image must carry PixelData of exactly Rows x Columns x ... (native syntaxes)."""
    if not _has_image(ds):
        return
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise UnreadableDicom("an image instance with no PixelData (truncated before the "
                              "pixels?)")
    _check_pixel_length(ds)


def _check_pixel_length(ds: Dataset) -> None:
    """``UnreadableDicom`` for native pixel data shorter (truncated) or longer than
    Rows x Columns x samples x frames x bits (one byte of even-length padding allowed)."""
    if "PixelData" not in ds or str(ds.file_meta.TransferSyntaxUID) not in _NATIVE:
        return
    try:
        expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
                    * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated)) // 8
    except (AttributeError, TypeError, ValueError):
        raise UnreadableDicom("pixel data without valid Rows/Columns/BitsAllocated") from None
    got = len(ds.PixelData)
    if got < expected:
        raise UnreadableDicom(f"truncated pixel data ({got} of {expected} bytes)")
    if got > expected + (expected % 2):
        raise UnreadableDicom(f"pixel data of {got} bytes where Rows x Columns x ... give "
                              f"{expected}")


def read_meta(path: Path) -> Tuple[str, str]:
    """(SOP class UID, transfer syntax UID) from the file meta; ``UnreadableDicom`` if none.
    ``OSError`` (missing file, permissions) passes through."""
    try:
        meta = read_file_meta_info(os.fspath(path))
        return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except _PARSE_ERRORS as exc:
        raise UnreadableDicom(f"no readable DICOM file meta ({type(exc).__name__}: {exc})") \
            from None


def find_dicom_files(paths: Iterable[Path]) -> List[Path]:
    """Files named are taken as given (``enqueue`` checks them); folders contribute, recursively
    and sorted, their files with the Part-10 ``DICM`` marker (sidecars etc. are skipped).
    ``InputFileError`` when a path does not exist or a folder holds no DICOM file."""
    found: List[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = [f for f in sorted(path.rglob("*")) if f.is_file() and _has_dicm(f)]
            if not files:
                raise InputFileError(path, "folder holds no DICOM (Part-10) files")
            found.extend(files)
        else:
            raise InputFileError(path, "no such file or folder")
    return found


def _has_dicm(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


class Outbox:
    """A private folder of DICOM files waiting for the PACS, one ``<SOPInstanceUID>.dcm`` per
    instance; hidden files (temporaries, the lock) and sub-folders are not queued."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(mode=0o700, parents=True)
            os.chmod(self.root, 0o700)
        except FileExistsError:
            if not self.root.is_dir():
                raise ConfigError(f"outbox {self.root} exists and is not a folder") from None
            if self.root.stat().st_mode & 0o077:
                log.warning("outbox %s is accessible to other users: chmod 700 it", self.root)
        except OSError as exc:
            raise ConfigError(f"outbox {self.root}: cannot create it ({exc.strerror})") from None
        self.rejected_dir = self.root / "rejected"

    def enqueue(self, files: Iterable[Path]) -> List[Path]:
        """Copy DICOM files in (all are checked before any is copied); one path per distinct
        instance, first-seen order. Re-enqueueing an instance replaces its queued copy.
        ``InputFileError`` naming the first file that is not sendable DICOM, or when copying
        fails (then none of this call's new instances stay queued: a series is all or none)."""
        sources = [Path(f) for f in files]
        uids = [self._uid_of(src) for src in sources]
        queued: Dict[str, Path] = {}
        added: List[Path] = []
        for src, uid in zip(sources, uids):
            dest = self.root / f"{uid}.dcm"
            existed = dest.exists()
            try:
                _atomic_copy(src, dest)
            except OSError as exc:  # e.g. disk full: take back what this call added
                for path in added:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise InputFileError(src, f"cannot queue into {self.root} "
                                          f"({exc.strerror or exc}); none of the "
                                          f"{len(sources)} instances were queued") from None
            if not existed:
                added.append(dest)
            queued[uid] = dest
        log.info("queued %d instance(s) in %s", len(queued), self.root)
        return list(queued.values())

    @staticmethod
    def _uid_of(src: Path) -> str:
        try:
            return str(read_instance(src).SOPInstanceUID)
        except UnreadableDicom as exc:
            raise InputFileError(src, str(exc)) from None
        except OSError as exc:
            raise InputFileError(src, f"cannot read ({exc.strerror or exc})") from None

    def pending(self) -> List[Path]:
        """Queued files, sorted by name."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if not p.name.startswith(".") and p.is_file())

    def reject(self, path: Path, reason: str) -> Path:
        """Move ``path`` to ``rejected/`` and write the reason next to it."""
        self.rejected_dir.mkdir(mode=0o700, exist_ok=True)
        dest = self.rejected_dir / path.name
        os.replace(path, dest)
        _write_private(self.rejected_dir / f"{path.name}.reason.txt", (reason + "\n").encode())
        log.warning("%s moved to %s: %s", path.name, self.rejected_dir, reason)
        return dest

    @contextlib.contextmanager
    def lock(self) -> Iterator[bool]:
        """Yield True while this process holds the outbox's drain lock, False when another does."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing releases the lock


def _atomic_copy(src: Path, dest: Path) -> None:
    """Copy via a hidden temporary in ``dest``'s folder, fsync, then ``os.replace``."""
    with open(src, "rb") as f:
        _write_private(dest, f)


def _write_private(dest: Path, data: Union[bytes, BinaryIO]) -> None:
    """Write ``data`` (bytes or a file to copy) to ``dest`` atomically, mode 0o600."""
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, bytes):
                out.write(data)
            else:
                shutil.copyfileobj(data, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
