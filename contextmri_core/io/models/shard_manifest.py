"""The manifest of a shard folder (``DIR/manifest.json``) and the cheap index a streaming
data pipeline starts from.

The manifest is a pure function of the shard headers (``write_manifest(dir)``, callable by
any shard writer): per shard its file, size, slice count, matrix, contrasts, planes and
spacings; totals over the folder; and the files that could not be read, with the reason.
``index_shards(dir)`` lists ``(path, slices, H, W)`` per readable shard, from the manifest
where its entry still matches the file's size and modification time, else from the header;
unreadable files are returned separately (the caller reports them once and skips them).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from contextmri_core.errors import InputFileError
from contextmri_core.io.models.shards import PathLike, ShardHeader, list_shards, read_header

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ShardEntry:
    """One readable shard: where it is, how many slices and their matrix ``(H, W)``."""

    path: Path
    num_slices: int
    height: int
    width: int


@dataclass(frozen=True)
class ShardIndex:
    """The readable shards of a folder (sorted by name) and ``(path, reason)`` of the rest."""

    entries: Tuple[ShardEntry, ...]
    unreadable: Tuple[Tuple[Path, str], ...]

    @property
    def num_slices(self) -> int:
        return sum(e.num_slices for e in self.entries)


def _distinct(values: Iterable) -> list:
    return sorted({v for v in values if v is not None}, key=str)


def shard_entry(header: ShardHeader, stat: os.stat_result) -> dict:
    """The manifest record of one shard."""
    metas = header.metadata
    return {"file": header.path.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "source": header.source, "slices": header.num_slices,
            "height": header.shape[1], "width": header.shape[2],
            "anatomies": _distinct(m.anatomy for m in metas),
            "contrasts": _distinct(m.contrast for m in metas),
            "planes": _distinct(m.slice_plane for m in metas),
            "pixel_spacing_mm": _distinct(m.pixel_spacing_mm for m in metas),
            "slice_thickness_mm": _distinct(m.slice_thickness_mm for m in metas)}


def _range(values: List[float], missing: int) -> dict:
    if not values:
        return {"min": None, "median": None, "max": None, "missing_slices": missing}
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "missing_slices": missing}


def _totals(headers: List[ShardHeader]) -> dict:
    """Slice counts per size, anatomy, contrast and plane; spacing ranges over slices."""
    metas = [m for h in headers for m in h.metadata]
    sizes = Counter(f"{h.shape[1]}x{h.shape[2]}" for h in headers for _ in range(h.num_slices))
    count = {name: dict(sorted(Counter(str(getattr(m, field)) for m in metas).items()))
             for name, field in (("anatomies", "anatomy"), ("contrasts", "contrast"),
                                 ("planes", "slice_plane"))}
    spacing = [m.pixel_spacing_mm for m in metas if m.pixel_spacing_mm is not None]
    thick = [m.slice_thickness_mm for m in metas if m.slice_thickness_mm is not None]
    return {"shards": len(headers), "slices": len(metas), "sizes": dict(sorted(sizes.items())),
            **count, "pixel_spacing_mm": _range(spacing, len(metas) - len(spacing)),
            "slice_thickness_mm": _range(thick, len(metas) - len(thick))}


def build_manifest(directory: PathLike) -> dict:
    """The manifest of ``directory`` from its shard headers (nothing is written)."""
    root = Path(directory)
    headers, records, unreadable = [], [], []
    for path in list_shards(root):
        try:
            header = read_header(path)
            records.append(shard_entry(header, path.stat()))
            headers.append(header)
        except (InputFileError, OSError) as exc:
            unreadable.append({"file": path.name, "error": str(exc)})
    return {"version": MANIFEST_VERSION, "totals": _totals(headers), "shards": records,
            "unreadable": unreadable}


def write_manifest(directory: PathLike) -> Path:
    """Read every shard header of ``directory`` and write ``manifest.json`` (atomically)."""
    root = Path(directory)
    doc = build_manifest(root)
    target = root / MANIFEST_NAME
    tmp = root / f".{MANIFEST_NAME}.{os.getpid()}.partial"
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def read_manifest(directory: PathLike) -> Optional[dict]:
    """The folder's manifest, or ``None`` when it has none (or an unreadable one)."""
    path = Path(directory) / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: ignored (%s); the shard headers are read instead", path, exc)
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == MANIFEST_VERSION else None


def _known(directory: Path) -> Dict[str, dict]:
    doc = read_manifest(directory) or {}
    return {r["file"]: r for r in doc.get("shards", []) if isinstance(r, dict) and "file" in r}


def index_shards(directory: PathLike) -> ShardIndex:
    """Readable shards of ``directory`` with their slice counts and matrices (see module)."""
    root = Path(directory)
    if not root.is_dir():
        raise InputFileError(root, "no such shard folder: run python -m training.prepare first")
    known = _known(root)
    entries, bad = [], []
    for path in list_shards(root):
        try:
            st = path.stat()
            rec = known.get(path.name)
            if rec and rec.get("bytes") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
                entries.append(ShardEntry(path, int(rec["slices"]), int(rec["height"]),
                                          int(rec["width"])))
                continue
            h = read_header(path)
            entries.append(ShardEntry(path, h.num_slices, h.shape[1], h.shape[2]))
        except (InputFileError, OSError) as exc:
            bad.append((path, str(exc)))
    return ShardIndex(entries=tuple(e for e in entries if e.num_slices > 0), unreadable=tuple(bad))
