"""The supervisor's pieces that need no running server: restart back-off, listening sockets."""

from __future__ import annotations

import socket

import pytest

from postoffice.config import HostPort
from postoffice.supervisor import BACKOFF_MAX, bind_listener, restart_delay


def test_restart_back_off_grows_while_a_worker_keeps_failing() -> None:
    assert restart_delay(0) == 0.0  # it had run well: at once
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[0] == pytest.approx(0.1)
    assert all(b >= a for a, b in zip(delays, delays[1:])) and delays[3] == pytest.approx(0.8)
    assert max(delays) == BACKOFF_MAX


def test_one_reuseport_socket_per_worker_on_one_port() -> None:
    socks = bind_listener("imap", HostPort("127.0.0.1", 0), 3)
    try:
        ports = {s.getsockname()[1] for s in socks}
        assert len(socks) == 3 and len(ports) == 1
        for s in socks:
            s.listen(8)
        with socket.create_connection(("127.0.0.1", ports.pop()), 2):
            pass
    finally:
        for s in socks:
            s.close()


def test_a_port_another_server_listens_on_is_refused() -> None:
    """SO_REUSEPORT would let us join another process's sockets on the port (same user)."""
    other = bind_listener("imap", HostPort("127.0.0.1", 0), 1)[0]
    other.listen(8)
    try:
        with pytest.raises(OSError):
            bind_listener("imap", HostPort("127.0.0.1", other.getsockname()[1]), 2)
    finally:
        other.close()
