"""Bad input on a real IMAP connection: each gets BAD or NO with a helpful text, never a
traceback, and the session goes on wherever RFC 9051 allows it."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from postoffice.protocols.imap import commands as c
from postoffice.servers.imap import session as session_module
from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    limits = {"idle_timeout": 2, "imap_max_literal": 1000}
    with RunningServer(tmp_path_factory.mktemp("imapbad") / "data", limits=limits) as server:
        yield server


def logged_in(srv: RunningServer, messages: int = 2, select: bool = True) -> Wire:
    address = f"bad{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    for i in range(messages):
        srv.call(srv.store.deliver([(account.id, "INBOX")], b"Subject: %d\r\n\r\nbody\r\n" % i))
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    if select:
        assert wire.cmd(b"s SELECT INBOX")[-1].startswith(b"s OK")
    return wire


def still_alive(wire: Wire) -> None:
    assert wire.cmd(b"zz NOOP")[-1] == b"zz OK NOOP completed"


@pytest.mark.parametrize("line", [
    b"a FETCH 1 (FLAGS UID",           # unbalanced parenthesis
    b"a FETCH 1 FLAGS UID)",
    b'a SELECT "INBOX',                # unbalanced quote
    b"a SELECT IN\xffBOX",            # 8-bit byte in an atom
    b"a SEARCH ((((SEEN)",
    b"a STORE 1 +FLAGS (\\Seen",
    b"a FETCH 1 BODY[1.2.3",
    b"a FETCH x:y FLAGS",
    b"a FROBNICATE",
    b"a UID",
])
def test_syntax_errors_get_bad_and_the_session_goes_on(srv: RunningServer, line: bytes) -> None:
    wire = logged_in(srv)
    response = wire.cmd(line)[-1]
    assert response.startswith(b"a BAD "), response
    assert b"Traceback" not in response and len(response) > len(b"a BAD ")
    still_alive(wire)


def test_untagged_garbage(srv: RunningServer) -> None:
    wire = logged_in(srv, select=False)
    wire.send(b"\r\n(\r\n")
    # An empty line and a line without a valid tag: no tag to answer with, so each gets its own
    # untagged BAD with a text saying what was wrong.
    empty, untagged = wire.line(), wire.line()
    assert empty.lower() == b"* bad empty command line", empty
    assert untagged.startswith(b"* BAD ") and b"tag" in untagged.lower(), untagged
    still_alive(wire)


def test_command_line_over_the_limit(srv: RunningServer) -> None:
    wire = logged_in(srv)
    wire.send(b"a NOOP " + b"x" * 100_000 + b"\r\n")
    response = wire.until(b"a")[-1]
    assert response.startswith(b"a BAD") and b"too long" in response
    still_alive(wire)


def test_synchronizing_literal_over_the_limit_is_refused_before_reading(srv: RunningServer) -> None:
    wire = logged_in(srv)
    wire.send(b"a APPEND INBOX {5000}\r\n")
    response = wire.until(b"a")[-1]
    assert response.startswith(b"a NO [TOOBIG]"), response
    still_alive(wire)


def test_literal_plus_over_the_limit_closes_with_bye(srv: RunningServer) -> None:
    wire = logged_in(srv)
    wire.send(b"a APPEND INBOX {5000+}\r\n" + b"x" * 5000 + b"\r\n")
    lines = wire.until(b"a")
    assert lines[-1].startswith(b"a BAD [TOOBIG]")
    assert wire.line().startswith(b"* BYE")
    assert wire.closed()


def test_literal_never_sent_ends_at_the_idle_timeout(srv: RunningServer) -> None:
    wire = Wire.tls(srv)
    wire.send(b"a LOGIN {5}\r\n")
    assert wire.line().startswith(b"+")
    start = time.monotonic()
    assert wire.line().startswith(b"* BYE")
    assert wire.closed()
    assert time.monotonic() - start < 5


def test_idle_timeout_after_login(srv: RunningServer) -> None:
    wire = logged_in(srv)
    wire.send(b"i IDLE\r\n")
    assert wire.line() == b"+ idling"
    assert wire.line().startswith(b"* BYE")
    assert wire.closed()


def test_fetch_of_sequence_numbers_that_do_not_exist(srv: RunningServer) -> None:
    wire = logged_in(srv)
    response = wire.cmd(b"a FETCH 3:4 FLAGS")[-1]
    assert response.startswith(b"a BAD") and b"does not exist" in response
    assert wire.cmd(b"b STORE 7 +FLAGS (\\Seen)")[-1].startswith(b"b BAD")
    assert wire.cmd(b"c COPY 9 Trash")[-1].startswith(b"c BAD")
    still_alive(wire)


def test_store_on_read_only_mailbox(srv: RunningServer) -> None:
    wire = logged_in(srv, select=False)
    wire.cmd(b"e EXAMINE INBOX")
    response = wire.cmd(b"a STORE 1 +FLAGS (\\Seen)")[-1]
    assert response.startswith(b"a NO") and b"read-only" in response
    assert wire.cmd(b"b EXPUNGE")[-1].startswith(b"b NO")
    assert wire.cmd(b"c MOVE 1 Trash")[-1].startswith(b"c NO")
    wire.cmd(b"d FETCH 1 BODY[]")
    assert b"\\Seen" not in wire.cmd(b"f FETCH 1 FLAGS")[0]  # EXAMINE sets no \Seen
    still_alive(wire)


@pytest.mark.parametrize("line, state", [
    (b"a SELECT INBOX", "before login"),
    (b"a FETCH 1 FLAGS", "before login"),
    (b"a IDLE", "before login"),
])
def test_commands_before_login(srv: RunningServer, line: bytes, state: str) -> None:
    wire = Wire.tls(srv)
    response = wire.cmd(line)[-1]
    assert response.startswith(b"a BAD") and b"after logging in" in response
    still_alive(wire)


def test_commands_in_the_wrong_state_after_login(srv: RunningServer) -> None:
    wire = logged_in(srv, select=False)
    response = wire.cmd(b"a FETCH 1 FLAGS")[-1]
    assert response.startswith(b"a BAD") and b"SELECT" in response
    assert wire.cmd(b"b LOGIN x y")[-1].startswith(b"b BAD")
    assert wire.cmd(b"c AUTHENTICATE PLAIN")[-1].startswith(b"c BAD")
    assert wire.cmd(b"d EXPUNGE")[-1].startswith(b"d BAD")
    still_alive(wire)


def test_qresync_fetch_vanished_without_enable(srv: RunningServer) -> None:
    wire = logged_in(srv)
    assert wire.cmd(b"a UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)")[-1].startswith(b"a BAD")
    still_alive(wire)


def test_deeply_nested_bodystructure(srv: RunningServer) -> None:
    depth = 3000
    parts = [b"Subject: nested\r\nMIME-Version: 1.0\r\n"]
    for i in range(depth):
        parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i))
    parts.append(b"Content-Type: text/plain\r\n\r\ndeep\r\n")
    for i in reversed(range(depth)):
        parts.append(b"--b%d--\r\n" % i)
    hostile = b"".join(parts)
    account = srv.add_account("nested@example.com", PASSWORD)
    srv.call(srv.store.deliver([(account.id, "INBOX")], hostile))
    wire = Wire.tls(srv)
    wire.login("nested@example.com", PASSWORD)
    wire.cmd(b"s SELECT INBOX")
    for item in (b"BODYSTRUCTURE", b"BODY", b"BODY.PEEK[1.1.1.1.1.1.1.1]", b"ENVELOPE", b"BINARY.PEEK[1]"):
        lines = wire.cmd(b"a FETCH 1 " + item)
        assert lines[-1].startswith(b"a OK") or lines[-1].startswith(b"a NO"), lines[-1]
    assert wire.cmd(b"b SEARCH BODY deep")[-1].startswith(b"b OK")
    still_alive(wire)


def test_unexpected_exception_is_serverbug_and_session_continues(srv: RunningServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(s: object, tag: bytes, cmd: object) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setitem(session_module.HANDLERS, c.Namespace, broken)
    wire = logged_in(srv, select=False)
    response = wire.cmd(b"a NAMESPACE")[-1]
    assert response.startswith(b"a NO [SERVERBUG]") and b"boom" not in response
    still_alive(wire)


def test_authenticate_garbage(srv: RunningServer) -> None:
    wire = Wire.tls(srv)
    assert wire.cmd(b"a AUTHENTICATE PLAIN !!!")[-1].startswith(b"a BAD")
    assert wire.cmd(b"b AUTHENTICATE CRAM-MD5")[-1].startswith(b"b NO")
    wire.send(b"c AUTHENTICATE PLAIN\r\n")
    wire.line()
    assert wire.cmd(b"not base64 at all", tag=b"c")[-1].startswith(b"c BAD")
    assert wire.cmd(b"d AUTHENTICATE PLAIN AGZvbwBiYXI=")[-1].startswith(b"d NO [AUTHENTICATIONFAILED]")
    still_alive(wire)
