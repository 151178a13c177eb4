"""METADATA / METADATA-SERVER (RFC 5464) end to end over TLS, with the RFC's own examples
(section 4): server and mailbox entries, DEPTH, MAXSIZE, NIL removal, limits."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from postoffice.servers.imap.metadata import MAX_ENTRIES, MAX_VALUE
from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapmetadata") / "data") as server:
        yield server


@pytest.fixture
def wire(srv: RunningServer) -> Iterator[Wire]:
    address = f"meta{next(_numbers)}@example.com"
    srv.add_account(address, PASSWORD)
    w = Wire.tls(srv)
    assert w.cmd(b"L LOGIN %s %s" % (address.encode(), PASSWORD.encode()))[-1].startswith(b"L OK")
    yield w
    w.close()


def ok(lines: list[bytes], tag: bytes) -> list[bytes]:
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines[:-1]


def test_rfc5464_examples(wire: Wire) -> None:
    caps = wire.cmd(b"c CAPABILITY")[0]
    assert b" METADATA " in caps + b" " and b"METADATA-SERVER" in caps
    # 4.3: a SETMETADATA INBOX (/private/comment {33} ... two lines. )
    wire.send(b"a SETMETADATA INBOX (/private/comment {33}\r\n")
    assert wire.line().startswith(b"+ ")
    wire.send(b"My new comment across\r\ntwo lines.)\r\n")  # 33 octets, then ")"
    assert wire.line() == b"a OK SETMETADATA completed"
    ok(wire.cmd(b'a2 SETMETADATA INBOX (/shared/comment "Shared comment")'), b"a2")
    # 4.2: GETMETADATA of one entry and of a list
    lines = ok(wire.cmd(b"b GETMETADATA INBOX /private/comment"), b"b")
    assert lines == [b"* METADATA INBOX (/private/comment {33}\r\nMy new comment across\r\ntwo lines.)"]
    lines = ok(wire.cmd(b"b2 GETMETADATA INBOX (/shared/comment /private/comment)"), b"b2")
    assert lines[0].startswith(b'* METADATA INBOX (/private/comment {33}') and lines[0].endswith(
        b'/shared/comment "Shared comment")')
    # names are case-insensitive
    assert ok(wire.cmd(b"b3 GETMETADATA INBOX /SHARED/Comment"), b"b3") == [
        b'* METADATA INBOX (/shared/comment "Shared comment")']
    # 4.2.1: MAXSIZE leaves out longer values: OK [METADATA LONGENTRIES n]
    lines = wire.cmd(b"c GETMETADATA (MAXSIZE 20) INBOX (/shared/comment /private/comment)")
    assert lines == [b'* METADATA INBOX (/shared/comment "Shared comment")',
                     b"c OK [METADATA LONGENTRIES 33] GETMETADATA completed"]
    # 4.2.2: DEPTH 1 gives children, infinity every descendant
    ok(wire.cmd(b'd SETMETADATA INBOX (/private/filters/values/small "SMALLER 5000" '
                b'/private/filters/values/boss "FROM \\"boss@example.com\\"" /private/filters/values/x/y "deep")'), b"d")
    assert ok(wire.cmd(b"e GETMETADATA (DEPTH 1) INBOX (/private/filters/values)"), b"e") == [
        b'* METADATA INBOX (/private/filters/values/boss "FROM \\"boss@example.com\\"" '
        b'/private/filters/values/small "SMALLER 5000")']
    lines = ok(wire.cmd(b"e2 GETMETADATA (DEPTH infinity) INBOX /private/filters"), b"e2")
    assert b"/private/filters/values/x/y" in lines[0] and b"/private/filters/values/small" in lines[0]
    # a missing entry is NIL; NIL in SETMETADATA removes
    ok(wire.cmd(b"f SETMETADATA INBOX (/private/comment NIL)"), b"f")
    assert ok(wire.cmd(b"g GETMETADATA INBOX /private/comment"), b"g") == [b"* METADATA INBOX (/private/comment NIL)"]


def test_server_entries_limits_and_errors(wire: Wire) -> None:
    # METADATA-SERVER: mailbox "" is the server; /shared/admin is the administrator's URI
    lines = ok(wire.cmd(b'a GETMETADATA "" /shared/admin'), b"a")
    assert lines == [b'* METADATA "" (/shared/admin "mailto:postmaster@mail.test")']
    assert wire.cmd(b'b SETMETADATA "" (/shared/comment "mine")')[-1].startswith(b"b NO")
    ok(wire.cmd(b'c SETMETADATA "" (/private/vendor/x/theme "dark")'), b"c")
    assert ok(wire.cmd(b'd GETMETADATA (DEPTH infinity) "" /private'), b"d") == [
        b'* METADATA "" (/private/vendor/x/theme "dark")']
    # limits: a value too long, too many entries -- and nothing of a refused command is kept
    big = b"x" * (MAX_VALUE + 1)
    assert wire.cmd(b"e SETMETADATA INBOX (/private/a {%d+}\r\n%s)" % (len(big), big))[-1].startswith(
        b"e NO [METADATA MAXSIZE %d]" % MAX_VALUE)
    many = b" ".join(b'/private/n%d "v"' % i for i in range(MAX_ENTRIES + 1))
    assert wire.cmd(b"f SETMETADATA INBOX (%s)" % many)[-1].startswith(b"f NO [METADATA TOOMANY]")
    assert ok(wire.cmd(b"g GETMETADATA INBOX /private/n0"), b"g") == [b"* METADATA INBOX (/private/n0 NIL)"]
    # bad names, a missing mailbox
    assert wire.cmd(b'h SETMETADATA INBOX (/other/x "v")')[-1].startswith(b"h BAD")
    assert wire.cmd(b"i GETMETADATA INBOX /private/x/")[-1].startswith(b"i BAD")
    assert wire.cmd(b"j GETMETADATA Nowhere /private/comment")[-1].startswith(b"j NO")
    # entries follow a mailbox through RENAME and are gone with DELETE (a new one starts empty)
    ok(wire.cmd(b"k CREATE Box"), b"k")
    ok(wire.cmd(b'l SETMETADATA Box (/private/comment "kept")'), b"l")
    ok(wire.cmd(b"m RENAME Box Box2"), b"m")
    assert ok(wire.cmd(b"n GETMETADATA Box2 /private/comment"), b"n") == [
        b'* METADATA "Box2" (/private/comment "kept")']
    ok(wire.cmd(b"o DELETE Box2"), b"o")
    ok(wire.cmd(b"p CREATE Box2"), b"p")
    assert ok(wire.cmd(b"q GETMETADATA Box2 /private/comment"), b"q") == [
        b'* METADATA "Box2" (/private/comment NIL)']
