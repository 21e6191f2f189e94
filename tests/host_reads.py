"""Test helper: count, while code runs on a CPU (or on the shape-only ``meta`` device), every
place where it would wait for a GPU: reads of tensor values on the host and copies between
devices.

Counted (by name, in a ``collections.Counter``):

- ``scalar``: ``.item()``, ``bool()``, ``float()``, ``int()`` of a tensor, ``if tensor:``
  (all reach ``aten._local_scalar_dense``);
- ``data_dependent``: ops whose output size depends on values (``nonzero``, boolean-mask
  indexing, ``masked_select``, ``unique``): the host must learn the size;
- ``cross_device``: a copy whose source and target devices differ (e.g. CPU -> meta, which
  on a GPU is a host-to-device copy);
- ``tolist``/``cpu``/``numpy``: the Python-level ways to the host (no aten op on a CPU).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
_DATA_DEPENDENT = {aten.nonzero.default, aten.masked_select.default, aten._unique2.default,
                   aten.unique_consecutive.default, aten.unique_dim.default}
_COPIES = {aten._to_copy.default, aten.copy_.default}
_PY_METHODS = ("tolist", "cpu", "numpy")


def _tensors(args) -> Iterator[torch.Tensor]:
    for a in args:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from _tensors(a)


class _HostReads(TorchDispatchMode):
    def __init__(self, counts: Counter) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is aten._local_scalar_dense.default:
            self.counts["scalar"] += 1
        elif func in _DATA_DEPENDENT:
            self.counts["data_dependent"] += 1
        elif func is aten.index.Tensor and any(
                t is not None and t.dtype == torch.bool for t in _tensors(args[1:])):
            self.counts["data_dependent"] += 1
        elif func in _COPIES and isinstance(out, torch.Tensor):
            if any(t.device != out.device and t.dim() > 0 for t in _tensors(args)):
                self.counts["cross_device"] += 1
        return out


@contextlib.contextmanager
def count_host_reads() -> Iterator[Counter]:
    """A live ``Counter`` of host reads while the block runs (see the module docstring)."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in _PY_METHODS}

    def counting(name):
        def method(self, *args, **kwargs):
            counts[name] += 1
            return originals[name](self, *args, **kwargs)
        return method

    try:
        for name in _PY_METHODS:
            setattr(torch.Tensor, name, counting(name))
        with _HostReads(counts):
            yield counts
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)
