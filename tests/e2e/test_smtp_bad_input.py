"""Bad input over real sockets: each gets its reply code and leaves the store untouched."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp, counts, messages

LIMIT = 20_000
HEAD = b"From: x@outside.example\r\nSubject: test\r\n\r\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("badinput") / "data"
    with RunningServer(data, limits={"max_message_size": LIMIT}) as s:
        s.add_account("bob@example.com", "password1")
        s.add_account("alice@example.com", "password1")
        yield s


def transaction(c: RawSmtp, rcpt: str = "bob@example.com") -> None:
    c.send(f"MAIL FROM:<x@outside.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]


@pytest.mark.parametrize("trick", [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"],
                         ids=["LF.LF", "CR.CR", "CRLF.LF", "LF.CRLF", "CR.CRLF"])
def test_smuggling_end_of_data_tricks(srv: RunningServer, trick: bytes) -> None:
    """SMTP smuggling (2023): a fake end of data followed by a second, forged transaction."""
    before = counts(srv)
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        transaction(c)
        smuggled = (b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"
                    b"From: ceo@example.com\r\nSubject: smuggled\r\n\r\npay now\r\n")
        c.send(HEAD + b"innocent" + trick + smuggled + b".\r\n")
        assert c.reply() == (550, "5.5.2 bare LF/CR not allowed")
        # exactly one reply: nothing after the fake terminator was read as commands
        assert c.cmd("NOOP") == (250, "2.0.0 OK")
        # the session is still usable
        transaction(c)
        assert c.cmd(HEAD + b"legitimate\r\n.")[0] == 250
    assert messages(srv, "alice@example.com") == []
    assert not any(b"smuggled" in m or b"innocent" in m for m in messages(srv, "bob@example.com"))
    assert counts(srv)[:2] == (before[0] + 1, before[1])  # only the legitimate message


@pytest.fixture
def clean_store(srv: RunningServer) -> Iterator[None]:
    before = counts(srv)
    yield
    assert counts(srv) == before, "the store changed"


@pytest.mark.parametrize("body", [HEAD + b"line one\nline two\r\n", HEAD + b"line one\rline two\r\n",
                                  HEAD + b"bare LF at the end\n"], ids=["LF", "CR", "LF-last"])
def test_bare_line_endings_rejected(srv: RunningServer, clean_store: None, body: bytes) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        transaction(c)
        end = b"." if body.endswith(b"\r\n") else b"\r\n."
        assert c.cmd(body + end) == (550, "5.5.2 bare LF/CR not allowed")
        assert c.cmd("NOOP")[0] == 250


def test_commands_pipelined_before_starttls_are_discarded(srv: RunningServer, clean_store: None) -> None:
    """CVE-2011-0411: plaintext injected after STARTTLS must not run inside the TLS session."""
    for port in (srv.port("smtp"), srv.port("submission")):
        with RawSmtp(port) as c:
            c.cmd("EHLO attacker.example")
            c.send(b"STARTTLS\r\nMAIL FROM:<x@outside.example>\r\nRCPT TO:<bob@example.com>\r\n")
            assert c.reply() == (220, "2.0.0 Ready to start TLS")
            c.sock = srv.client_tls().wrap_socket(c.sock, server_hostname="localhost")
            # the injected MAIL never happened: RCPT needs MAIL, EHLO is needed again first
            assert c.cmd("RCPT TO:<bob@example.com>")[0] == 503
            assert c.cmd("MAIL FROM:<x@outside.example>") == (503, "5.5.1 Send HELO/EHLO first")
            assert c.cmd("EHLO attacker.example")[0] == 250
            assert c.cmd("QUIT")[0] == 221


def test_long_command_lines(srv: RunningServer, clean_store: None) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        assert c.cmd(b"NOOP " + b"x" * 1200) == (500, "5.5.2 Line too long")
        assert c.cmd(b"MAIL FROM:<" + b"a" * 3000 + b"@outside.example>") == (500, "5.5.2 Line too long")
        c.send(b"RCPT TO:<" + b"b" * 200_000)  # never ends: discarded without buffering
        assert c.reply() == (500, "5.5.2 Line too long")
        c.send(b">\r\n")
        assert c.cmd("NOOP") == (250, "2.0.0 OK")


def test_message_over_size(srv: RunningServer, clean_store: None) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        assert f"SIZE {LIMIT}" in c.cmd("EHLO mx.outside.example")[1]
        assert c.cmd(f"MAIL FROM:<x@outside.example> SIZE={LIMIT + 1}") == (
            552, "5.3.4 Message size exceeds fixed maximum message size")
        transaction(c)
        big = HEAD + (b"y" * 998 + b"\r\n") * (LIMIT // 1000 + 5)
        assert c.cmd(big + b".")[0:1] == (552,)
        # BDAT too
        c.send(b"MAIL FROM:<x@outside.example>\r\nRCPT TO:<bob@example.com>\r\n"
               + f"BDAT {len(big)} LAST\r\n".encode() + big)
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 552]
        assert c.cmd("NOOP")[0] == 250


def test_garbage_and_nul_bytes(srv: RunningServer, clean_store: None) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        assert c.cmd(b"\x00\x01\x02\xff\xfe")[0] == 500
        assert c.cmd(b"EHLO mx\x00.example")[0] == 500
        c.cmd("EHLO mx.outside.example")
        assert c.cmd(b"MAIL FROM:<a\x00b@outside.example>")[0] == 500
        assert c.cmd(b"MAIL FROM:<\xc3\x28@outside.example>")[0] == 500  # invalid UTF-8
        assert c.cmd(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")[0] == 500  # a TLS hello on plain text
        assert c.cmd("NOOP")[0] == 250
        # keep going and the server hangs up (too many errors)
        codes = [c.cmd(b"\xff garbage")[0] for _ in range(5)]
        assert codes[-1] == 421 and c.closed()


def test_disconnect_mid_data_delivers_nothing(srv: RunningServer, clean_store: None) -> None:
    for cut in (b"", b"partial line", b"complete line\r\n", b"line\r\n.", b"line\r\n.\r"):
        c = RawSmtp(srv.port("smtp"))
        c.cmd("EHLO mx.outside.example")
        transaction(c)
        c.send(HEAD + cut)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed()
        c.close()
    time.sleep(0.2)


def test_reset_mid_data_delivers_nothing(srv: RunningServer, clean_store: None) -> None:
    c = RawSmtp(srv.port("smtp"))
    c.cmd("EHLO mx.outside.example")
    transaction(c)
    c.send(HEAD + b"some text\r\n")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()  # RST
    time.sleep(0.2)


def test_sequence_errors(srv: RunningServer, clean_store: None) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        assert c.cmd("MAIL FROM:<x@outside.example>") == (503, "5.5.1 Send HELO/EHLO first")
        c.cmd("HELO mx.outside.example")
        assert c.cmd("RCPT TO:<bob@example.com>") == (503, "5.5.1 Need MAIL command")
        assert c.cmd("DATA") == (503, "5.5.1 Need MAIL command")
        assert c.cmd("MAIL FROM:<x@outside.example> SIZE=10")[0] == 555  # no ESMTP after HELO
        assert c.cmd("MAIL FROM:<x@outside.example>")[0] == 250
        assert c.cmd("MAIL FROM:<x@outside.example>") == (503, "5.5.1 Sender already specified")
        assert c.cmd("DATA") == (554, "5.5.1 No valid recipients")
        assert c.cmd("RCPT TO:<nobody@example.com>")[0] == 550
        assert c.cmd("QUIT") == (221, "2.0.0 Bye")
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<x@outside.example>")
        assert c.cmd("RCPT TO:bob@example.com")[0] == 501
        assert c.cmd("FOO bar")[0] == 500
        assert c.cmd("TURN")[0] == 502
        assert c.cmd("QUIT") == (221, "2.0.0 Bye")


def test_auth_garbage_on_submission(srv: RunningServer, clean_store: None) -> None:
    with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
        c.cmd("EHLO x.example")
        assert c.cmd("AUTH PLAIN !!!notbase64")[0] == 501
        assert c.cmd("AUTH PLAIN " + base64.b64encode(b"no-nuls-here").decode())[0] == 535
        assert c.cmd("AUTH PLAIN") == (334, "")
        assert c.cmd(b"A" * 13000) == (500, "5.5.6 Authentication Exchange line is too long")  # RFC 4954 §6; ends the exchange
        assert c.cmd("AUTH LOGIN")[0] == 334
        assert c.cmd("%%%")[0] == 501
        assert c.cmd("AUTH PLAIN " + base64.b64encode(b"other@example.com\0alice@example.com\0password1").decode()
                     )[0] == 535  # acting as someone else
        assert c.cmd("MAIL FROM:<alice@example.com>")[0] == 530


def test_timeout_and_connection_limit(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data", limits={"command_timeout": 1, "max_connections_per_ip": 2}) as srv:
        srv.add_account("bob@example.com", "password1")
        port = srv.port("smtp")
        a, b = RawSmtp(port), RawSmtp(port)
        third = RawSmtp(port)
        assert third.greeting == (421, "4.7.0 Too many connections from your address, try again later")
        assert third.closed()
        start = time.monotonic()
        assert a.reply() == (421, "4.4.2 Timeout, closing connection")
        assert a.closed() and time.monotonic() - start < 3
        assert b.closed()  # (b idled as long as a)
        b.close()
        # a client stalling in the middle of DATA times out too, and nothing is stored
        b = connect_when_free(port)
        b.cmd("EHLO mx.outside.example")
        transaction(b)
        b.send(HEAD + b"and then nothing")
        assert b.reply() == (421, "4.4.2 Timeout, closing connection")
        assert messages(srv, "bob@example.com") == []
        for c in (a, b, third):
            c.close()
        # slots are free again
        connect_when_free(port).close()


def connect_when_free(port: int) -> RawSmtp:
    """A new session once the server has released the slots of closed ones."""
    deadline = time.monotonic() + 3
    while True:
        c = RawSmtp(port)
        if c.greeting[0] == 220 or time.monotonic() > deadline:
            assert c.greeting[0] == 220
            return c
        c.close()
        time.sleep(0.05)


def test_tls_handshake_garbage_on_465(srv: RunningServer, clean_store: None) -> None:
    with socket.create_connection(("127.0.0.1", srv.port("submissions")), 5) as s:
        s.sendall(b"EHLO plaintext-on-a-tls-port\r\n")
        s.settimeout(5)
        try:
            data = s.recv(100)
        except (ConnectionError, TimeoutError):
            data = b""
        assert not data.startswith(b"2")
    # the listener is fine afterwards
    with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
        assert c.greeting[0] == 220
