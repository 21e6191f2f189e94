"""Work-arounds for gadgetron-python 1.4.1 (DESIGN.md §7), applied to its ``Connection``.

* an unknown message id ends its iteration silently (results truncated without a word):
  :func:`harden` makes it a :class:`~contextmri_core.io.mrd.stream.ProtocolError`;
* its writers call ``np.array(..., copy=False)`` (fails on numpy 2 when a conversion is needed):
  we write our own frames (``stream.frame_*``) straight to the socket;
* an exception in a gadget reaches Gadgetron as a plain CLOSE: the gadgets send ERROR first.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

from contextmri_core.io.mrd.stream import NAMES, ProtocolError

log = logging.getLogger(__name__)


class _StrictReaders(dict):
    """A reader table whose ``get`` of an unknown id returns a reader that raises."""

    def get(self, mid: Any, default: Any = None) -> Any:  # noqa: D401 - dict API
        if mid in self:
            return self[mid]

        def unknown(_source: Any) -> Any:
            raise ProtocolError(f"unknown message id {mid} on the Gadgetron connection "
                                f"({NAMES.get(mid, 'not an ISMRMRD message')})")
        return unknown


def harden(connection: Any) -> Callable[[bytes], None]:
    """Make unknown ids an error on ``connection``; returns ``send(frame_bytes)``."""
    connection.readers = _StrictReaders(connection.readers)
    return connection.socket.write


def items(connection: Any) -> Iterator[Any]:
    """The items of ``connection`` until CLOSE (errors propagate, unlike its ``__iter__``
    which only swallows the ``StopIteration`` that CLOSE raises)."""
    yield from connection
