"""Training shards: one safetensors file per source scan holding the normalised complex
MVUE targets (as real/imag float32) with the per-slice metadata, prompts and provenance in
the file's JSON metadata header. Written atomically (temp file, then rename).

Shards keep each scan's native grid, so shards of one folder may differ in matrix size.
``ShardReader`` opens one memory-mapped and reads single slices (``get_slice``): what a
streaming data pipeline needs. ``load_shards`` (everything in memory, one size) stays for
small sets and comparisons.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Sequence, Tuple, Union

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import InputFileError

SHARD_VERSION = 1
PathLike = Union[str, Path]


@dataclass(frozen=True)
class Shard:
    """``x (S, H, W)`` complex64 targets (|x| ~ [0, 1.5]), ``scale (S,)`` the divisor that was
    applied, one ``ScanMetadata`` and prompt per slice, the source file and its slice indices."""

    x: torch.Tensor
    scale: torch.Tensor
    metadata: Tuple[ScanMetadata, ...]
    prompts: Tuple[str, ...]
    source: str
    slices: Tuple[int, ...]


@dataclass(frozen=True)
class ShardHeader:
    """What a shard says about itself without its images: ``shape`` is ``(S, H, W)``."""

    path: Path
    source: str
    slices: Tuple[int, ...]
    prompts: Tuple[str, ...]
    metadata: Tuple[ScanMetadata, ...]
    shape: Tuple[int, int, int]

    @property
    def num_slices(self) -> int:
        return self.shape[0]


def _meta_from_dict(d: dict) -> ScanMetadata:
    return ScanMetadata(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def write_shard(path: PathLike, shard: Shard) -> Path:
    """Write ``shard`` to ``path`` (``.safetensors``) atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    header = {"version": SHARD_VERSION, "source": shard.source, "slices": list(shard.slices),
              "prompts": list(shard.prompts), "metadata": [m.to_dict() for m in shard.metadata]}
    tensors = {"x": torch.view_as_real(shard.x.to(torch.complex64)).contiguous().clone(),
               "scale": shard.scale.float().contiguous().clone()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_file(tensors, str(tmp), metadata={"contextmri": json.dumps(header)})
    os.replace(tmp, path)
    return path


def _parse_header(path: Path, raw: dict, x_shape: Sequence[int], x_dtype: str) -> ShardHeader:
    """Check the JSON header against the tensor table; ``ValueError``/``KeyError`` if broken."""
    doc = json.loads(raw["contextmri"])
    if doc.get("version") != SHARD_VERSION:
        raise ValueError(f"shard version {doc.get('version')} is not {SHARD_VERSION}")
    if len(x_shape) != 4 or x_shape[-1] != 2 or x_dtype != "F32":
        raise ValueError(f"tensor 'x' is {x_dtype} {list(x_shape)}, expected F32 (S, H, W, 2)")
    s = int(x_shape[0])
    metas = tuple(_meta_from_dict(m) for m in doc["metadata"])
    if not len(metas) == len(doc["slices"]) == len(doc["prompts"]) == s:
        raise ValueError(f"{s} images but {len(metas)} metadata, {len(doc['slices'])} slice "
                         f"indices and {len(doc['prompts'])} prompts")
    return ShardHeader(path=path, source=str(doc["source"]), slices=tuple(doc["slices"]),
                       prompts=tuple(doc["prompts"]), metadata=metas,
                       shape=(s, int(x_shape[1]), int(x_shape[2])))


class ShardReader:
    """One shard opened memory-mapped: its ``header`` and single-slice reads.

    Every problem (missing file, not safetensors, truncated, inconsistent header, non-finite
    values) is an ``InputFileError`` naming the file. ``close()`` (or ``with``) unmaps it.
    """

    def __init__(self, path: PathLike) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = Path(path)
        try:
            self._file: Any = safe_open(str(self.path), framework="pt")
            self._x = self._file.get_slice("x")
            self.header = _parse_header(self.path, self._file.metadata() or {},
                                        self._x.get_shape(), self._x.get_dtype())
        except FileNotFoundError:
            raise InputFileError(self.path, "no such shard") from None
        except (SafetensorError, KeyError, ValueError, TypeError, OSError) as exc:
            raise InputFileError(self.path, f"not a readable contextmri training shard "
                                            f"({type(exc).__name__}: {exc})") from exc

    def image(self, i: int) -> torch.Tensor:
        """Slice ``i`` as complex64 ``(H, W)`` (a copy; only its bytes are read)."""
        from safetensors import SafetensorError

        try:
            x = self._x[int(i)]
        except (SafetensorError, OSError, ValueError, IndexError) as exc:
            raise InputFileError(self.path, f"slice {i} cannot be read ({exc})") from exc
        if not torch.isfinite(x).all():
            raise InputFileError(self.path, f"slice {i} holds non-finite values")
        return torch.view_as_complex(x.contiguous())

    def images(self) -> torch.Tensor:
        """All slices ``(S, H, W)`` complex64."""
        return torch.view_as_complex(self._file.get_tensor("x").contiguous())

    def scales(self) -> torch.Tensor:
        """``(S,)`` the divisors the images were normalised by."""
        return self._file.get_tensor("scale")

    def close(self) -> None:
        self._x = self._file = None

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_header(path: PathLike) -> ShardHeader:
    """The header of a shard (its images stay on disk)."""
    with ShardReader(path) as r:
        return r.header


def read_shard(path: PathLike) -> Shard:
    """Read a shard; ``InputFileError`` naming the file if it is missing or not a shard."""
    with ShardReader(path) as r:
        h = r.header
        return Shard(x=r.images(), scale=r.scales(), metadata=h.metadata, prompts=h.prompts,
                     source=h.source, slices=h.slices)


def list_shards(directory: PathLike) -> List[Path]:
    """The shard files of a directory, sorted by name."""
    return sorted(p for p in Path(directory).glob("*.safetensors") if not p.name.startswith("."))


def load_shards(paths: Sequence[PathLike]) -> Tuple[torch.Tensor, List[ScanMetadata], List[str]]:
    """Concatenate shards (all of one matrix size) in memory:
    ``(x (N, H, W), metadata, "file:slice" ids)``."""
    xs, metas, ids = [], [], []
    for p in paths:
        s = read_shard(p)
        xs.append(s.x)
        metas.extend(s.metadata)
        ids.extend(f"{Path(s.source).name}:{i}" for i in s.slices)
    if not xs:
        raise InputFileError(str(paths), "no training shards found")
    return torch.cat(xs), metas, ids
