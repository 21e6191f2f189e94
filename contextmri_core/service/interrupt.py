"""SIGTERM and SIGINT as an exception that unwinds cleanly, for batch commands (replay).

Inside ``interruptible()`` the first SIGTERM or SIGINT raises :class:`Interrupted` in the main
thread, so ``finally`` blocks run (staging folders and temporary files are removed) instead
of the process dying mid-write; later signals are ignored while it unwinds. The command
catches it, prints one line and exits ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A SIGTERM/SIGINT arrived (a BaseException: ``except Exception`` must not swallow it)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Raise :class:`Interrupted` on the first SIGTERM/SIGINT (main thread only; elsewhere a
    no-op); the previous handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum: int, _frame: object) -> None:
        if fired:
            return  # already unwinding: let the cleanup finish
        fired.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
