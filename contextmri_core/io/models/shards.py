"""Training shards: one safetensors file per source scan holding the normalised complex
MVUE targets (as real/imag float32) with the per-slice metadata, prompts and provenance in
the file's JSON metadata header. Written atomically (temp file, then rename)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple, Union

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


def read_shard(path: PathLike) -> Shard:
    """Read a shard; ``InputFileError`` naming the file if it is missing or not a shard."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})["contextmri"])
            x = torch.view_as_complex(f.get_tensor("x").contiguous())
            scale = f.get_tensor("scale")
    except FileNotFoundError:
        raise InputFileError(path, "no such shard") from None
    except (KeyError, ValueError, OSError, RuntimeError) as exc:
        raise InputFileError(path, f"not a contextmri training shard ({exc})") from exc
    if header.get("version") != SHARD_VERSION:
        raise InputFileError(path, f"shard version {header.get('version')} is not {SHARD_VERSION}")
    return Shard(x=x, scale=scale, metadata=tuple(_meta_from_dict(m) for m in header["metadata"]),
                 prompts=tuple(header["prompts"]), source=header["source"],
                 slices=tuple(header["slices"]))


def list_shards(directory: PathLike) -> List[Path]:
    """The shard files of a directory, sorted by name."""
    return sorted(p for p in Path(directory).glob("*.safetensors") if not p.name.startswith("."))


def load_shards(paths: Sequence[PathLike]) -> Tuple[torch.Tensor, List[ScanMetadata], List[str]]:
    """Concatenate shards: ``(x (N, H, W), metadata, "file:slice" ids)``."""
    xs, metas, ids = [], [], []
    for p in paths:
        s = read_shard(p)
        xs.append(s.x)
        metas.extend(s.metadata)
        ids.extend(f"{Path(s.source).name}:{i}" for i in s.slices)
    if not xs:
        raise InputFileError(str(paths), "no training shards found")
    return torch.cat(xs), metas, ids
