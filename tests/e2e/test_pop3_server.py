"""POP3 end to end with the stdlib poplib: every command on 995 (TLS) and 110 (STLS), SASL,
the plaintext rules, response codes and the bad input a real server meets."""

from __future__ import annotations

import base64
import itertools
import poplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import BACKENDS, backend_overrides
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)

MESSAGES = [
    b"From: a@example.org\r\nSubject: one\r\n\r\nfirst body\r\n",
    b"From: b@example.org\r\nSubject: two\r\n\r\nline 1\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n",
    b"From: c@example.org\r\nSubject: three\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(50)),
]


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("pop3") / "data", limits={"pop3_timeout": 5},
                       **backend_overrides(request.param, request)) as server:
        yield server


def new_account(srv: RunningServer, messages: list[bytes] = MESSAGES) -> tuple[str, int]:
    address = f"user{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    for raw in messages:
        srv.call(srv.store.deliver([(account.id, "INBOX")], raw))
    return address, account.id


def pop3s(srv: RunningServer) -> poplib.POP3_SSL:
    return poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.client_tls(), timeout=10)


def pop3(srv: RunningServer) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)


def login(client: poplib.POP3, address: str) -> poplib.POP3:
    client.user(address)
    client.pass_(PASSWORD)
    return client


def err(call, *args: object) -> bytes:
    """The -ERR line a command got (poplib raises error_proto with it)."""
    with pytest.raises(poplib.error_proto) as info:
        call(*args)
    line = info.value.args[0]
    assert line.startswith(b"-ERR"), line
    return line


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def inbox_uids(srv: RunningServer, account_id: int) -> list[int]:
    inbox = srv.call(srv.store.get_mailbox(account_id, "INBOX"))
    return [m.uid for m in srv.call(srv.store.list_messages(inbox.id))]


# -- capabilities and ports --------------------------------------------------------------------


def test_capa_on_995(srv: RunningServer) -> None:
    client = pop3s(srv)
    assert client.getwelcome().startswith(b"+OK")
    caps = client.capa()
    for name in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE",
                 "SASL", "IMPLEMENTATION"):
        assert name in caps, name
    assert "PLAIN" in caps["SASL"]
    assert "STLS" not in caps  # already TLS
    client.quit()


def test_capa_on_110_hides_plaintext_login_until_stls(srv: RunningServer) -> None:
    client = pop3(srv)
    caps = client.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    client.stls(srv.client_tls())
    caps = client.capa()
    assert "STLS" not in caps and "USER" in caps and "PLAIN" in caps["SASL"]
    client.quit()


def test_every_command_on_995(srv: RunningServer) -> None:
    address, account_id = new_account(srv)
    sizes = [len(m) for m in MESSAGES]
    client = login(pop3s(srv), address)
    assert client.stat() == (3, sum(sizes))
    resp, lines, _ = client.list()
    assert lines == [f"{n} {s}".encode() for n, s in enumerate(sizes, 1)]
    assert client.list(2) == f"+OK 2 {sizes[1]}".encode()
    resp, uidls, _ = client.uidl()
    inbox = srv.call(srv.store.get_mailbox(account_id, "INBOX"))
    assert uidls == [f"{n} {inbox.uidvalidity}.{uid}".encode()
                     for n, uid in enumerate(inbox_uids(srv, account_id), 1)]
    assert client.uidl(3) == b"+OK " + uidls[2]
    for n, raw in enumerate(MESSAGES, 1):  # RETR un-dot-stuffs to the exact original bytes
        resp, lines, octets = client.retr(n)
        assert resp == f"+OK {len(raw)} octets".encode()
        assert b"\r\n".join(lines) + b"\r\n" == raw
    resp, lines, _ = client.top(3, 0)
    assert lines == [b"From: c@example.org", b"Subject: three", b""]
    resp, lines, _ = client.top(3, 2)
    assert lines[-2:] == [b"line 0", b"line 1"]
    assert client.noop() == b"+OK"
    assert client.dele(1).startswith(b"+OK")
    assert client.stat() == (2, sum(sizes[1:]))
    assert b"already deleted" in err(client.retr, 1)
    assert b"already deleted" in err(client.dele, 1)
    assert client.rset().startswith(b"+OK")
    assert client.stat() == (3, sum(sizes))
    client.dele(2)
    assert client.quit().startswith(b"+OK")
    assert len(inbox_uids(srv, account_id)) == 2


def test_every_command_on_110_after_stls(srv: RunningServer) -> None:
    address, account_id = new_account(srv)
    client = pop3(srv)
    assert b"[AUTH]" in err(client.user, address)
    assert b"[AUTH]" in err(client._shortcmd, "AUTH PLAIN " + b64(f"\0{address}\0{PASSWORD}".encode()))
    client.stls(srv.client_tls())
    assert b"already using TLS" in err(client._shortcmd, "STLS")
    login(client, address)
    assert client.stat()[0] == 3
    assert len(client.list()[1]) == 3
    assert len(client.uidl()[1]) == 3
    assert b"\r\n".join(client.retr(2)[1]) + b"\r\n" == MESSAGES[1]
    assert client.top(1, 0)[1][-1] == b""
    client.noop()
    client.dele(3)
    client.rset()
    client.dele(1)
    client.quit()
    assert len(inbox_uids(srv, account_id)) == 2


def test_uidl_is_stable_across_sessions_and_ports(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    client = login(pop3s(srv), address)
    first = client.uidl()[1]
    client.dele(1)
    client.quit()
    client = pop3(srv)
    client.stls(srv.client_tls())
    login(client, address)
    second = client.uidl()[1]
    client.quit()
    assert [line.split()[1] for line in second] == [line.split()[1] for line in first[1:]]


# -- authentication ----------------------------------------------------------------------------


def test_auth_plain_initial_response(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    client = pop3s(srv)
    resp = client._shortcmd("AUTH PLAIN " + b64(f"\0{address}\0{PASSWORD}".encode()))
    assert resp.startswith(b"+OK") and b"3 messages" in resp
    assert client.stat()[0] == 3
    client.quit()


def test_auth_plain_with_continuation_and_cancel(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    client = pop3s(srv)
    client._putcmd("AUTH PLAIN")
    assert client._getline()[0].startswith(b"+")
    client._putcmd("*")
    line = client._getline()[0]
    assert line.startswith(b"-ERR") and b"cancelled" in line
    client._putcmd("AUTH PLAIN")
    assert client._getline()[0].startswith(b"+")
    client._putcmd(b64(f"\0{address}\0{PASSWORD}".encode()))
    assert client._getline()[0].startswith(b"+OK")
    client.quit()


def test_bad_credentials_get_auth_code_and_session_goes_on(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    client = pop3s(srv)
    client.user(address)
    assert err(client.pass_, "wrong-password").startswith(b"-ERR [AUTH]")
    client.user("nobody@example.com")
    assert err(client.pass_, PASSWORD).startswith(b"-ERR [AUTH]")
    assert err(client._shortcmd, "AUTH PLAIN " + b64(f"\0{address}\0nope".encode())).startswith(b"-ERR [AUTH]")
    login(client, address)  # still usable
    client.quit()


def test_pass_without_user(srv: RunningServer) -> None:
    client = pop3s(srv)
    assert b"USER first" in err(client.pass_, PASSWORD)
    client.quit()


def test_apop_is_refused(srv: RunningServer) -> None:
    client = pop3s(srv)
    line = err(client._shortcmd, "APOP someone@example.com 0123456789abcdef0123456789abcdef")
    assert line.startswith(b"-ERR [AUTH]") and b"APOP" in line
    client.quit()


def test_plaintext_login_allowed_by_config(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data", security={"allow_plaintext_auth": True}) as server:
        address, _ = new_account(server)
        client = pop3(server)
        assert "USER" in client.capa()
        login(client, address)
        assert client.stat()[0] == 3
        client.quit()


def test_plaintext_login_allowed_for_loopback(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data", security={"allow_plaintext_auth_loopback": True}) as server:
        address, _ = new_account(server)
        client = pop3(server)
        resp = client._shortcmd("AUTH PLAIN " + b64(f"\0{address}\0{PASSWORD}".encode()))
        assert resp.startswith(b"+OK")
        client.quit()


# -- bad input -----------------------------------------------------------------------------------


def test_unknown_commands(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    client = pop3s(srv)
    assert b"unknown command" in err(client._shortcmd, "FROB")
    login(client, address)
    assert b"unknown command" in err(client._shortcmd, "XYZZY 1 2 3")
    assert client.noop() == b"+OK"
    client.quit()


def test_arguments_out_of_range(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    client = login(pop3s(srv), address)
    assert b"start at 1" in err(client.retr, 0)
    assert b"no such message" in err(client.retr, 99999)
    assert b"no such message" in err(client._shortcmd, "RETR 99999999999999999999")
    assert b"non-negative" in err(client._shortcmd, "TOP 1 -1")
    assert b"message number" in err(client._shortcmd, "DELE x")
    assert b"no such message" in err(client.list, 4)
    assert b"no such message" in err(client.uidl, 4)
    assert b"takes no arguments" in err(client._shortcmd, "STAT 1")
    assert client.stat()[0] == 3  # none of it changed anything
    client.quit()


def test_commands_in_the_wrong_state(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    client = pop3s(srv)
    for command in ("STAT", "LIST", "UIDL", "RETR 1", "TOP 1 0", "DELE 1", "NOOP", "RSET"):
        assert b"only valid after logging in" in err(client._shortcmd, command), command
    login(client, address)
    assert b"not valid after logging in" in err(client.user, address)
    assert b"not valid after logging in" in err(client.pass_, PASSWORD)
    assert b"not valid after logging in" in err(client._shortcmd, "STLS")
    assert b"not valid after logging in" in err(client._shortcmd, "AUTH PLAIN")
    assert client.stat()[0] == 3
    client.quit()


def test_over_long_line(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    client = login(pop3s(srv), address)
    assert b"too long" in err(client._shortcmd, "NOOP " + "x" * 5000)
    assert b"too long" in err(client._shortcmd, "USER " + "x" * 300)
    assert client.noop() == b"+OK"  # the session goes on
    client.quit()


def test_pipelined_commands_before_stls_are_discarded(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    raw = socket.create_connection(("127.0.0.1", srv.port("pop3")), timeout=10)
    reader = raw.makefile("rb")
    assert reader.readline().startswith(b"+OK")
    # Everything after STLS in the same packet is plaintext injected before the handshake.
    raw.sendall(b"STLS\r\nUSER " + address.encode() + b"\r\nCAPA\r\n")
    assert reader.readline().startswith(b"+OK")
    tls = srv.client_tls().wrap_socket(raw, server_hostname="127.0.0.1")
    tls_reader = tls.makefile("rb")
    tls.sendall(b"PASS " + PASSWORD.encode() + b"\r\n")
    assert tls_reader.readline().startswith(b"-ERR send USER first")  # the USER was dropped
    tls.sendall(b"NOOP\r\n")  # nothing of the injected CAPA is waiting either
    assert tls_reader.readline().startswith(b"-ERR NOOP is only valid after logging in")
    tls.sendall(b"QUIT\r\n")
    assert tls_reader.readline().startswith(b"+OK")
    tls.close()


def test_pipelining_after_login(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    tls = srv.client_tls().wrap_socket(socket.create_connection(("127.0.0.1", srv.port("pop3s")), timeout=10),
                                       server_hostname="127.0.0.1")
    reader = tls.makefile("rb")
    reader.readline()
    tls.sendall(f"USER {address}\r\nPASS {PASSWORD}\r\nSTAT\r\nRETR 1\r\nNOOP\r\nQUIT\r\n".encode())
    lines = []
    while True:
        line = reader.readline()
        if not line:
            break
        lines.append(line)
    assert lines[0].startswith(b"+OK") and lines[1].startswith(b"+OK") and lines[2].startswith(b"+OK 3 ")
    body = b"".join(lines[4:4 + MESSAGES[0].count(b"\n")])
    assert body == MESSAGES[0] and lines[4 + MESSAGES[0].count(b"\n")] == b".\r\n"
    assert lines[-2] == b"+OK\r\n" and lines[-1].startswith(b"+OK")
    tls.close()


def test_quit_in_authorization_state(srv: RunningServer) -> None:
    client = pop3s(srv)
    assert client.quit().startswith(b"+OK")


def test_implicit_tls_port_refuses_plaintext(srv: RunningServer) -> None:
    raw = socket.create_connection(("127.0.0.1", srv.port("pop3s")), timeout=10)
    raw.sendall(b"USER someone\r\n")
    raw.settimeout(10)
    try:
        data = raw.recv(100)
    except (ConnectionError, TimeoutError, ssl.SSLError):
        data = b""
    assert not data.startswith(b"+OK")
    raw.close()


def test_inactivity_timeout_closes_without_deleting(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data", limits={"pop3_timeout": 1}) as server:
        address, account_id = new_account(server)
        client = login(pop3s(server), address)
        client.dele(1)
        time.sleep(1.6)
        line = client.file.readline()
        assert line.startswith(b"-ERR") and b"idle" in line
        assert client.file.readline() == b""  # closed
        assert len(inbox_uids(server, account_id)) == 3
        login(pop3s(server), address).quit()  # the lock went with it
