"""SORT, THREAD, SORT=DISPLAY and ESORT end to end (RFC 5256, RFC 5957, RFC 5267 section 3),
with imaplib and imapclient over TLS against a real server; the command forms are the RFCs'
own examples, the mailboxes are built so that their answers are known."""

from __future__ import annotations

import imaplib
import itertools
import json
import marshal
import time
from collections.abc import Iterator
from pathlib import Path

import imapclient
import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


def msg(subject: str, date: str, *, frm: str = "a@example.org", to: str = "b@example.org",
        cc: str | None = None, mid: str | None = None, refs: str | None = None,
        irt: str | None = None, body: str = "body") -> bytes:
    lines = [f"From: {frm}", f"To: {to}", f"Subject: {subject}", f"Date: {date}"]
    if cc is not None:
        lines.append(f"Cc: {cc}")
    if mid is not None:
        lines.append(f"Message-ID: {mid}")
    if refs is not None:
        lines.append(f"References: {refs}")
    if irt is not None:
        lines.append(f"In-Reply-To: {irt}")
    return ("\r\n".join(lines) + f"\r\n\r\n{body}\r\n").encode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapsort") / "data") as server:
        yield server


def account(srv: RunningServer, messages: list[bytes]) -> str:
    address = f"sort{next(_numbers)}@example.com"
    acct = srv.add_account(address, PASSWORD)
    for raw in messages:
        srv.call(srv.store.deliver([(acct.id, "INBOX")], raw))
    return address


def imap(srv: RunningServer, address: str) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    m.login(address, PASSWORD)
    m.select("INBOX")
    return m


# RFC 5256 section 4 examples: "A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL" -> "* SORT 5 3 4 1 2"
# The mailbox: 5 has the first base subject; 3 and 4 share one (3 sent later, so first under
# REVERSE DATE); 1 and 2 share the last (1 sent later). Prefixes and case are not part of the
# base subject (section 2.1).
EXAMPLE = [
    msg("Re: Cherry", "Mon, 7 Feb 1994 22:00:00 +0000", frm='"Zed" <zed@example.org>'),           # 1
    msg("cherry (fwd)", "Mon, 7 Feb 1994 21:00:00 +0000", frm="yan@example.org"),                  # 2
    msg("[list] Banana", "Tue, 8 Feb 1994 10:00:00 +0100", frm='"bob" <xavier@example.org>'),     # 3
    msg("Fwd: banana", "Tue, 8 Feb 1994 08:00:00 +0000", frm="=?utf-8?q?=C3=81lvaro?= <w@example.org>"),  # 4
    msg("=?utf-8?q?Apple?=", "Sun, 6 Feb 1994 12:00:00 +0000", frm='"Carol" <carol@example.org>'),  # 5
]


def test_sort_rfc5256_examples(srv: RunningServer) -> None:
    m = imap(srv, account(srv, EXAMPLE))
    try:
        assert "SORT" in m.capabilities and "THREAD=REFERENCES" in m.capabilities
        assert m.sort("(SUBJECT REVERSE DATE)", "UTF-8", "ALL") == ("OK", [b"5 3 4 1 2"])
        # A282: SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994 (internal dates are today: all match)
        assert m.sort("(SUBJECT)", "UTF-8", "SINCE", "1-Feb-1994") == ("OK", [b"5 3 4 1 2"])
        # A284: nothing matches -> an empty SORT response
        assert m.sort("(SUBJECT)", "US-ASCII", "TEXT", '"not in mailbox"') == ("OK", [b""])  # "* SORT" alone
        # DATE is the sent date in UTC: 3 (09:00Z) is after 4 (08:00Z)
        assert m.sort("(DATE)", "UTF-8", "ALL") == ("OK", [b"5 2 1 4 3"])
        assert m.sort("(REVERSE DATE)", "UTF-8", "ALL") == ("OK", [b"3 4 1 2 5"])
        # FROM is the addr-mailbox; DISPLAYFROM the decoded display name, else the address
        assert m.sort("(FROM)", "UTF-8", "ALL") == ("OK", [b"5 4 3 2 1"])
        assert m.sort("(DISPLAYFROM)", "UTF-8", "ALL") == ("OK", [b"3 5 2 1 4"])
        assert m.sort("(ARRIVAL)", "UTF-8", "ALL") == ("OK", [b"1 2 3 4 5"])
        assert m.sort("(REVERSE SIZE SUBJECT)", "UTF-8", "ALL")[0] == "OK"
        typ, data = m.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8", "UNDELETED")
        assert typ == "OK" and [int(x) for x in data[0].split()] == [5, 4, 3, 2, 1]
        typ, data = m.sort("(SUBJECT)", "KOI8-R", "ALL")
        assert typ == "NO" and data[0].startswith(b"[BADCHARSET")
    finally:
        m.logout()


def test_sort_ties_keep_mailbox_order_and_missing_headers_sort_empty(srv: RunningServer) -> None:
    same = "Wed, 1 Mar 2000 10:00:00 +0000"
    m = imap(srv, account(srv, [
        msg("b", same), msg("a", same),
        b"Subject: no date and no from\r\n\r\nx\r\n",
        msg("a", same, cc="zz@example.org"),
    ]))
    try:
        # Equal keys stay in sequence order, also under REVERSE (only the key is reversed).
        assert m.sort("(REVERSE DATE)", "UTF-8", "1,2,4") == ("OK", [b"1 2 4"])
        assert m.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"2 4 1 3"])
        # A missing From/Cc sorts as the empty string (RFC 5256 section 3).
        assert m.sort("(FROM)", "UTF-8", "ALL") == ("OK", [b"3 1 2 4"])
        assert m.sort("(CC)", "UTF-8", "ALL") == ("OK", [b"1 2 3 4"])
        assert m.sort("(REVERSE CC)", "UTF-8", "ALL") == ("OK", [b"4 1 2 3"])
    finally:
        m.logout()


def test_sort_sees_new_mail_and_expunges(srv: RunningServer) -> None:
    address = account(srv, [msg("b", "Wed, 1 Mar 2000 10:00:00 +0000")])
    m = imap(srv, address)
    try:
        assert m.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"1"])
        acct = srv.call(srv.store.get_account(address))
        srv.call(srv.store.deliver([(acct.id, "INBOX")], msg("a", "Wed, 1 Mar 2000 09:00:00 +0000")))
        m.noop()
        assert m.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"2 1"])
        m.store("2", "+FLAGS", "\\Deleted")
        m.expunge()
        assert m.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"1"])
    finally:
        m.logout()


def test_esort_rfc5267_example(srv: RunningServer) -> None:
    """RFC 5267 section 3.3: E01 UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD
    $Junk -> * ESEARCH (TAG "E01") UID ALL in sort order, ranges only where ascending."""
    dates = ["Mon, 1 Jan 2001 0%d:00:00 +0000" % h for h in (1, 2, 3, 4, 5, 6)]
    # sent order: 1 < 2 < 3 < 5 < 6 and 4 is the oldest
    dates[3] = "Sun, 31 Dec 2000 00:00:00 +0000"
    address = account(srv, [msg(f"m{i}", d) for i, d in enumerate(dates, 1)])
    w = Wire.tls(srv)
    try:
        assert w.cmd(b"a LOGIN %s %s" % (address.encode(), PASSWORD.encode()))[-1].startswith(b"a OK")
        assert w.cmd(b"b SELECT INBOX")[-1].startswith(b"b OK")
        assert w.cmd(b"c UID STORE 2 +FLAGS ($Junk)")[-1].startswith(b"c OK")
        lines = w.cmd(b"E01 UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk")
        assert lines == [b'* ESEARCH (TAG "E01") UID ALL 6,5,3,1,4', b"E01 OK UID SORT completed"]
        lines = w.cmd(b"E02 SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL")
        assert lines[0] == b'* ESEARCH (TAG "E02") MIN 4 MAX 6 COUNT 6'
        lines = w.cmd(b"E03 SORT RETURN (ALL) (DATE) UTF-8 ALL")
        assert lines[0] == b'* ESEARCH (TAG "E03") ALL 4,1:3,5:6'
        lines = w.cmd(b"E04 SORT RETURN (COUNT) (DATE) UTF-8 KEYWORD nothing")
        assert lines[0] == b'* ESEARCH (TAG "E04") COUNT 0'
        assert w.cmd(b"E05 SORT RETURN (SAVE) (DATE) UTF-8 ALL")[-1].startswith(b"E05 BAD")
        assert w.cmd(b"E06 SORT (DATE) ALL")[-1].startswith(b"E06 BAD")  # charset is mandatory
        assert w.cmd(b"E07 SORT (BOGUS) UTF-8 ALL")[-1].startswith(b"E07 BAD")
    finally:
        w.close()


# A reply thread built so that RFC 5256 section 4's example answer comes out:
#   (2)(3 6 (4 23)(44 7 96))
# 3 is the thread's start, 6 replies to it, 4 and 44 reply to 6, 23 to 4, 7 to 44, 96 to 7.
# Message numbers are sequence numbers, so filler messages take the other positions.
THREAD_SPEC = {
    2: ("Lonely", None),
    3: ("Topic", None),
    6: ("Re: Topic", "<m3@x> <m6-missing-is-ok@x>"),
    4: ("Re: Topic", "<m3@x> <m6@x>"),
    23: ("Re: Topic", "<m3@x> <m6@x> <m4@x>"),
    44: ("Re: Topic", "<m6@x>"),
    7: ("Re: Topic", "<m3@x> <m6@x> <m44@x>"),
    96: ("Re: Topic", "<m7@x>"),
}


def thread_mailbox() -> list[bytes]:
    out = []
    for n in range(1, 97):
        subject, refs = THREAD_SPEC.get(n, (f"filler {n}", None))
        # sent dates: the thread members in the order 3, 6, 4, 23, 44, 7, 96
        rank = [3, 6, 4, 23, 44, 7, 96].index(n) if n in (3, 6, 4, 23, 44, 7, 96) else 0
        date = f"Tue, 2 Jan 2001 10:{rank:02d}:00 +0000"
        if n == 6:
            refs = "<m3@x>"
        out.append(msg(subject, date, mid=f"<m{n}@x>", refs=refs))
    return out


def test_thread_references_rfc5256_example(srv: RunningServer) -> None:
    m = imap(srv, account(srv, thread_mailbox()))
    try:
        members = "2,3,4,6,7,23,44,96"
        typ, data = m.thread("REFERENCES", "UTF-8", members)
        assert (typ, data) == ("OK", [b"(2)(3 6 (4 23)(44 7 96))"])
        # ORDEREDSUBJECT: one thread per base subject, all replies children of the first.
        typ, data = m.thread("ORDEREDSUBJECT", "UTF-8", members)
        assert (typ, data) == ("OK", [b"(2)(3 (6)(4)(23)(44)(7)(96))"])
        # UID THREAD answers in UIDs (here equal to sequence numbers)
        typ, data = m.uid("THREAD", "REFERENCES", "US-ASCII", "UID", "3,6")
        assert (typ, data) == ("OK", [b"(3 6)"])
        # nothing matches: "* THREAD" alone (RFC 5256 section 4, A284)
        assert m.thread("ORDEREDSUBJECT", "US-ASCII", "TEXT", '"gewp"') == ("OK", [b""])
        with pytest.raises(imaplib.IMAP4.error):
            m.thread("NOSUCHALGORITHM", "UTF-8", "ALL")
    finally:
        m.logout()


def test_thread_with_imapclient_and_missing_parent(srv: RunningServer) -> None:
    """Two replies to a message not in the mailbox share a dummy parent: ((1)(2)) -- the
    sibling form of RFC 5256 section 4; imapclient parses the answer."""
    address = account(srv, [
        msg("Re: gone", "Tue, 2 Jan 2001 10:00:00 +0000", mid="<a@x>", refs="<root@x>"),
        msg("Re: gone", "Tue, 2 Jan 2001 11:00:00 +0000", mid="<b@x>", irt="<root@x>"),
        msg("other", "Tue, 2 Jan 2001 09:00:00 +0000", mid="<c@x>"),
    ])
    c = imapclient.IMAPClient("127.0.0.1", port=srv.port("imaps"), ssl=True, ssl_context=srv.client_tls())
    try:
        c.login(address, PASSWORD)
        c.select_folder("INBOX")
        assert c.thread("REFERENCES") == ((3,), ((1,), (2,)))
        raw = c._raw_command_untagged(b"THREAD", [b"REFERENCES", b"UTF-8", b"ALL"], unpack=True)
        assert raw == b"(3)((1)(2))"
        assert c.sort(["REVERSE DATE"]) == [2, 1, 3]
    finally:
        c.logout()


def test_sort_keys_of_messages_stored_before_the_column_existed(srv: RunningServer) -> None:
    """Blobs without stored sort keys (delivered by an older postoffice) are parsed once on
    the first SORT and their keys written back."""
    address = account(srv, [msg("Re: zebra", "Wed, 1 Mar 2000 10:00:00 +0000"),
                            msg("antelope", "Wed, 1 Mar 2000 09:00:00 +0000")])
    acct = srv.call(srv.store.get_account(address))
    box = srv.call(srv.store.get_mailbox(acct.id, "INBOX"))

    def wipe(tx):  # type: ignore[no-untyped-def]
        tx.execute("UPDATE blobs SET sortkeys = NULL WHERE id IN (SELECT blob_id FROM messages WHERE mailbox_id = ?)",
                   (box.id,))
    srv.call(srv.store.db.write(wipe))
    m = imap(srv, address)
    try:
        assert m.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"2 1"])
    finally:
        m.logout()
    stored = srv.call(srv.store.db.read(lambda tx: tx.all(
        "SELECT b.sortkeys FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ?", (box.id,))))
    assert sorted(json.loads(row[0])[1] for row in stored) == ["ANTELOPE", "ZEBRA"]


def test_repeated_sort_and_thread_follow_every_change(srv: RunningServer) -> None:
    """Answers are reused while the mailbox is unchanged; any flag change, arrival or expunge
    (from this session or another) gives a fresh one."""
    address = account(srv, [msg("b", "Wed, 1 Mar 2000 10:00:00 +0000", mid="<1@x>"),
                            msg("a", "Wed, 1 Mar 2000 09:00:00 +0000", mid="<2@x>")])
    m, other = imap(srv, address), imap(srv, address)
    try:
        for _ in range(2):
            assert m.sort("(SUBJECT)", "UTF-8", "KEYWORD", "pick") == ("OK", [b""])
            assert m.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(2)(1)"])
        other.store("1", "+FLAGS", "pick")
        assert m.sort("(SUBJECT)", "UTF-8", "KEYWORD", "pick") == ("OK", [b"1"])
        m.store("2", "+FLAGS", "pick")
        assert m.sort("(SUBJECT)", "UTF-8", "KEYWORD", "pick") == ("OK", [b"2 1"])
        acct = srv.call(srv.store.get_account(address))
        srv.call(srv.store.deliver([(acct.id, "INBOX")], msg("Re: a", "Wed, 1 Mar 2000 11:00:00 +0000",
                                                            mid="<3@x>", refs="<2@x>")))
        m.noop()
        assert m.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(2 3)(1)"])
        other.store("2", "+FLAGS", "\\Deleted")
        other.expunge()
        m.noop()  # message 2 ("a") is gone; its reply (now 2) starts a thread of its own
        assert m.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(1)(2)"])
        # a clock-dependent key is never reused: YOUNGER counts from now
        assert m.sort("(SUBJECT)", "UTF-8", "YOUNGER", "3600") == ("OK", [b"2 1"])
    finally:
        m.logout()
        other.logout()


def test_sort_rows_are_kept_across_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large load saves the sort rows (store/snapshots.py); the first SORT after a restart
    reads them and only newer UIDs from the database; a damaged snapshot is not used."""
    from postoffice.servers.imap import sort
    from postoffice.store.snapshots import Snapshots

    monkeypatch.setattr(sort, "SNAPSHOT_AFTER", 2)
    data = tmp_path / "data"
    dates = [f"Mon, {day} Jan 2024 10:00:00 +0000" for day in (1, 2, 3, 4)]
    with RunningServer(data) as server:
        address = account(server, [msg(f"s{i}", d) for i, d in enumerate(dates)])
        m = imap(server, address)
        assert m.sort("(REVERSE DATE)", "UTF-8", "ALL")[1] == [b"4 3 2 1"]
        m.logout()
        snaps = Snapshots(data / "cache" / "sort")
        deadline = time.monotonic() + 10
        while not list(snaps.root.glob("[0-9]*")) and time.monotonic() < deadline:
            time.sleep(0.05)  # written in the background
        [path] = snaps.root.glob("[0-9]*")
    # The snapshot is a copy: make its sent dates run backwards, to see it is what gets read.
    raw = path.read_bytes()
    key, (last_uid, rows) = marshal.loads(raw.partition(b"\n")[2])
    rows = {uid: row[:2] + (-row[2],) + row[3:] for uid, row in rows.items()}
    snaps.write(int(path.name), key, (last_uid, rows))
    newest = msg("s5", "Mon, 1 Jan 2025 10:00:00 +0000")
    with RunningServer(data) as server:
        srv_account = server.call(server.store.get_account(address))
        server.call(server.store.deliver([(srv_account.id, "INBOX")], newest))
        m = imap(server, address)
        assert m.sort("(REVERSE DATE)", "UTF-8", "ALL")[1] == [b"5 1 2 3 4"]
        m.logout()
    path.write_bytes(raw[:-3])  # torn: the rows come from the database again
    with RunningServer(data) as server:
        m = imap(server, address)
        assert m.sort("(REVERSE DATE)", "UTF-8", "ALL")[1] == [b"5 4 3 2 1"]
        m.logout()
