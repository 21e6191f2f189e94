"""BART's cfl format: ``name.hdr`` (line 2: dims) + ``name.cfl`` (complex64, Fortran order).

``name`` is given without extension, as BART commands take it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np

from contextmri_core.errors import InputFileError

PathLike = Union[str, Path]


def _paths(name: PathLike) -> Tuple[Path, Path]:
    base = str(name)
    for ext in (".cfl", ".hdr"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return Path(base + ".hdr"), Path(base + ".cfl")


def write_cfl(name: PathLike, array: np.ndarray) -> None:
    """Write ``array`` (any shape, cast to complex64) as ``name.hdr`` + ``name.cfl``."""
    hdr, cfl = _paths(name)
    array = np.asarray(array)
    dims = list(array.shape) or [1]
    with open(hdr, "w") as f:
        f.write("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    np.asfortranarray(array.astype(np.complex64)).reshape(-1, order="F").tofile(cfl)


def read_cfl(name: PathLike) -> np.ndarray:
    """Read ``name.hdr`` + ``name.cfl`` -> complex64 array; trailing singleton dims dropped."""
    hdr, cfl = _paths(name)
    if not hdr.is_file() or not cfl.is_file():
        raise InputFileError(hdr if not hdr.is_file() else cfl, "no such file")
    lines = [ln.strip() for ln in hdr.read_text().splitlines()]
    try:
        dims = [int(d) for d in lines[lines.index("# Dimensions") + 1].split()]
    except (ValueError, IndexError) as exc:
        raise InputFileError(hdr, f"no '# Dimensions' line with integers ({exc})") from exc
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(cfl, dtype=np.complex64)
    if data.size != int(np.prod(dims)):
        raise InputFileError(cfl, f"holds {data.size} values, header says {dims}")
    return data.reshape(dims, order="F")
