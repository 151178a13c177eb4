"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 section 4) over TLS with raw commands: PARTIAL,
UPDATE (ADDTO / REMOVEFROM as other sessions change the mailbox, also during IDLE),
CANCELUPDATE, NOUPDATE and tag reuse. Command forms are the RFC's own examples."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from postoffice.servers.imap.context import MAX_CONTEXTS
from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapcontext") / "data") as server:
        yield server


def mailbox(srv: RunningServer, count: int) -> str:
    address = f"ctx{next(_numbers)}@example.com"
    acct = srv.add_account(address, PASSWORD)
    for i in range(1, count + 1):
        # subjects sort in reverse of arrival: message 1 is "s10", message 10 "s01"
        raw = (f"From: a@example.org\r\nSubject: s{count + 1 - i:02d}\r\n"
               f"Date: Mon, 1 Jan 2001 00:{i:02d}:00 +0000\r\n\r\nbody {i}\r\n").encode()
        srv.call(srv.store.deliver([(acct.id, "INBOX")], raw))
    return address


def connect(srv: RunningServer, address: str) -> Wire:
    w = Wire.tls(srv)
    assert w.cmd(b"L LOGIN %s %s" % (address.encode(), PASSWORD.encode()))[-1].startswith(b"L OK")
    assert w.cmd(b"S SELECT INBOX")[-1].startswith(b"S OK")
    return w


def untagged(lines: list[bytes], tag: bytes) -> list[bytes]:
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines[:-1]


def esearch(lines: list[bytes], tag: bytes) -> list[bytes]:
    return [line for line in untagged(lines, tag) if line.startswith(b"* ESEARCH")]


def test_capabilities_and_partial(srv: RunningServer) -> None:
    w = connect(srv, mailbox(srv, 10))
    try:
        caps = w.cmd(b"c CAPABILITY")[0]
        assert b"CONTEXT=SEARCH" in caps and b"CONTEXT=SORT" in caps and b"ESORT" in caps
        # RFC 5267 4.2: A01 SEARCH RETURN (CONTEXT COUNT) UNDELETED UNKEYWORD $Junk
        assert untagged(w.cmd(b"A01 SEARCH RETURN (CONTEXT COUNT) UNDELETED UNKEYWORD $Junk"), b"A01") == [
            b'* ESEARCH (TAG "A01") COUNT 10']
        # 4.4: PARTIAL lo:hi of the results in mailbox order; what exists of it; NIL if none
        assert untagged(w.cmd(b"A02 UID SEARCH RETURN (PARTIAL 3:5) UNDELETED UNKEYWORD $Junk"), b"A02") == [
            b'* ESEARCH (TAG "A02") UID PARTIAL (3:5 3:5)']
        assert untagged(w.cmd(b"A03 SEARCH RETURN (PARTIAL 9:12 COUNT) ALL"), b"A03") == [
            b'* ESEARCH (TAG "A03") COUNT 10 PARTIAL (9:12 9:10)']
        assert untagged(w.cmd(b"A04 UID SEARCH RETURN (PARTIAL 24000:24500) ALL"), b"A04") == [
            b'* ESEARCH (TAG "A04") UID PARTIAL (24000:24500 NIL)']
        assert untagged(w.cmd(b"A05 SEARCH RETURN (PARTIAL 4:2) ALL"), b"A05") == [  # 4:2 is 2:4
            b'* ESEARCH (TAG "A05") PARTIAL (2:4 2:4)']
        # with SORT the window is over the sort order (subjects: message 10 first)
        assert untagged(w.cmd(b"A06 UID SORT RETURN (PARTIAL 1:3) (SUBJECT) UTF-8 ALL"), b"A06") == [
            b'* ESEARCH (TAG "A06") UID PARTIAL (1:3 10,9,8)']
        assert w.cmd(b"A07 SEARCH RETURN (PARTIAL 1:2 ALL) ALL")[-1].startswith(b"A07 BAD")
        assert w.cmd(b"A08 SEARCH RETURN (PARTIAL 0:2) ALL")[-1].startswith(b"A08 BAD")
        assert w.cmd(b"A09 SEARCH RETURN (PARTIAL *:2) ALL")[-1].startswith(b"A09 BAD")
    finally:
        w.close()


def test_search_update_addto_and_removefrom(srv: RunningServer) -> None:
    address = mailbox(srv, 5)
    w, other = connect(srv, address), connect(srv, address)
    try:
        # RFC 5267 4.3: B01 UID SEARCH RETURN (UPDATE COUNT) DELETED KEYWORD $Junk
        assert untagged(w.cmd(b"B01 UID SEARCH RETURN (UPDATE COUNT) DELETED KEYWORD $Junk"), b"B01") == [
            b'* ESEARCH (TAG "B01") UID COUNT 0']
        untagged(other.cmd(b"o1 UID STORE 3:4 +FLAGS.SILENT (\\Deleted $Junk)"), b"o1")
        lines = untagged(w.cmd(b"n1 NOOP"), b"n1")
        assert lines[-1] == b'* ESEARCH (TAG "B01") UID ADDTO (0 3:4)'
        # the session's own STORE changes the result too
        assert esearch(w.cmd(b"s1 UID STORE 5 +FLAGS.SILENT (\\Deleted $Junk)"), b"s1") == [
            b'* ESEARCH (TAG "B01") UID ADDTO (0 5)']
        assert esearch(w.cmd(b"n2 NOOP"), b"n2") == []  # told once
        # 4.3.4: REMOVEFROM comes before the EXPUNGE it is about
        untagged(other.cmd(b"o2 EXPUNGE"), b"o2")
        lines = untagged(w.cmd(b"n3 NOOP"), b"n3")
        assert lines[0] == b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 3:5)'
        assert lines[1:] == [b"* 5 EXPUNGE", b"* 4 EXPUNGE", b"* 3 EXPUNGE"]
        # 4.3: reusing a live UPDATE tag is BAD
        assert w.cmd(b"B01 SEARCH RETURN (UPDATE) ALL")[-1].startswith(b"B01 BAD")
        # 4.3.5: after CANCELUPDATE nothing more is sent for B01
        assert untagged(w.cmd(b'B04 CANCELUPDATE "B01"'), b"B04") == []
        other.cmd(b"o3 UID STORE 1 +FLAGS.SILENT (\\Deleted $Junk)")
        assert not any(b"ESEARCH" in line for line in w.cmd(b"n4 NOOP"))
    finally:
        w.close()
        other.close()


def test_sequence_number_updates_are_numbered_before_the_expunge(srv: RunningServer) -> None:
    address = mailbox(srv, 4)
    w, other = connect(srv, address), connect(srv, address)
    try:
        assert untagged(w.cmd(b"C01 SEARCH RETURN (UPDATE ALL) UNSEEN"), b"C01") == [
            b'* ESEARCH (TAG "C01") ALL 1:4']
        other.cmd(b"o1 STORE 2 +FLAGS.SILENT (\\Deleted \\Seen)")
        other.cmd(b"o2 EXPUNGE")
        lines = untagged(w.cmd(b"n1 NOOP"), b"n1")
        # message 2 left the result (it became \Seen, then was expunged): numbered as before
        assert lines == [b'* ESEARCH (TAG "C01") REMOVEFROM (0 2)', b"* 2 EXPUNGE"]
        # a FETCH may not report the expunge (RFC 9051 7.5.1) but still gets ADDTO/REMOVEFROM
        other.cmd(b"o3 STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.cmd(b"o4 EXPUNGE")
        lines = untagged(w.cmd(b"f1 FETCH 1 FLAGS"), b"f1")
        assert b'* ESEARCH (TAG "C01") REMOVEFROM (0 1)' in lines
        assert not any(line.endswith(b"EXPUNGE") for line in lines)
        assert untagged(w.cmd(b"n2 NOOP"), b"n2") == [b"* 1 EXPUNGE"]
    finally:
        w.close()
        other.close()


def test_sort_update_gives_context_positions(srv: RunningServer) -> None:
    address = mailbox(srv, 6)  # subjects: 1 s06, 2 s05, ... 6 s01
    w, other = connect(srv, address), connect(srv, address)
    try:
        assert untagged(w.cmd(b"D01 UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 KEYWORD pick"), b"D01") == [
            b'* ESEARCH (TAG "D01") UID']
        other.cmd(b"o1 UID STORE 2,5 +FLAGS.SILENT (pick)")  # sorted: 5 (s02), 2 (s05)
        assert esearch(w.cmd(b"n1 NOOP"), b"n1") == [b'* ESEARCH (TAG "D01") UID ADDTO (1 5 2 2)']
        other.cmd(b"o2 UID STORE 4,1 +FLAGS.SILENT (pick)")  # now 5 (s02), 4 (s03), 2 (s05), 1 (s06)
        assert esearch(w.cmd(b"n2 NOOP"), b"n2") == [b'* ESEARCH (TAG "D01") UID ADDTO (2 4 4 1)']
        other.cmd(b"o3 UID STORE 5,2 -FLAGS.SILENT (pick)")  # removals from the highest position down
        assert esearch(w.cmd(b"n3 NOOP"), b"n3") == [b'* ESEARCH (TAG "D01") UID REMOVEFROM (3 2 1 5)']
        assert untagged(w.cmd(b"D02 UID SORT RETURN (ALL) (SUBJECT) UTF-8 KEYWORD pick"), b"D02") == [
            b'* ESEARCH (TAG "D02") UID ALL 4,1']
    finally:
        w.close()
        other.close()


def test_updates_arrive_during_idle(srv: RunningServer) -> None:
    address = mailbox(srv, 2)
    w = connect(srv, address)
    try:
        assert untagged(w.cmd(b"E01 UID SEARCH RETURN (UPDATE) UNSEEN"), b"E01") == [b'* ESEARCH (TAG "E01") UID']
        w.send(b"i IDLE\r\n")
        assert w.line() == b"+ idling"
        acct = srv.call(srv.store.get_account(address))
        srv.call(srv.store.deliver([(acct.id, "INBOX")], b"Subject: new\r\n\r\nx\r\n"))
        assert w.line() == b"* 3 EXISTS"
        line = w.line()
        if line.endswith(b"RECENT"):  # an IMAP4rev1 session also hears \Recent (RFC 3501 7.3.2)
            line = w.line()
        assert line == b'* ESEARCH (TAG "E01") UID ADDTO (0 3)'
        w.send(b"DONE\r\n")
        assert w.line() == b"i OK IDLE terminated"
    finally:
        w.close()


def test_noupdate_past_the_limit_and_contexts_end_with_the_selection(srv: RunningServer) -> None:
    w = connect(srv, mailbox(srv, 2))
    try:
        for i in range(MAX_CONTEXTS):
            untagged(w.cmd(b"U%d SEARCH RETURN (UPDATE COUNT) SEEN" % i), b"U%d" % i)
        # 4.3.1: the search is still answered, only its UPDATE is refused
        lines = w.cmd(b"B02 UID SORT RETURN (UPDATE COUNT) (DATE) UTF-8 KEYWORD $Junk")
        assert lines == [b'* ESEARCH (TAG "B02") UID COUNT 0',
                         b'* NO [NOUPDATE "B02"] Too many updating searches; this one will not be updated',
                         b"B02 OK UID SORT completed"]
        # closing the mailbox ends every context: no update after a re-SELECT
        assert w.cmd(b"S2 SELECT INBOX")[-1].startswith(b"S2 OK")
        w.cmd(b"s STORE 1:2 +FLAGS.SILENT (\\Seen)")
        assert not any(b"ESEARCH" in line for line in w.cmd(b"n NOOP"))
        # and the tags are free again
        assert w.cmd(b"U0 SEARCH RETURN (UPDATE) SEEN")[-1].startswith(b"U0 OK")
    finally:
        w.close()
