"""IMAP conformance defects of issue 11 (part A), end to end against a real server: exact
responses over a raw socket (``Wire``) where the wire form is the point, and the stdlib
imaplib / imapclient where it is what a user's client sees. One server for the module;
each test uses its own account."""

from __future__ import annotations

import imaplib
import itertools
import re
from collections.abc import Iterator

import imapclient
import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imap11") / "data") as server:
        yield server


def new_account(srv: RunningServer, *messages: bytes) -> tuple[str, int]:
    address = f"i11a{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    for raw in messages:
        srv.call(srv.store.deliver([(account.id, "INBOX")], raw))
    return address, account.id


def client(srv: RunningServer, address: str) -> imapclient.IMAPClient:
    c = imapclient.IMAPClient("127.0.0.1", port=srv.port("imaps"), ssl=True, ssl_context=srv.client_tls(),
                              timeout=10)
    c.login(address, PASSWORD)
    return c


def imaps(srv: RunningServer, address: str) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    m.login(address, PASSWORD)
    return m


def wire(srv: RunningServer, address: str) -> Wire:
    w = Wire.tls(srv)
    w.login(address, PASSWORD)
    return w


def ok(lines: list[bytes], tag: bytes) -> list[bytes]:
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines[:-1]


# -- 7: ENVELOPE personal name from the legacy "user@domain (Real Name)" form ------------------

def test_envelope_name_from_trailing_comment(srv: RunningServer) -> None:
    address, _ = new_account(srv, b"From: real@example.org (Real Name)\r\nTo: a@example.com, b@example.com (Bee)\r\n"
                                  b"Subject: legacy\r\n\r\nbody\r\n")
    c = client(srv, address)
    c.select_folder("INBOX")
    env = c.fetch([1], ["ENVELOPE"])[1][b"ENVELOPE"]
    assert (env.from_[0].name, env.from_[0].mailbox, env.from_[0].host) == (b"Real Name", b"real", b"example.org")
    assert [(a.name, a.mailbox) for a in env.to] == [(None, b"a"), (b"Bee", b"b")]
    c.logout()


# -- 8: SEARCH FROM/TO/CC/BCC match the envelope addresses ---------------------------------------

def test_search_address_keys_use_envelope_addresses(srv: RunningServer) -> None:
    address, _ = new_account(
        srv,
        b"From: <@relay.example:alice@example.org>\r\nTo: bob(team-lead)@example.com\r\nSubject: one\r\n\r\nx\r\n",
        b"From: Carol <carol@example.net>\r\nTo: relay.example <list@example.com>\r\nSubject: two\r\n\r\nx\r\n",
    )
    m = imaps(srv, address)
    m.select("INBOX")
    assert m.search(None, "FROM", '"relay.example"') == ("OK", [b""])  # the route is not an address
    assert m.search(None, "HEADER", "FROM", '"relay.example"') == ("OK", [b"1"])
    assert m.search(None, "TO", '"team-lead"') == ("OK", [b""])  # a comment is not an address
    assert m.search(None, "TO", '"relay.example"') == ("OK", [b"2"])  # a display name is
    assert m.search(None, "FROM", "alice@example.org") == ("OK", [b"1"])
    assert m.search(None, "TO", '"bob@example.com"') == ("OK", [b"1"])
    m.logout()


def plain(n: int) -> bytes:
    return (f"From: s{n}@example.org\r\nTo: rcpt@example.com\r\nSubject: message {n}\r\n"
            f"Message-ID: <p{n}@example.org>\r\n\r\nbody {n}\r\n").encode()


# -- 3: HIGHESTMODSEQ when CONDSTORE is enabled on an already selected mailbox -----------------

@pytest.mark.parametrize("command", [b"FETCH 1 (MODSEQ)", b"SEARCH MODSEQ 1", b"FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
                                     b"ENABLE CONDSTORE", b"STATUS INBOX (HIGHESTMODSEQ)"])
def test_condstore_enabling_command_on_selected_mailbox_reports_highestmodseq(srv: RunningServer,
                                                                              command: bytes) -> None:
    """RFC 7162 3.1: the first CONDSTORE enabling command while a mailbox is selected is
    answered with ``* OK [HIGHESTMODSEQ n]`` too; later ones are not."""
    address, _ = new_account(srv, plain(1), plain(2))
    w = wire(srv, address)
    lines = ok(w.cmd(b"a1 SELECT INBOX"), b"a1")
    highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))  # type: ignore[union-attr]
    lines = ok(w.cmd(b"a2 " + command), b"a2")
    assert [line for line in lines if b"HIGHESTMODSEQ" in line and line.startswith(b"* OK")] == \
        [b"* OK [HIGHESTMODSEQ %d] Highest" % highest], lines
    lines = ok(w.cmd(b"a3 FETCH 1 (MODSEQ)"), b"a3")
    assert not any(b"* OK [HIGHESTMODSEQ" in line for line in lines), lines
    w.close()


# -- 4: ESEARCH MODSEQ of a lone MIN or MAX ------------------------------------------------------

def test_esearch_modseq_belongs_to_the_returned_messages(srv: RunningServer) -> None:
    """RFC 4731 3.2, RFC 7162 3.1.5: MODSEQ is the highest mod-sequence of the messages
    returned: with MIN alone that is the first match's, with MAX alone the last's."""
    address, _ = new_account(srv, plain(1), plain(2), plain(3))
    w = wire(srv, address)
    ok(w.cmd(b"a1 SELECT INBOX"), b"a1")
    ok(w.cmd(b"a2 STORE 1 +FLAGS (\\Flagged)"), b"a2")  # message 1 now has the highest modseq
    mod = {}
    for line in ok(w.cmd(b"a3 FETCH 1:3 (MODSEQ)"), b"a3")[1:]:  # after * OK [HIGHESTMODSEQ]
        m = re.match(rb"\* (\d) FETCH \(MODSEQ \((\d+)\)\)", line)
        assert m, line
        mod[int(m.group(1))] = int(m.group(2))
    assert mod[1] > mod[3] > mod[2]
    esearch = {}
    for options, tag in ((b"MIN", b"b1"), (b"MAX", b"b2"), (b"MIN MAX", b"b3"), (b"COUNT", b"b4"),
                         (b"ALL", b"b5")):
        lines = ok(w.cmd(tag + b" SEARCH RETURN (" + options + b") MODSEQ 1"), tag)
        esearch[options] = lines[0]
    assert esearch[b"MIN"] == b'* ESEARCH (TAG "b1") MIN 1 MODSEQ %d' % mod[1]
    assert esearch[b"MAX"] == b'* ESEARCH (TAG "b2") MAX 3 MODSEQ %d' % mod[3]
    assert esearch[b"MIN MAX"] == b'* ESEARCH (TAG "b3") MIN 1 MAX 3 MODSEQ %d' % mod[1]
    assert esearch[b"COUNT"] == b'* ESEARCH (TAG "b4") COUNT 3 MODSEQ %d' % mod[1]
    lines = ok(w.cmd(b"c1 UID SEARCH RETURN (MAX) MODSEQ 1 2:3"), b"c1")  # uid 2 vs 3: 3 has the higher modseq
    assert lines[0] == b'* ESEARCH (TAG "c1") UID MAX 3 MODSEQ %d' % mod[3], lines
    lines = ok(w.cmd(b"c2 SEARCH RETURN (MIN) MODSEQ 1 2:3"), b"c2")
    assert lines[0] == b'* ESEARCH (TAG "c2") MIN 2 MODSEQ %d' % mod[2], lines
    w.close()


# -- 5: BINARY of a quoted-printable part (RFC 2045 6.7, RFC 3516 4.2) ---------------------------

def test_binary_of_quoted_printable_part(srv: RunningServer) -> None:
    address, _ = new_account(srv, b"From: a@example.org\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
                                  b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
                                  b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                  b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                                  b"Caf=C3=A9 with trailing blanks   \r\nsoft = \r\nbreak\r\n--b--\r\n")
    m = imaps(srv, address)
    m.select("INBOX")
    typ, data = m.fetch("1", "(BINARY.PEEK[1] BINARY.SIZE[1])")
    assert typ == "OK"
    assert data[0][1] == "Café with trailing blanks\r\nsoft break".encode()
    assert re.search(rb"BINARY.SIZE\[1\] %d" % len("Café with trailing blanks\r\nsoft break".encode()),
                     b"".join(x if isinstance(x, bytes) else b"".join(x) for x in data))
    m.logout()


# -- 9: SENTBEFORE/SENTON/SENTSINCE use the Date: header's own calendar date ------------------

def test_sent_date_keys_use_the_date_headers_own_day(srv: RunningServer) -> None:
    """RFC 3501 6.4.4: "disregarding time and timezone": 23:30 -0500 on 1 Feb is 1 Feb
    (although it is 2 Feb in UTC); 00:15 +1400 on 2 Feb is 2 Feb (1 Feb in UTC)."""
    address, _ = new_account(srv, b"From: a@example.org\r\nDate: Thu, 01 Feb 2024 23:30:00 -0500\r\n\r\nx\r\n",
                             b"From: b@example.org\r\nDate: Fri, 02 Feb 2024 00:15:00 +1400\r\n\r\nx\r\n")
    m = imaps(srv, address)
    m.select("INBOX")
    assert m.search(None, "SENTON", "1-Feb-2024") == ("OK", [b"1"])
    assert m.search(None, "SENTON", "2-Feb-2024") == ("OK", [b"2"])
    assert m.search(None, "SENTBEFORE", "2-Feb-2024") == ("OK", [b"1"])
    assert m.search(None, "SENTSINCE", "2-Feb-2024") == ("OK", [b"2"])
    m.logout()


# -- 1: \Recent (RFC 3501 2.3.2, 6.3.1, 7.3.2) --------------------------------------------------

def flags_of(lines: list[bytes]) -> dict[int, bytes]:
    out = {}
    for line in lines:
        m = re.match(rb"\* (\d+) FETCH \(.*FLAGS (\([^)]*\))", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def test_recent_belongs_to_exactly_one_session(srv: RunningServer) -> None:
    address, account_id = new_account(srv, plain(1), plain(2))
    a, b = wire(srv, address), wire(srv, address)
    assert b"* 2 RECENT" in ok(a.cmd(b"a1 SELECT INBOX"), b"a1")
    assert b"* 0 RECENT" in ok(b.cmd(b"b1 SELECT INBOX"), b"b1")  # a was notified first
    assert flags_of(ok(a.cmd(b"a2 FETCH 1:* FLAGS"), b"a2")) == {1: b"(\\Recent)", 2: b"(\\Recent)"}
    assert flags_of(ok(b.cmd(b"b2 FETCH 1:* FLAGS"), b"b2")) == {1: b"()", 2: b"()"}
    assert ok(a.cmd(b"a3 SEARCH RECENT"), b"a3") == [b"* SEARCH 1 2"]
    assert ok(b.cmd(b"b3 SEARCH RECENT"), b"b3") == [b"* SEARCH"]
    assert ok(b.cmd(b"b4 SEARCH OLD"), b"b4") == [b"* SEARCH 1 2"]
    ok(a.cmd(b"a4 STORE 1 +FLAGS.SILENT (\\Seen)"), b"a4")
    assert ok(a.cmd(b"a5 SEARCH NEW"), b"a5") == [b"* SEARCH 2"]  # NEW = RECENT UNSEEN
    assert ok(a.cmd(b"a6 SEARCH OLD"), b"a6") == [b"* SEARCH"]
    # new mail: the first session to learn of it gets it as recent, and says so with RECENT
    srv.call(srv.store.deliver([(account_id, "INBOX")], plain(3)))
    assert ok(b.cmd(b"b5 NOOP"), b"b5") == [b"* 3 EXISTS", b"* 1 RECENT", b"* 1 FETCH (UID 1 FLAGS (\\Seen))"]
    assert ok(a.cmd(b"a7 NOOP"), b"a7") == [b"* 3 EXISTS", b"* 2 RECENT"]
    assert flags_of(ok(b.cmd(b"b6 FETCH 3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"), b"b6")) == {3: b"(\\Recent)"}
    assert flags_of(ok(a.cmd(b"a8 UID FETCH 3 FLAGS"), b"a8")) == {3: b"()"}
    # \Recent lasts for the session: a new session sees none of them
    c = wire(srv, address)
    assert b"* 0 RECENT" in ok(c.cmd(b"c1 SELECT INBOX"), b"c1")
    for w in (a, b, c):
        w.close()


def test_a_message_appended_to_the_selected_mailbox_is_recent_for_its_appender(srv: RunningServer) -> None:
    address, _ = new_account(srv, plain(1))
    a, b = wire(srv, address), wire(srv, address)
    assert b"* 1 RECENT" in ok(a.cmd(b"a1 SELECT INBOX"), b"a1")
    assert b"* 0 RECENT" in ok(b.cmd(b"b1 SELECT INBOX"), b"b1")
    message = plain(2)
    lines = ok(a.cmd(b"a2 APPEND INBOX {%d+}\r\n%s" % (len(message), message), b"a2"), b"a2")
    assert lines == [b"* 2 EXISTS", b"* 2 RECENT"]  # told first, in the APPEND's own answer
    assert ok(b.cmd(b"b2 NOOP"), b"b2") == [b"* 2 EXISTS", b"* 0 RECENT"]
    assert flags_of(ok(a.cmd(b"a3 FETCH 2 FLAGS"), b"a3")) == {2: b"(\\Recent)"}
    assert flags_of(ok(b.cmd(b"b3 FETCH 2 FLAGS"), b"b3")) == {2: b"()"}
    c = wire(srv, address)  # claimed in the store, not only in a's memory
    assert ok(c.cmd(b"c1 STATUS INBOX (RECENT)"), b"c1") == [b"* STATUS INBOX (RECENT 0)"]
    for w in (a, b, c):
        w.close()


def test_examine_and_status_do_not_claim_recent(srv: RunningServer) -> None:
    address, _ = new_account(srv, plain(1), plain(2))
    m = imaps(srv, address)
    assert m.status("INBOX", "(RECENT)")[1] == [b"INBOX (RECENT 2)"]
    m.select("INBOX", readonly=True)
    assert m.response("RECENT") == ("RECENT", [b"2"])
    assert m.search(None, "RECENT") == ("OK", [b"1 2"])
    assert b"\\Recent" in m.fetch("1", "(FLAGS)")[1][0]
    m.close()
    assert m.status("INBOX", "(RECENT)")[1] == [b"INBOX (RECENT 2)"]  # EXAMINE claimed nothing
    m.select("INBOX")
    assert m.response("RECENT") == ("RECENT", [b"2"])
    m.close()
    assert m.status("INBOX", "(RECENT)")[1] == [b"INBOX (RECENT 0)"]
    m.select("INBOX")
    assert m.response("RECENT") == ("RECENT", [b"0"])
    m.logout()


def test_imap4rev2_sessions_get_no_recent(srv: RunningServer) -> None:
    address, account_id = new_account(srv, plain(1))
    w = wire(srv, address)
    ok(w.cmd(b"a1 ENABLE IMAP4rev2"), b"a1")
    lines = ok(w.cmd(b"a2 SELECT INBOX"), b"a2")
    assert not any(b"RECENT" in line for line in lines), lines
    srv.call(srv.store.deliver([(account_id, "INBOX")], plain(2)))
    assert ok(w.cmd(b"a3 NOOP"), b"a3") == [b"* 2 EXISTS"]
    assert flags_of(ok(w.cmd(b"a4 FETCH 1:* FLAGS"), b"a4")) == {1: b"()", 2: b"()"}
    # and it claimed nothing: an IMAP4rev1 session is still the first to see both
    c = client(srv, address)
    assert c.select_folder("INBOX")[b"RECENT"] == 2
    c.logout()
    w.close()


# -- 10: subscriptions are their own list (RFC 3501 6.3.6-6.3.9, RFC 5258 3.5) ------------------

def listed(lines: list[bytes]) -> list[tuple[str, set[str], str]]:
    """(name, attributes without \\HasChildren/\\HasNoChildren, extended data) per LIST/LSUB line."""
    out = []
    for line in lines:
        m = re.fullmatch(rb'\* (?:LIST|LSUB) \(([^)]*)\) "/" "?([^"]*?)"?( \(.*\))?', line)
        assert m, line
        attrs = {a for a in m.group(1).decode().split() if a not in ("\\HasChildren", "\\HasNoChildren")}
        out.append((m.group(2).decode(), attrs, (m.group(3) or b"").decode().strip()))
    return out


CHILDINFO = '("CHILDINFO" ("SUBSCRIBED"))'


def test_rfc5258_example_9_recursivematch(srv: RunningServer) -> None:
    """RFC 5258 section 5, example 9: CHILDINFO only where a subscribed descendant does not
    match the pattern itself."""
    address, _ = new_account(srv)
    w = wire(srv, address)
    for name in (b"Foo2/Bar1", b"Foo2/Bar2", b"Baz2/Bar2", b"Baz2/Bar22", b"Baz2/Bar222", b"eps2/mamba",
                 b"qux2/bar2"):
        ok(w.cmd(b"c CREATE " + name), b"c")  # creates Foo2, Baz2, eps2, qux2 too
    for name in (b"Foo2/Bar1", b"Foo2/Bar2", b"Baz2/Bar2", b"Baz2/Bar22", b"Baz2/Bar222", b"eps2", b"eps2/mamba",
                 b"qux2/bar2"):
        ok(w.cmd(b"s SUBSCRIBE " + name), b"s")
    assert listed(ok(w.cmd(b'd03 LIST (RECURSIVEMATCH SUBSCRIBED) "" "*2"'), b"d03")) == [
        ("Baz2/Bar2", {"\\Subscribed"}, ""),
        ("Baz2/Bar22", {"\\Subscribed"}, ""),
        ("Baz2/Bar222", {"\\Subscribed"}, ""),
        ("Foo2", set(), CHILDINFO),
        ("Foo2/Bar2", {"\\Subscribed"}, ""),
        ("eps2", {"\\Subscribed"}, CHILDINFO),
        ("qux2/bar2", {"\\Subscribed"}, ""),
    ]
    assert listed(ok(w.cmd(b'd04 LIST (SUBSCRIBED) "" "*2"'), b"d04")) == [
        ("Baz2/Bar2", {"\\Subscribed"}, ""), ("Baz2/Bar22", {"\\Subscribed"}, ""),
        ("Baz2/Bar222", {"\\Subscribed"}, ""), ("Foo2/Bar2", {"\\Subscribed"}, ""),
        ("eps2", {"\\Subscribed"}, ""), ("qux2/bar2", {"\\Subscribed"}, ""),
    ]
    w.close()


def test_subscriptions_outlive_mailboxes_and_create_does_not_subscribe(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    w = wire(srv, address)
    # a new address starts with its default folders subscribed
    assert [n for n, _, _ in listed(ok(w.cmd(b'a LSUB "" "*"'), b"a"))] == \
        ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    ok(w.cmd(b"b CREATE Fruit/Peach"), b"b")
    assert listed(ok(w.cmd(b'c LSUB "" "Fruit*"'), b"c")) == []  # CREATE does not subscribe
    ok(w.cmd(b"d SUBSCRIBE Fruit/Peach"), b"d")
    # LSUB "%" stops at the unsubscribed parent: \Noselect (RFC 3501 6.3.9)
    assert listed(ok(w.cmd(b'e LSUB "" "F%"'), b"e")) == [("Fruit", {"\\Noselect"}, "")]
    ok(w.cmd(b"f DELETE Fruit/Peach"), b"f")
    ok(w.cmd(b"g DELETE Fruit"), b"g")
    # DELETE keeps the subscription (RFC 3501 6.3.6: never removed unilaterally)
    assert listed(ok(w.cmd(b'h LSUB "" "Fruit/*"'), b"h")) == [("Fruit/Peach", set(), "")]
    assert listed(ok(w.cmd(b'i LIST (SUBSCRIBED) "" "Fruit*"'), b"i")) == \
        [("Fruit/Peach", {"\\NonExistent", "\\Subscribed"}, "")]
    assert listed(ok(w.cmd(b'j LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'), b"j"))[2] == \
        ("Fruit", {"\\NonExistent"}, CHILDINFO)
    assert not any(n.startswith("Fruit") for n, _, _ in listed(ok(w.cmd(b'k LIST "" "*"'), b"k")))
    ok(w.cmd(b"l UNSUBSCRIBE Fruit/Peach"), b"l")  # a deleted name can be unsubscribed
    assert listed(ok(w.cmd(b'm LSUB "" "*Peach"'), b"m")) == []
    assert w.cmd(b"n SUBSCRIBE Nowhere")[-1].startswith(b"n NO [NONEXISTENT]")
    w.close()
    # what imaplib shows a user
    m = imaps(srv, address)
    m.create("Work")
    assert not any(b'"Work"' in line for line in m.lsub()[1])
    m.subscribe("Work")
    assert any(line.endswith(b'"Work"') for line in m.lsub()[1])
    m.delete("Work")
    assert any(line.endswith(b'"Work"') for line in m.lsub()[1])
    m.logout()


# -- 2: FLAGS / PERMANENTFLAGS announce a new keyword before a FETCH shows it (RFC 3501 7.2.6) ---

def test_new_keyword_is_announced_before_fetch_shows_it(srv: RunningServer) -> None:
    address, account_id = new_account(srv, plain(1), plain(2))
    a, b = wire(srv, address), wire(srv, address)
    ok(a.cmd(b"a1 SELECT INBOX"), b"a1")
    ok(b.cmd(b"b1 SELECT INBOX"), b"b1")
    # STORE: the FLAGS lines come first, then the FETCH
    lines = ok(a.cmd(b"a2 STORE 1 +FLAGS ($Important)"), b"a2")
    assert lines[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)", lines
    assert lines[1].startswith(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important \\*)]")
    assert lines[2].startswith(b"* 1 FETCH (FLAGS (") and b"$Important" in lines[2]
    assert ok(a.cmd(b"a3 STORE 2 +FLAGS ($Important)"), b"a3")[0].startswith(b"* 2 FETCH")  # known now
    # another session's change: announced in the update, before the FETCH
    lines = ok(b.cmd(b"b2 NOOP"), b"b2")
    assert lines[0].startswith(b"* FLAGS (") and b"$Important" in lines[0], lines
    assert [line[:10] for line in lines[2:]] == [b"* 1 FETCH ", b"* 2 FETCH "], lines
    # a FETCH right after another session's change announces it first too
    ok(a.cmd(b"a4 STORE 2 +FLAGS (Later)"), b"a4")
    lines = ok(b.cmd(b"b2b FETCH 2 (FLAGS)"), b"b2b")
    assert lines[0].startswith(b"* FLAGS (") and b"Later" in lines[0], lines
    assert next(i for i, line in enumerate(lines) if b"FETCH" in line) > 0
    # COPY into the selected mailbox brings a keyword along
    w = wire(srv, address)
    ok(w.cmd(b"w1 CREATE Other"), b"w1")
    ok(w.cmd(b"w2 APPEND Other (Project-X) {10+}\r\nSubject: x"), b"w2")
    ok(w.cmd(b"w3 SELECT Other"), b"w3")
    ok(w.cmd(b"w4 COPY 1 INBOX"), b"w4")
    lines = ok(b.cmd(b"b3 NOOP"), b"b3")
    assert lines[0].startswith(b"* FLAGS (") and b"Project-X" in lines[0], lines
    assert b"* 3 EXISTS" in lines
    assert b"Project-X" in ok(b.cmd(b"b4 FETCH 3 (FLAGS)"), b"b4")[0]
    for x in (a, b, w):
        x.close()


# -- 6: APPEND literal8 keeps binary parts exactly; BODY[] never carries NUL (RFC 3516 4.4, 6) ----

BLOB = bytes(range(256)) + b"bare\nLF, bare\rCR, NUL\x00 and CRLF\r\n" + bytes(range(255, -1, -1))


def binary_message() -> bytes:
    return (b"From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=xx\r\n\r\n"
            b"--xx\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            b"--xx\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            + BLOB + b"\r\n--xx--\r\n")


def literal_of(line: bytes) -> bytes:
    m = re.search(rb"~?\{(\d+)\}\r\n", line)
    assert m, line
    return line[m.end():m.end() + int(m.group(1))]


def test_append_literal8_binary_part_is_kept_exactly(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    w = wire(srv, address)
    data = binary_message()
    lines = w.cmd(b"a1 APPEND INBOX ~{%d+}\r\n" % len(data) + data)
    assert lines[-1].startswith(b"a1 OK [APPENDUID"), lines
    ok(w.cmd(b"a2 SELECT INBOX"), b"a2")
    body = ok(w.cmd(b"a3 FETCH 1 BODY.PEEK[]"), b"a3")[0]
    assert b"~{" not in body.split(b"\r\n")[0]  # an ordinary literal ...
    assert b"\x00" not in literal_of(body)  # ... without NUL (RFC 3516 section 6)
    assert ok(w.cmd(b"a4 FETCH 1 BINARY.PEEK[2]"), b"a4")[0].startswith(b"* 1 FETCH (BINARY[2] ~{%d}" % len(BLOB))
    assert literal_of(ok(w.cmd(b"a5 FETCH 1 BINARY.PEEK[2]"), b"a5")[0]) == BLOB
    assert b"BINARY.SIZE[2] %d" % len(BLOB) in ok(w.cmd(b"a6 FETCH 1 BINARY.SIZE[2]"), b"a6")[0]
    structure = ok(w.cmd(b"a7 FETCH 1 BODYSTRUCTURE"), b"a7")[0]
    assert b'("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" ' in structure, structure
    assert literal_of(ok(w.cmd(b"a8 FETCH 1 BINARY.PEEK[1]"), b"a8")[0]) == b"see attachment"
    w.close()


def test_idle_reports_recent_with_new_mail(srv: RunningServer) -> None:
    """RFC 3501 7.3.2 in IDLE: the new message is this (first) session's \\Recent."""
    address, account_id = new_account(srv, plain(1))
    c = client(srv, address)
    assert c.select_folder("INBOX")[b"RECENT"] == 1
    c.idle()
    srv.call(srv.store.deliver([(account_id, "INBOX")], plain(2)))
    seen: list = []
    for _ in range(10):
        seen += c.idle_check(timeout=1)
        if (2, b"RECENT") in seen:
            break
    c.idle_done()
    assert (2, b"EXISTS") in seen and (2, b"RECENT") in seen, seen
    assert c.search(["RECENT"]) == [1, 2]
    c.logout()
