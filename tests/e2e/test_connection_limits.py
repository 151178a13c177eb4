"""Connection limits (issue 10): sane for a shared NAT address, per user and address like
Dovecot's mail_max_userip_connections, every refusal logged with the limit that caused it."""

from __future__ import annotations

import imaplib
import logging
import socket
from pathlib import Path

import pytest

from postoffice.config import Limits
from tests.support.server import RunningServer

USERS = [f"user{n}@example.com" for n in range(10)]


def greeting(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock, sock.makefile("rb").readline()


def test_an_office_behind_one_address_is_not_cut_off(tmp_path: Path) -> None:
    # Ten people behind one NAT address, each with a desktop client keeping 5 IMAP connections
    # and a phone keeping one: 60 connections from 127.0.0.1 with the default limits.
    assert Limits().max_connections_per_ip >= 100
    with RunningServer(tmp_path / "data", security={"allow_plaintext_auth": True}) as srv:
        for user in USERS:
            srv.add_account(user, "password1")
        clients = []
        try:
            for user in USERS:
                for _ in range(6):
                    client = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
                    client.login(user, "password1")
                    clients.append(client)
            assert len(clients) == 60 and all(c.noop()[0] == "OK" for c in clients)
        finally:
            for client in clients:
                client.logout()


def test_per_user_and_address_limit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with RunningServer(tmp_path / "data", security={"allow_plaintext_auth": True}) as srv:
        srv.add_account("alice@example.com", "password1")
        srv.add_account("bob@example.com", "password1")
        limit = srv.config.limits.max_connections_per_user_ip
        assert limit == 10  # Dovecot's mail_max_userip_connections
        sessions = []
        for _ in range(limit):
            client = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
            client.login("alice@example.com", "password1")
            sessions.append(client)
        one_more = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
        with pytest.raises(imaplib.IMAP4.error) as refused:
            one_more.login("alice@example.com", "password1")
        assert str(refused.value) == ("b'[LIMIT] Too many IMAP connections for alice@example.com from your address "
                                      "(the limit is 10); close some and try again'")
        assert ("IMAP login of alice@example.com from 127.0.0.1 refused: limits.max_connections_per_user_ip = 10 "
                "reached") in caplog.text
        # Another user behind the same address is not affected.
        bob = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
        bob.login("bob@example.com", "password1")
        bob.logout()
        # Once one of alice's sessions ends, the same connection may log in.
        sessions.pop().logout()
        assert one_more.login("alice@example.com", "password1")[0] == "OK"
        for client in [*sessions, one_more]:
            client.logout()


def test_per_address_and_total_refusals_are_logged_with_their_limit(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with RunningServer(tmp_path / "data", limits={"max_connections_per_ip": 2, "max_connections": 1000}) as srv:
        open_ = [greeting(srv.port("imap")) for _ in range(2)]
        assert all(line.startswith(b"* OK") for _, line in open_)
        sock, line = greeting(srv.port("imap"))
        assert line == b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
        assert "imap connection from 127.0.0.1 refused: limits.max_connections_per_ip = 2 reached" in caplog.text
        for s, _ in [*open_, (sock, b"")]:
            s.close()
    with RunningServer(tmp_path / "data2", limits={"max_connections_per_ip": 100, "max_connections": 2}) as srv:
        open_ = [greeting(srv.port("pop3")) for _ in range(2)]
        sock, line = greeting(srv.port("smtp"))
        assert line == b"421 4.7.0 Too many connections to this server, try again later\r\n"
        assert "smtp connection from 127.0.0.1 refused: limits.max_connections = 2 reached" in caplog.text
        for s, _ in [*open_, (sock, b"")]:
            s.close()
