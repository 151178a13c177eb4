"""IMAP wire conformance: exact server responses checked against RFC 3501 / 9051 / 7162 text,
over raw sockets (one server for the module; each test uses its own account)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


def message(n: int) -> bytes:
    return (f"From: s{n}@example.org\r\nTo: rcpt@example.com\r\nSubject: message {n}\r\n"
            f"Message-ID: <c{n}@example.org>\r\n\r\nbody {n}\r\n").encode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapconf") / "data") as server:
        yield server


@pytest.fixture
def wire(srv: RunningServer) -> Iterator[Wire]:
    address = f"conf{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    for i in range(1, 4):
        srv.call(srv.store.deliver([(account.id, "INBOX")], message(i)))
    w = Wire.tls(srv)
    w.login(address, PASSWORD)
    yield w
    w.close()


def ok(lines: list[bytes], tag: bytes) -> list[bytes]:
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines[:-1]


def test_select_rev1_response_set(wire: Wire) -> None:
    """RFC 3501 6.3.1: FLAGS, EXISTS, RECENT, UNSEEN (there are unseen), PERMANENTFLAGS,
    UIDVALIDITY, UIDNEXT; tagged OK [READ-WRITE]."""
    lines = wire.cmd(b"a1 SELECT INBOX")
    assert lines[-1].startswith(b"a1 OK [READ-WRITE]")
    body = b"\n".join(lines)
    for needed in (rb"^\* FLAGS \(", rb"^\* 3 EXISTS$", rb"^\* 3 RECENT$", rb"^\* OK \[UNSEEN 1\]",
                   rb"^\* OK \[PERMANENTFLAGS \(.*\\\*\)\]", rb"^\* OK \[UIDVALIDITY \d+\]",
                   rb"^\* OK \[UIDNEXT 4\]"):
        assert re.search(needed, body, re.M), (needed, lines)


def test_lsub_percent_returns_unsubscribed_parent_as_noselect(wire: Wire) -> None:
    """RFC 3501 6.3.9: "foo/bar" subscribed, "foo" not: LSUB "" "%" returns foo (not
    foo/bar), flagged \\Noselect."""
    ok(wire.cmd(b"a1 CREATE Par/Child"), b"a1")
    ok(wire.cmd(b"a2 UNSUBSCRIBE Par"), b"a2")
    ok(wire.cmd(b"a3 SUBSCRIBE Par/Child"), b"a3")
    lines = ok(wire.cmd(b'a4 LSUB "" "%"'), b"a4")
    assert b'* LSUB (\\Noselect) "/" "Par"' in lines
    assert not any(b"Par/Child" in line for line in lines)
    lines = ok(wire.cmd(b'a5 LSUB "" "*"'), b"a5")
    assert b'* LSUB () "/" "Par/Child"' in lines
    assert not any(line.endswith(b'"Par"') for line in lines)  # "*" reaches the child itself
    ok(wire.cmd(b"a6 SUBSCRIBE Par"), b"a6")
    assert b'* LSUB () "/" "Par"' in ok(wire.cmd(b'a7 LSUB "" "%"'), b"a7")


def test_uid_fetch_vanished_covers_expunged_uids_above_the_last_message(wire: Wire) -> None:
    """RFC 7162 3.2.6: UID FETCH 1:* (...) (CHANGEDSINCE m VANISHED) reports every UID
    expunged since m, including those above the highest remaining UID."""
    ok(wire.cmd(b"a1 ENABLE QRESYNC"), b"a1")
    lines = ok(wire.cmd(b"a2 SELECT INBOX"), b"a2")
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))  # type: ignore[union-attr]
    ok(wire.cmd(b"a3 STORE 3 +FLAGS.SILENT (\\Deleted)"), b"a3")
    assert b"* VANISHED 3" in ok(wire.cmd(b"a4 EXPUNGE"), b"a4")
    lines = ok(wire.cmd(b"a5 UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq), b"a5")
    assert lines[0] == b"* VANISHED (EARLIER) 3", lines


def test_implicit_seen_reports_uid_and_modseq_with_qresync(wire: Wire) -> None:
    """RFC 7162 3.1/3.2.4: the FLAGS of an implicit \\Seen is a flag change; with QRESYNC
    the FETCH response carries UID and MODSEQ."""
    ok(wire.cmd(b"a1 ENABLE QRESYNC"), b"a1")
    ok(wire.cmd(b"a2 SELECT INBOX"), b"a2")
    lines = ok(wire.cmd(b"a3 FETCH 2 (BODY[TEXT])"), b"a3")
    assert len(lines) == 1
    assert re.fullmatch(rb"\* 2 FETCH \(UID 2 BODY\[TEXT\] \{8\}\r\nbody 2\r\n FLAGS \(\\Recent \\Seen\) MODSEQ \(\d+\)\)",
                        lines[0]), lines


def test_implicit_seen_reports_modseq_with_condstore(wire: Wire) -> None:
    ok(wire.cmd(b"a1 ENABLE CONDSTORE"), b"a1")
    ok(wire.cmd(b"a2 SELECT INBOX"), b"a2")
    lines = ok(wire.cmd(b"a3 FETCH 1 (RFC822.TEXT)"), b"a3")
    assert re.search(rb"FLAGS \(\\Recent \\Seen\) MODSEQ \(\d+\)\)$", lines[0]), lines
    assert b"UID" not in lines[0]
    # no flag change, no CONDSTORE extras
    lines = ok(wire.cmd(b"a4 FETCH 1 (RFC822.TEXT)"), b"a4")
    assert lines[0].endswith(b"body 1\r\n)"), lines


def test_store_silent_with_condstore_still_reports_modseq(wire: Wire) -> None:
    """RFC 7162 3.1.3: with CONDSTORE an untagged FETCH with MODSEQ is sent even for
    .SILENT (UID too for UID STORE)."""
    ok(wire.cmd(b"a1 SELECT INBOX (CONDSTORE)"), b"a1")
    lines = ok(wire.cmd(b"a2 STORE 1 +FLAGS.SILENT (\\Seen)"), b"a2")
    assert len(lines) == 1 and re.fullmatch(rb"\* 1 FETCH \(MODSEQ \(\d+\)\)", lines[0]), lines
    lines = ok(wire.cmd(b"a3 UID STORE 2 (UNCHANGEDSINCE 100000) +FLAGS.SILENT (\\Answered)"), b"a3")
    assert len(lines) == 1 and re.fullmatch(rb"\* 2 FETCH \(UID 2 MODSEQ \(\d+\)\)", lines[0]), lines


def test_store_silent_without_condstore_is_silent(wire: Wire) -> None:
    ok(wire.cmd(b"a1 SELECT INBOX"), b"a1")
    assert ok(wire.cmd(b"a2 STORE 1 +FLAGS.SILENT (\\Seen)"), b"a2") == []
