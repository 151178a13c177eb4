"""Adversarial IMAP probes on a real server (143 with STARTTLS, 993): every hostile input gets
BAD / NO / BYE as RFC 9051 says, nothing hangs, one client cannot stall the others, and the
server logs no traceback (each test fails on a logged ERROR)."""

from __future__ import annotations

import base64
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
MAX_LITERAL = 100_000
IDLE_TIMEOUT = 2  # pre-login: 2 s per read, 6 s for the whole pre-login phase
_numbers = itertools.count(1)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def take(self) -> list[str]:
        with self._lock2:
            out = [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in self.records]
            self.records.clear()
        return out


_errors = _Errors()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    limits = {"idle_timeout": IDLE_TIMEOUT, "imap_max_literal": MAX_LITERAL, "max_connections_per_ip": 30}
    root = logging.getLogger()
    root.addHandler(_errors)
    try:
        with RunningServer(tmp_path_factory.mktemp("imapadv") / "data", limits=limits) as server:
            yield server
    finally:
        root.removeHandler(_errors)


@pytest.fixture(autouse=True)
def no_logged_errors(srv: RunningServer) -> Iterator[None]:
    _errors.take()
    yield
    time.sleep(0.05)  # let the server thread finish logging a just-closed connection
    assert _errors.take() == []


def account(srv: RunningServer, messages: int = 3) -> str:
    address = f"adv{next(_numbers)}@example.com"
    acct = srv.add_account(address, PASSWORD)
    for i in range(messages):
        srv.call(srv.store.deliver([(acct.id, "INBOX")], b"Subject: %d\r\n\r\nbody\r\n" % i))
    return address


def logged_in(srv: RunningServer, messages: int = 3, select: bool = True) -> Wire:
    wire = Wire.tls(srv)
    wire.login(account(srv, messages), PASSWORD)
    if select:
        assert wire.cmd(b"s SELECT INBOX")[-1].startswith(b"s OK")
    return wire


def still_alive(wire: Wire) -> None:
    assert wire.cmd(b"zz NOOP")[-1] == b"zz OK NOOP completed"


def messages_in(wire: Wire, mailbox: bytes = b"INBOX") -> int:
    lines = wire.cmd(b"st STATUS " + mailbox + b" (MESSAGES)")
    assert lines[-1].startswith(b"st OK"), lines
    return int(lines[0].rsplit(b" ", 1)[1].rstrip(b")"))


# -- LIST patterns: no catastrophic backtracking ----------------------------------------------

@pytest.mark.parametrize("pattern", [
    b"*" * 5000 + b"x",
    b"%" * 5000 + b"x",
    b"*a" * 3000,
    b"%a*" * 2000 + b"b",
])
def test_list_pattern_with_thousands_of_wildcards_is_fast(srv: RunningServer, pattern: bytes) -> None:
    wire = logged_in(srv, select=False)
    wire.cmd(b"c CREATE " + b"a" * 200)
    wire.cmd(b"c CREATE " + b"a/" * 30 + b"a")
    other = logged_in(srv, select=False)
    start = time.monotonic()
    wire.send(b'a LIST "" "' + pattern + b'"\r\n')
    still_alive(other)  # the event loop is not blocked
    lines = wire.until(b"a")
    assert lines[-1] == b"a OK LIST completed"
    assert time.monotonic() - start < 2
    lsub = wire.cmd(b'b LSUB "" "' + pattern + b'"')
    assert lsub[-1] == b"b OK LSUB completed"


def test_list_wildcards_still_match_correctly(srv: RunningServer) -> None:
    wire = logged_in(srv, select=False)
    for name in (b"x", b"x/y", b"x/y/z", b"xa"):
        assert wire.cmd(b"c CREATE " + name)[-1].startswith(b"c OK")

    def names(pattern: bytes) -> set[bytes]:
        lines = wire.cmd(b'l LIST "" ' + pattern)
        assert lines[-1].startswith(b"l OK")
        return {line.rsplit(b" ", 1)[1].strip(b'"') for line in lines[:-1]}

    assert names(b'"x%"') == {b"x", b"xa"}
    assert names(b'"x/%"') == {b"x/y"}
    assert names(b'"x/*"') == {b"x/y", b"x/y/z"}
    assert names(b'"x**%*y"') == {b"x/y"}
    assert names(b'"%/%/%"') == {b"x/y/z"}
    assert names(b'"inbox"') == {b"INBOX"}


# -- states and LOGIN / AUTHENTICATE -------------------------------------------------------------

def test_commands_in_every_state(srv: RunningServer) -> None:
    for line in (b"a SELECT INBOX", b"a FETCH 1 FLAGS", b"a IDLE", b"a ENABLE IMAP4rev2", b"a LIST \"\" *"):
        wire = Wire.tls(srv)
        assert wire.cmd(line)[-1].startswith(b"a BAD")
        assert wire.cmd(b"b ID NIL")[-1] == b"b OK ID completed"
        lines = wire.cmd(b"c LOGOUT")
        assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"c OK")
        assert wire.closed()


# Issue #12, Dovecot's rule: protocol confusion (an HTTP client on 143) and scanners are cut off.
@pytest.mark.parametrize("invalid", [
    [b"GET / HTTP/1.1", b"Host: mail.test", b""],  # unparsable, untagged BAD each
    [b"a SELECT INBOX", b"b FETCH 1 FLAGS", b"c EXPUNGE"],  # not allowed before login
    [b"a FROB", b"b NOOP", b"c FROB", b"d FROB"],  # the third invalid one, even with a valid one between
])
def test_three_invalid_commands_before_login_get_bye(srv: RunningServer, invalid: list[bytes]) -> None:
    wire = Wire.tls(srv)
    wire.send(b"".join(line + b"\r\n" for line in invalid))
    assert wire.closed()
    lines = [line for line in wire.buf.split(b"\r\n") if line]
    assert sum(1 for line in lines if b" BAD " in line) == 3, lines
    assert lines[-1].startswith(b"* BYE") and b"invalid commands" in lines[-1], lines


def test_twenty_invalid_commands_in_a_row_after_login_get_bye(srv: RunningServer) -> None:
    wire = logged_in(srv, select=False)
    for i in range(19):
        assert wire.cmd(b"x%d FROB" % i)[-1].startswith(b"x%d BAD" % i)
    assert wire.cmd(b"n NOOP")[-1].startswith(b"n OK")  # a valid command ends the run
    for i in range(19):
        assert wire.cmd(b"y%d EXPUNGE" % i)[-1].startswith(b"y%d BAD" % i)  # no mailbox selected
    wire.send(b"z1 FROB\r\n")
    lines = wire.until(b"z1")
    lines += [wire.line()]
    assert lines[0].startswith(b"z1 BAD") and lines[1] == b"* BYE Too many invalid commands", lines
    assert wire.closed()


def test_a_big_literal_before_login_gets_bye_not_a_continuation(srv: RunningServer) -> None:
    wire = Wire.tls(srv)
    wire.send(b"a LOGIN {8193}\r\n")
    first, second = wire.line(), wire.line()
    assert first.startswith(b"a BAD [TOOBIG]") and second.startswith(b"* BYE"), (first, second)
    assert wire.closed()
    # literals adding up past the limit in one command, and a LITERAL+ one, are treated alike
    wire = Wire.tls(srv)
    wire.send(b"a ID (\"x\" {5000+}\r\n" + b"v" * 5000 + b" \"y\" {5000+}\r\n")
    first = wire.line()
    assert first.startswith(b"a BAD [TOOBIG]") and wire.line().startswith(b"* BYE"), first
    assert wire.closed()
    # a literal that fits is still fine: a password sent as one
    address = account(srv, 0).encode()
    wire = Wire.tls(srv)
    wire.send(b"a LOGIN " + address + b" {9}\r\n")
    assert wire.line().startswith(b"+")
    wire.send(PASSWORD.encode() + b"\r\n")
    assert wire.until(b"a")[-1].startswith(b"a OK")


def test_the_literals_of_one_command_are_bounded_together(srv: RunningServer) -> None:
    """10,000 one-kilobyte literals in one SEARCH were accepted (10 MB of command): the
    literals of a command other than APPEND count together against one limit."""
    wire = logged_in(srv)
    wire.send(b"a SEARCH" + b"".join(b" TEXT {1024+}\r\n" + b"q" * 1024 for _ in range(300)) + b"\r\n")
    lines = wire.until(b"a")
    assert lines[-1].startswith(b"a BAD [TOOBIG]"), lines[-1]
    assert wire.line().startswith(b"* BYE")
    # a few literals are fine
    wire = logged_in(srv)
    wire.send(b"b SEARCH TEXT {4+}\r\nbody TEXT {4+}\r\nbody\r\n")
    assert wire.until(b"b")[-1].startswith(b"b OK")


@pytest.mark.parametrize("user, pw, expected", [
    (b'""', b'""', b"NO [AUTHENTICATIONFAILED]"),
    (b'"a\x00b"', b"x", b"BAD"),
    (b'"\xff\xfe"', b"x", b"BAD"),
    (b"x" * 60_000, b"y", b"NO [AUTHENTICATIONFAILED]"),
])
def test_login_with_hostile_credentials(srv: RunningServer, user: bytes, pw: bytes, expected: bytes) -> None:
    wire = Wire.tls(srv)
    assert wire.cmd(b"a LOGIN " + user + b" " + pw)[-1].startswith(b"a " + expected)
    still_alive(wire)


def test_login_with_literals(srv: RunningServer) -> None:
    address = account(srv, 0).encode()
    wire = Wire.tls(srv)
    wire.send(b"a LOGIN {%d}\r\n" % len(address))
    assert wire.line().startswith(b"+")
    wire.send(address + b" {9+}\r\n" + PASSWORD.encode() + b"\r\n")
    assert wire.until(b"a")[-1].startswith(b"a OK")


def test_authenticate_with_an_overlong_response_is_bad_and_the_session_goes_on(srv: RunningServer) -> None:
    wire = Wire.tls(srv)
    wire.send(b"a AUTHENTICATE PLAIN\r\n")
    assert wire.line().startswith(b"+")
    wire.send(b"QUFB" * 30_000 + b"\r\n")
    assert wire.until(b"a")[-1].startswith(b"a BAD")
    still_alive(wire)  # the next line is a command again, not a SASL response


def test_authenticate_edge_cases(srv: RunningServer) -> None:
    address = account(srv, 0).encode()
    wire = Wire.tls(srv)
    wire.send(b"a AUTHENTICATE PLAIN\r\n")
    wire.line()
    wire.send(b"*\r\n")
    assert wire.until(b"a")[-1].startswith(b"a BAD")
    wire.send(b"b AUTHENTICATE PLAIN\r\n")
    wire.line()
    wire.send(b"!!!not base64\r\n")
    assert wire.until(b"b")[-1].startswith(b"b BAD")
    other = base64.b64encode(b"someone@example.com\0" + address + b"\0" + PASSWORD.encode())
    assert wire.cmd(b"c AUTHENTICATE PLAIN " + other)[-1].startswith(b"c NO [AUTHORIZATIONFAILED]")
    assert wire.cmd(b"d AUTHENTICATE PLAIN ====")[-1].startswith(b"d BAD")
    ok = base64.b64encode(b"\0" + address + b"\0" + PASSWORD.encode())
    assert wire.cmd(b"e AUTHENTICATE PLAIN " + ok)[-1].startswith(b"e OK")


# -- STARTTLS -------------------------------------------------------------------------------------

def _upgrade(srv: RunningServer, wire: Wire) -> Wire:
    tls = Wire.__new__(Wire)
    tls.sock = srv.client_tls().wrap_socket(wire.sock, server_hostname="localhost")
    tls.buf = b""
    return tls


def test_logindisabled_before_starttls_and_starttls_twice(srv: RunningServer) -> None:
    address = account(srv, 0)
    wire = Wire.plain(srv)
    assert b"LOGINDISABLED" in wire.greeting and b"STARTTLS" in wire.greeting
    assert wire.cmd(b"a LOGIN " + address.encode() + b" " + PASSWORD.encode())[-1].startswith(
        b"a NO [PRIVACYREQUIRED]")
    assert wire.cmd(b"b STARTTLS")[-1].startswith(b"b OK")
    tls = _upgrade(srv, wire)
    assert tls.cmd(b"c STARTTLS")[-1].startswith(b"c BAD")
    tls.login(address, PASSWORD)


def test_starttls_on_993_is_bad(srv: RunningServer) -> None:
    wire = Wire.tls(srv)
    assert wire.cmd(b"a STARTTLS")[-1].startswith(b"a BAD")
    still_alive(wire)


def test_commands_pipelined_after_starttls_are_discarded(srv: RunningServer) -> None:
    address = account(srv, 0)
    wire = Wire.plain(srv)
    wire.send(b"a STARTTLS\r\nb LOGIN " + address.encode() + b" " + PASSWORD.encode() + b"\r\n")
    assert wire.line().startswith(b"a OK")
    tls = _upgrade(srv, wire)  # the handshake goes on
    lines = tls.cmd(b"c CAPABILITY")
    assert not any(line.startswith(b"b ") for line in lines)  # the injected LOGIN never ran
    assert b"AUTH=PLAIN" in lines[0]  # still not authenticated
    tls.login(address, PASSWORD)


# -- literals and lines --------------------------------------------------------------------------

def test_literal_edge_cases(srv: RunningServer) -> None:
    wire = logged_in(srv)
    wire.send(b"a SELECT {0}\r\n")
    assert wire.line().startswith(b"+")
    wire.send(b"\r\n")
    assert wire.until(b"a")[-1].startswith(b"a NO")  # and the failed SELECT unselected INBOX
    assert wire.cmd(b"s SELECT INBOX")[-1].startswith(b"s OK")
    wire.send(b"b NOOP {300000}\r\n")
    assert wire.until(b"b")[-1].startswith(b"b NO [TOOBIG]")
    wire.send(b"c SEARCH SUBJECT {1+}\r\n1 UID 1:*\r\n")  # a literal in the middle of a line
    assert wire.until(b"c")[-1].startswith(b"c OK")
    wire.send(b"d SELECT ~{5+}\r\nINBOX\r\n")  # literal8 is only for APPEND
    assert wire.until(b"d")[-1].startswith(b"d BAD")
    still_alive(wire)


def test_nonsync_literal_over_the_limit_says_bye(srv: RunningServer) -> None:
    wire = logged_in(srv)
    wire.send(b"a LOGIN {300000+}\r\n")
    assert wire.until(b"a")[-1].startswith(b"a BAD [TOOBIG]")
    assert wire.line().startswith(b"* BYE")
    assert wire.closed()


def test_literal_never_sent_does_not_block_others(srv: RunningServer) -> None:
    stuck = Wire.tls(srv)
    stuck.send(b"a LOGIN {5}\r\n")
    assert stuck.line().startswith(b"+")
    other = logged_in(srv)
    still_alive(other)
    assert stuck.line().startswith(b"* BYE")
    assert stuck.closed()


def test_slowloris_before_login_is_cut_off(srv: RunningServer) -> None:
    wire = Wire.plain(srv)
    wire.sock.settimeout(0.25)
    start = time.monotonic()
    received = b""
    while time.monotonic() - start < 3 * IDLE_TIMEOUT + 3:
        try:
            wire.send(b"a")  # never a complete line, but never idle for a whole timeout
            chunk = wire.sock.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        received += chunk
        if not chunk:
            break
    assert time.monotonic() - start < 3 * IDLE_TIMEOUT + 2
    assert received.startswith(b"* BYE")


@pytest.mark.parametrize("line", [b"* NOOP", b"+ NOOP", b" NOOP", b"a\xff NOOP", b"a\x00 NOOP", b"a{ NOOP"])
def test_invalid_tags_get_untagged_bad(srv: RunningServer, line: bytes) -> None:
    wire = logged_in(srv, select=False)
    wire.send(line + b"\r\n")
    assert wire.line().startswith(b"* BAD")
    still_alive(wire)


# -- IDLE ----------------------------------------------------------------------------------------

def test_idle_then_an_overlong_line_ends_idle_and_the_session_goes_on(srv: RunningServer) -> None:
    wire = logged_in(srv)
    wire.send(b"i IDLE\r\n")
    assert wire.line().startswith(b"+")
    wire.send(b"x" * 70_000 + b"\r\n")
    assert wire.until(b"i")[-1].startswith(b"i BAD")
    still_alive(wire)  # NOOP is a command again, not a would-be DONE
    wire.send(b"j IDLE\r\n")
    assert wire.line().startswith(b"+")
    wire.send(b"garbage\r\n")
    assert wire.until(b"j")[-1].startswith(b"j BAD")
    still_alive(wire)


def test_idle_then_disconnect(srv: RunningServer) -> None:
    wire = logged_in(srv)
    wire.send(b"i IDLE\r\n")
    assert wire.line().startswith(b"+")
    wire.close()
    still_alive(logged_in(srv))


# -- sequence sets, FETCH, STORE, SEARCH -----------------------------------------------------------

def test_sequence_set_edge_cases(srv: RunningServer) -> None:
    wire = logged_in(srv)
    assert wire.cmd(b"a FETCH 0 FLAGS")[-1].startswith(b"a BAD")
    assert wire.cmd(b"b FETCH 4294967296 FLAGS")[-1].startswith(b"b BAD")
    assert wire.cmd(b"c FETCH 4 FLAGS")[-1].startswith(b"c BAD")  # RFC 9051: invalid sequence number
    assert wire.cmd(b"d UID FETCH 99:100 FLAGS") == [b"d OK UID FETCH completed"]
    start = time.monotonic()
    assert len(wire.cmd(b"e UID FETCH 1:4294967295 FLAGS")) == 4
    assert wire.cmd(b"f UID STORE 1:4294967295 +FLAGS.SILENT (x)")[-1].startswith(b"f OK")
    assert wire.cmd(b"g SEARCH UID 1:4294967295")[0] == b"* SEARCH 1 2 3"
    assert time.monotonic() - start < 2  # no allocation per number
    assert wire.cmd(b"h FETCH *:* UID")[0].startswith(b"* 3 FETCH")
    assert wire.cmd(b"i FETCH $ FLAGS") == [b"i OK FETCH completed"]  # no saved result: empty


def test_empty_mailbox(srv: RunningServer) -> None:
    wire = logged_in(srv, messages=0)
    for line in (b"a FETCH 1:* FLAGS", b"a UID FETCH 1:* FLAGS", b"a STORE 1:* +FLAGS (x)", b"a COPY 1:* Trash"):
        assert wire.cmd(line)[-1].startswith(b"a OK"), line
    assert wire.cmd(b"b FETCH 1 FLAGS")[-1].startswith(b"b BAD")


def test_store_edge_cases(srv: RunningServer) -> None:
    address = account(srv)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    assert wire.cmd(b"s SELECT INBOX")[-1].startswith(b"s OK")
    lines = wire.cmd(b"a STORE 1 +FLAGS (\\Recent)")
    assert lines[-1].startswith(b"a OK")
    other = Wire.tls(srv)  # \\Recent was not stored: the next session does not see it
    other.login(address, PASSWORD)
    assert other.cmd(b"o SELECT INBOX")[-1].startswith(b"o OK")
    assert b"\\Recent" not in b"".join(other.cmd(b"p FETCH 1 FLAGS"))
    other.close()
    for line in (b"b STORE 1 +FLAGS (fo{o)", b"b STORE 1 +FLAGS (foo\xff)", b"b STORE 1 +FLAGS (\\*)",
                 b"b STORE 1 BOGUS (x)", b"b STORE 1 (UNCHANGEDSINCE 99999999999999999999999) +FLAGS (x)"):
        assert wire.cmd(line)[-1].startswith(b"b BAD"), line
    wire.cmd(b"c EXAMINE INBOX")
    assert wire.cmd(b"d STORE 1 +FLAGS (\\Seen)")[-1].startswith(b"d NO")
    still_alive(wire)


@pytest.mark.parametrize("line", [
    b"a FETCH 1 " + b"(" * 5000 + b"FLAGS" + b")" * 5000,
    b"a SEARCH " + b"(" * 5000 + b"ALL" + b")" * 5000,
    b"a SEARCH " + b"NOT " * 5000 + b"ALL",
    b"a SEARCH " + b"OR ALL " * 3000 + b"ALL",
    b"a SEARCH SUBJECT \xff\xfe",
    b"a FETCH 1 BODY[]<99999999999999999999.1>",
    b"a FETCH 1 BODY[0]",
    b"a ID (" + b'"k" "v" ' * 500 + b")",
])
def test_hostile_arguments_are_bad(srv: RunningServer, line: bytes) -> None:
    wire = logged_in(srv)
    assert wire.cmd(line)[-1].startswith(b"a BAD")
    still_alive(wire)


def test_search_charset_and_huge_partial(srv: RunningServer) -> None:
    wire = logged_in(srv)
    assert wire.cmd(b"a SEARCH CHARSET BOGUS ALL")[-1].startswith(b"a NO [BADCHARSET")
    lines = wire.cmd(b"b FETCH 1 BODY.PEEK[]<4294967295.4294967295>")
    assert lines[-1].startswith(b"b OK") and b"{0}" in lines[0]
    assert wire.cmd(b"c ENABLE FOO BAR")[:1] == [b"* ENABLED"]


def test_hostile_deep_mime_message(srv: RunningServer) -> None:
    msg = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for i in range(10_000):
        msg = (b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) + msg
               + b"\r\n--b%d--\r\n" % i)
    acct = srv.add_account(f"adv{next(_numbers)}@example.com", PASSWORD)
    srv.call(srv.store.deliver([(acct.id, "INBOX")], b"Subject: deep\r\n" + msg))
    wire = Wire.tls(srv)
    wire.login(acct.address, PASSWORD)
    wire.cmd(b"s SELECT INBOX")
    for item in (b"BODYSTRUCTURE", b"BODY", b"ENVELOPE", b"BODY.PEEK[" + b".".join([b"1"] * 5000) + b"]",
                 b"BINARY.PEEK[" + b".".join([b"1"] * 300) + b"]", b"BODY.PEEK[" + b"1." * 300 + b"MIME]"):
        assert wire.cmd(b"a FETCH 1 " + item)[-1].startswith(b"a OK"), item
    assert wire.cmd(b"b SEARCH TEXT leaf")[-1].startswith(b"b OK")


# -- APPEND ---------------------------------------------------------------------------------------

MSG = b"Subject: x\r\n\r\nhi\r\n"


def _append(wire: Wire, head: bytes, data: bytes = MSG) -> bytes:
    wire.send(head + b" {%d}\r\n" % len(data))
    first = wire.line()
    if not first.startswith(b"+"):
        return first
    wire.send(data + b"\r\n")
    return wire.until(head.split(b" ", 1)[0])[-1]


def test_append_refusals(srv: RunningServer) -> None:
    wire = logged_in(srv, select=False)
    assert _append(wire, b"a APPEND nope").startswith(b"a NO [TRYCREATE]")
    assert _append(wire, b'b APPEND INBOX "31-Foo-2020 00:00:00 +0000"').startswith(b"b BAD")
    assert _append(wire, b'c APPEND INBOX "01-Jan-2020 25:00:00 +0000"').startswith(b"c BAD")
    assert _append(wire, b"d APPEND INBOX", b"x" * (MAX_LITERAL + 1)).startswith(b"d NO [TOOBIG]")
    assert b"APPENDLIMIT=%d" % MAX_LITERAL in wire.cmd(b"e CAPABILITY")[0]
    assert messages_in(wire) == 3


def test_multiappend_with_one_failure_stores_nothing(srv: RunningServer) -> None:
    wire = logged_in(srv, select=False)
    head = b"a APPEND INBOX {%d+}\r\n" % len(MSG) + MSG
    for bad in (b' "31-Foo-2020 00:00:00 +0000" {%d+}\r\n' % len(MSG) + MSG,
                b" {0+}\r\n", b" {5+}\r\na\x00b\r\n"):
        wire.send(head + bad + b"\r\n")
        assert not wire.until(b"a")[-1].startswith(b"a OK")
    assert messages_in(wire) == 3
    wire.send(head + b" {%d}\r\n" % (MAX_LITERAL + 1))
    assert wire.until(b"a")[-1].startswith(b"a NO [TOOBIG]")
    assert messages_in(wire) == 3


# -- mailbox names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    (b"..", b"NO"), (b"a/../b", b"NO"), (b"/x", b"NO"), (b"INBOX/../x", b"NO"), (b"%", b"BAD"),
    (b"a*b", b"BAD"), (b"x" * 10_000, b"NO"), (b"/".join([b"d"] * 2000), b"NO"), (b'"&Jjo"', b"NO"),
    (b'"&AGE-"', b"NO"), (b'"\xed\xa0\x80"', b"BAD"), (b'"a\tb"', b"NO"), (b'""', b"NO"),
    (b"INBOX", b"NO [ALREADYEXISTS]"), (b"inbox", b"NO [ALREADYEXISTS]"),
])
def test_create_hostile_names(srv: RunningServer, name: bytes, expected: bytes) -> None:
    wire = logged_in(srv, select=False)
    assert wire.cmd(b"a CREATE " + name)[-1].startswith(b"a " + expected)
    still_alive(wire)


def test_inbox_and_rename_rules(srv: RunningServer) -> None:
    wire = logged_in(srv, select=False)
    assert wire.cmd(b"a DELETE INBOX")[-1].startswith(b"a NO")
    assert wire.cmd(b"b RENAME INBOX INBOX")[-1].startswith(b"b NO")
    assert wire.cmd(b"c CREATE r")[-1].startswith(b"c OK")
    assert wire.cmd(b"d RENAME r r")[-1].startswith(b"d NO")
    assert wire.cmd(b"e RENAME r r/child")[-1].startswith(b"e NO")
    assert wire.cmd(b"f RENAME nope x")[-1].startswith(b"f NO [NONEXISTENT]")
    assert wire.cmd(b'g SELECT "&Jjo"')[-1].startswith(b"g NO")


def test_mailbox_names_differing_only_in_normalisation_are_one_mailbox(srv: RunningServer) -> None:
    """RFC 9051 §5.1: names are normalised to NFC, so "café" from a Mac (NFD) and from a phone
    (NFC) name one mailbox in CREATE, SELECT, RENAME, STATUS, APPEND, COPY, SUBSCRIBE and LIST."""
    from postoffice.protocols.imap import utf7_encode
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    q = lambda name: b'"' + utf7_encode(name) + b'"'  # noqa: E731 - modified UTF-7, as clients send
    wire = logged_in(srv, select=False)
    assert wire.cmd(b"a CREATE " + q(nfc))[-1].startswith(b"a OK")
    assert wire.cmd(b"b CREATE " + q(nfd))[-1].startswith(b"b NO [ALREADYEXISTS]")
    assert wire.cmd(b"c APPEND " + q(nfd) + b" {10+}\r\nSubject: x")[-1].startswith(b"c OK")
    status = wire.cmd(b"d STATUS " + q(nfd) + b" (MESSAGES)")
    assert b"(MESSAGES 1)" in status[0] and status[-1].startswith(b"d OK")
    assert wire.cmd(b"e SELECT INBOX")[-1].startswith(b"e OK")
    assert wire.cmd(b"f COPY 1 " + q(nfd))[-1].startswith(b"f OK")
    select = wire.cmd(b"g SELECT " + q(nfd))
    assert b"* 2 EXISTS" in select and select[-1].startswith(b"g OK")
    assert wire.cmd(b"h SUBSCRIBE " + q(nfd))[-1].startswith(b"h OK")
    assert wire.cmd(b"i UNSELECT")[-1].startswith(b"i OK")
    assert wire.cmd(b"j RENAME " + q(nfd) + b" " + q("the\u0301"))[-1].startswith(b"j OK")
    listed = wire.cmd(b'k LIST "" *')
    names = [line.rsplit(b" ", 1)[1] for line in listed[:-1]]
    assert utf7_encode("th\u00e9") in b" ".join(names) and utf7_encode("the\u0301") not in b" ".join(names)
    assert utf7_encode(nfc) not in b" ".join(names)
    assert len(wire.cmd(b"l LIST \"\" " + q("the\u0301"))) == 2  # the NFD pattern finds the NFC name
    lsub = wire.cmd(b'm LSUB "" *')
    assert any(utf7_encode("th\u00e9") in line for line in lsub[:-1]), lsub  # RENAME moved it
    still_alive(wire)


# -- connections -----------------------------------------------------------------------------------

def test_disconnect_mid_fetch_and_mid_literal(srv: RunningServer) -> None:
    address = account(srv, 0)
    acct_wire = Wire.tls(srv)
    acct_wire.login(address, PASSWORD)
    big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 30_000
    acct_wire.send(b"p APPEND INBOX {%d+}\r\n" % len(big[:MAX_LITERAL - 10]) + big[:MAX_LITERAL - 10] + b"\r\n")
    assert acct_wire.until(b"p")[-1].startswith(b"p OK")
    for _ in range(3):
        wire = Wire.tls(srv)
        wire.login(address, PASSWORD)
        wire.cmd(b"s SELECT INBOX")
        wire.send(b"a FETCH 1 BODY.PEEK[]\r\n" * 20)
        wire.sock.recv(100)
        wire.close()
        wire = Wire.tls(srv)
        wire.login(address, PASSWORD)
        wire.send(b"a APPEND INBOX {1000+}\r\nSubject: x\r\n")
        wire.close()
    time.sleep(0.2)
    still_alive(acct_wire)
    assert messages_in(acct_wire) == 1


def test_per_ip_connection_limit(srv: RunningServer) -> None:
    socks = []
    refused = b""
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", srv.port("imap")), timeout=5)
            socks.append(sock)
            greeting = sock.recv(4096)
            if greeting.startswith(b"* BYE"):
                refused = greeting
                break
    finally:
        for sock in socks:
            sock.close()
    assert refused.startswith(b"* BYE [UNAVAILABLE]")
    time.sleep(0.2)
    still_alive(logged_in(srv, select=False))
