"""The stream server's TCP side on a real loopback socket: bind, poll, accept, close."""

import socket

import pytest

from contextmri_core.io.mrd.listener import accept, listen


def test_accept_polls_then_takes_a_real_client_and_stops_once_closed():
    sock = listen("127.0.0.1", 0, backlog=2, poll_s=0.05)
    try:
        host, port = sock.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0
        assert accept(sock) is None  # nobody yet: gives up after the poll interval
        with socket.create_connection((host, port), timeout=2) as client:
            got = accept(sock)
            assert got is not None
            conn, peer = got
            with conn:
                client.sendall(b"ping")
                conn.settimeout(2)
                assert conn.recv(4) == b"ping"
                assert peer[0] == "127.0.0.1"
    finally:
        sock.close()
    with pytest.raises(OSError):
        accept(sock)
