#!/usr/bin/env python3
"""Container health check: exit 0 if a TCP socket is LISTENING on every given port, else 1.

Reads /proc/net/tcp and /proc/net/tcp6 of the container's network namespace instead of
connecting, so a probe every 30 s leaves no "connection closed" error in Gadgetron's or
``contextmri serve``'s log. ``contextmri serve`` binds only after the model is loaded, so for
it "listening" also means "model warm".

    contextmri-healthcheck 9002          # Gadgetron
    contextmri-healthcheck 18000         # contextmri serve (compose.yaml)

Stdlib only; Linux only.
"""

from __future__ import annotations

import sys
from pathlib import Path

TCP_LISTEN = "0A"
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def listening_ports(tables=TABLES) -> set[int]:
    ports: set[int] = set()
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # e.g. no IPv6 in this namespace
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: contextmri-healthcheck PORT [PORT ...]", file=sys.stderr)
        return 2
    wanted = {int(a) for a in argv}
    missing = sorted(wanted - listening_ports())
    if missing:
        print(f"not listening: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
