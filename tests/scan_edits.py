"""Test helpers that damage a real ISMRMRD file the way a careless user or an attacker would:
edit its XML header, or overwrite k-space samples (NaN, inf) in place."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Tuple

import h5py
import numpy as np


def edit_header(src: Path, dst: Path, *replacements: Tuple[str, str]) -> Path:
    """Copy ``src`` to ``dst`` with ``old -> new`` replacements in ``/dataset/xml`` (each
    ``old`` must occur)."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        node = f["dataset/xml"]
        shape, dtype = node.shape, node.dtype
        raw = node[0] if shape else node[()]
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        for old, new in replacements:
            assert old in text, f"{old!r} not in the header of {src}"
            text = text.replace(old, new, 1)
        del f["dataset/xml"]
        data = text.encode("utf-8")
        f.create_dataset("dataset/xml", data=np.array([data], dtype=dtype) if shape else data,
                         dtype=dtype)
    return Path(dst)


def imaging_rows(path: Path, slice_index: int = 0) -> list:
    """Indices in ``/dataset/data`` of the plain imaging lines (not noise, not calibration:
    flags 19, 20, 21 clear) of one slice."""
    with h5py.File(path, "r") as f:
        head = f["dataset/data"]["head"]
    flags = head["flags"].astype(np.uint64)
    skip = np.uint64((1 << 18) | (1 << 19) | (1 << 20))
    return [i for i in range(len(head)) if not int(flags[i] & skip)
            and int(head["idx"]["slice"][i]) == slice_index]


def set_samples(src: Path, dst: Path, edits: Iterable[Tuple[int, int, int, complex]]) -> Path:
    """Copy ``src`` to ``dst`` and set sample (acquisition, coil, sample) to a value each."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        table = f["dataset/data"]
        for acq, coil, sample, value in edits:
            row = table[acq]
            n = int(row["head"]["number_of_samples"])
            data = np.array(row["data"], dtype=np.float32)
            data[2 * (coil * n + sample)] = np.real(value)
            data[2 * (coil * n + sample) + 1] = np.imag(value)
            row["data"] = data
            table[acq] = row
    return Path(dst)
