"""The stream server's TCP side: a listening socket and an accept that polls, so the server
thread can notice a stop request between connections."""

from __future__ import annotations

import socket
from typing import Optional, Tuple

#: An accepted connection (the server only calls ``sendall``, ``recv`` and ``close`` on it).
Connection = socket.socket


def listen(host: str, port: int, backlog: int, poll_s: float = 0.5) -> socket.socket:
    """A bound, listening TCP socket (IPv6 when ``host`` has a ``:``; ``port=0`` picks one)
    whose ``accept`` gives up after ``poll_s`` seconds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.settimeout(poll_s)
    return sock


def accept(sock: socket.socket) -> Optional[Tuple[Connection, tuple]]:
    """``(connection, peer)``, or None when nobody came within the poll interval; ``OSError``
    once the listening socket is closed."""
    try:
        return sock.accept()
    except socket.timeout:
        return None
