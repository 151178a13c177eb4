"""POP3 wire conformance (RFC 1939, 2449, 2595, 5034, 3206), checked on raw sockets against
110 (STLS) and 995 (implicit TLS)."""

from __future__ import annotations

import base64
import itertools
import re
import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.support.server import RunningServer, make_config

PASSWORD = "password1"
_numbers = itertools.count(1)
M1 = b"From: a@example.org\r\nSubject: one\r\n\r\nbody 1\r\n.dot line\r\nlast\r\n"
M2 = b"From: b@example.org\r\nSubject: two\r\n\r\nl1\r\nl2\r\nl3\r\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("pop3-conformance") / "data") as server:
        yield server


def new_account(srv: RunningServer) -> str:
    address = f"conf{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    for raw in (M1, M2):
        srv.call(srv.store.deliver([(account.id, "INBOX")], raw))
    return address


class Raw:
    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), 10)
        self.sock = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        data = self.file.readline()
        assert data.endswith(b"\r\n"), data
        return data[:-2]

    def cmd(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.line()

    def multi(self, line: str) -> tuple[bytes, list[bytes]]:
        first = self.cmd(line)
        assert first.startswith(b"+OK"), first
        body = []
        while (item := self.line()) != b".":
            body.append(item)
        return first, body

    def stls(self, context: ssl.SSLContext) -> None:
        assert self.cmd("STLS").startswith(b"+OK")
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.sock.close()


def login(srv: RunningServer, address: str) -> Raw:
    c = Raw(srv.port("pop3s"), srv.client_tls())
    assert c.cmd(f"USER {address}").startswith(b"+OK")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    return c


def test_greeting_capa_and_stls(srv: RunningServer) -> None:
    c = Raw(srv.port("pop3"))
    assert c.greeting.startswith(b"+OK")
    first, caps = c.multi("CAPA")  # RFC 2449 §5
    assert {b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"STLS"} <= set(caps)
    assert b"USER" not in caps and not any(cap.startswith(b"SASL") for cap in caps)  # RFC 2595 §2.2
    assert c.cmd("USER someone@example.com").startswith(b"-ERR [AUTH] ")
    c.stls(srv.client_tls())
    _, caps = c.multi("CAPA")
    assert b"STLS" not in caps and b"USER" in caps and b"SASL PLAIN LOGIN" in caps  # RFC 2595 §4
    assert c.cmd("STLS").startswith(b"-ERR")
    assert c.cmd("QUIT").startswith(b"+OK")  # AUTHORIZATION: sign off, nothing else
    c.close()


def test_transaction_commands(srv: RunningServer) -> None:
    address = new_account(srv)
    c = login(srv, address)
    size1, size2 = len(M1), len(M2)
    assert c.cmd("STAT") == b"+OK 2 %d" % (size1 + size2)  # RFC 1939 §5: "+OK nn mm"
    first, listing = c.multi("LIST")
    assert first.startswith(b"+OK") and listing == [b"1 %d" % size1, b"2 %d" % size2]
    assert c.cmd("LIST 2") == b"+OK 2 %d" % size2
    assert c.cmd("LIST 3").startswith(b"-ERR")
    _, uidls = c.multi("UIDL")  # RFC 1939 §7: "n uid", uid 1-70 octets of 0x21-0x7E
    for n, item in enumerate(uidls, 1):
        assert re.fullmatch(rb"%d [\x21-\x7e]{1,70}" % n, item)
    assert c.cmd("UIDL 1") == b"+OK " + uidls[0]
    first, body = c.multi("RETR 1")
    assert first == b"+OK %d octets" % size1
    assert body == [b"From: a@example.org", b"Subject: one", b"", b"body 1", b"..dot line", b"last"]
    _, top = c.multi("TOP 2 1")
    assert top == [b"From: b@example.org", b"Subject: two", b"", b"l1"]
    _, top = c.multi("TOP 2 0")
    assert top == [b"From: b@example.org", b"Subject: two", b""]
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 1").startswith(b"-ERR")
    assert c.cmd("RETR 1").startswith(b"-ERR")
    assert c.cmd("STAT") == b"+OK 1 %d" % size2
    _, listing = c.multi("LIST")
    assert listing == [b"2 %d" % size2]
    assert c.cmd("RSET").startswith(b"+OK")
    assert c.cmd("STAT") == b"+OK 2 %d" % (size1 + size2)
    assert c.cmd("NOOP") == b"+OK"
    assert c.cmd("FOO").startswith(b"-ERR")
    assert c.cmd("USER x").startswith(b"-ERR")  # not valid in TRANSACTION
    _, caps = c.multi("CAPA")  # RFC 2449 §5: AUTHORIZATION capabilities in both states
    assert b"USER" in caps
    assert c.cmd("DELE 2").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")  # RFC 1939 §6: UPDATE, then sign-off
    c.close()
    c = login(srv, address)
    assert c.cmd("STAT") == b"+OK 1 %d" % size1
    c.cmd("QUIT")
    c.close()


def test_in_use_and_auth_codes(srv: RunningServer) -> None:
    address = new_account(srv)
    c = Raw(srv.port("pop3s"), srv.client_tls())
    c.cmd(f"USER {address}")
    assert c.cmd("PASS wrong").startswith(b"-ERR [AUTH] ")  # RFC 3206
    c.close()
    holder = login(srv, address)
    c = Raw(srv.port("pop3s"), srv.client_tls())
    c.cmd(f"USER {address}")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"-ERR [IN-USE] ")  # RFC 2449 §8.1.1
    c.close()
    holder.cmd("QUIT")
    holder.close()


def test_sasl_plain_continuation_and_initial_response(srv: RunningServer) -> None:
    address = new_account(srv)
    c = Raw(srv.port("pop3s"), srv.client_tls())
    assert c.cmd("AUTH PLAIN") == b"+ "  # RFC 5034 §4: "+" SP, empty challenge
    assert c.cmd("*").startswith(b"-ERR")  # cancelled
    assert c.cmd("AUTH PLAIN =").startswith(b"-ERR")  # "=" is an empty initial response
    assert c.cmd("AUTH LOGIN") == b"+ " + base64.b64encode(b"Username:")
    assert c.cmd(base64.b64encode(address.encode()).decode()) == b"+ " + base64.b64encode(b"Password:")
    assert c.cmd(base64.b64encode(PASSWORD.encode()).decode()).startswith(b"+OK")
    assert c.cmd("STAT").startswith(b"+OK 2 ")
    c.cmd("QUIT")
    c.close()
    c = Raw(srv.port("pop3s"), srv.client_tls())
    ir = base64.b64encode(f"\0{address}\0{PASSWORD}".encode()).decode()
    assert c.cmd(f"AUTH PLAIN {ir}").startswith(b"+OK")
    c.cmd("QUIT")
    c.close()


def test_command_line_limit(srv: RunningServer) -> None:
    c = Raw(srv.port("pop3s"), srv.client_tls())
    assert c.cmd("NOOP " + "x" * 300).startswith(b"-ERR")  # RFC 2449 §4: 255 octets
    assert c.cmd("CAPA").startswith(b"+OK")  # the session goes on
    c.close()


def test_autologout_default_is_at_least_ten_minutes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # RFC 1939 §3: an inactivity autologout timer MUST be at least 10 minutes.
    assert make_config(tmp_path).limits.pop3_timeout >= 600
