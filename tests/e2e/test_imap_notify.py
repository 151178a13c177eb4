"""NOTIFY (RFC 5465) end to end over TLS: one session watches (NOTIFY SET ...) while another
changes things; what the watcher is told arrives without it sending a command. The commands
are the RFC's own forms (section 3.1, 5, 6; the event lists parenthesised as its grammar in
section 8 says)."""

from __future__ import annotations

import itertools
import re
import smtplib
import socket
from collections.abc import Iterator

import pytest

from postoffice.servers.imap import notify
from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
MESSAGE = b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: pushed\r\n\r\nhello\r\n"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapnotify") / "data") as server:
        yield server


class Pair:
    """A watcher and an actor logged in to the same account."""

    def __init__(self, srv: RunningServer) -> None:
        self.address = f"notify{next(_numbers)}@example.com"
        srv.add_account(self.address, PASSWORD)
        self.watcher = self._login(srv)
        self.actor = self._login(srv)

    def _login(self, srv: RunningServer) -> Wire:
        w = Wire.tls(srv)
        ok(w.cmd(b"L LOGIN %s %s" % (self.address.encode(), PASSWORD.encode())), b"L")
        return w

    def close(self) -> None:
        self.watcher.close()
        self.actor.close()


@pytest.fixture
def pair(srv: RunningServer) -> Iterator[Pair]:
    p = Pair(srv)
    yield p
    p.close()


def ok(lines: list[bytes], tag: bytes) -> list[bytes]:
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines[:-1]


def append(wire: Wire, mailbox: bytes, tag: bytes = b"ap", message: bytes = MESSAGE) -> None:
    wire.send(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag, mailbox, len(message), message))
    ok(wire.until(tag), tag)


def unsolicited(wire: Wire, pattern: bytes, timeout: float = 5) -> list[bytes]:
    """Lines the server sends without being asked, up to the first matching ``pattern``."""
    wire.sock.settimeout(timeout)
    lines = []
    try:
        while True:
            line = wire.line()
            assert line, f"connection closed; got {lines}"
            lines.append(line)
            if re.search(pattern, line):
                return lines
    except (TimeoutError, socket.timeout):
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got {lines}") from None
    finally:
        wire.sock.settimeout(10)


def silent(wire: Wire, seconds: float = 0.5) -> None:
    """Nothing arrives unasked within ``seconds``."""
    wire.sock.settimeout(seconds)
    try:
        data = wire.sock.recv(65536)
    except (TimeoutError, socket.timeout):
        return
    finally:
        wire.sock.settimeout(10)
    raise AssertionError(f"unexpected data: {data!r}")


def test_capability_grammar_and_badevent(pair: Pair) -> None:
    w = pair.watcher
    assert b" NOTIFY" in w.cmd(b"c CAPABILITY")[0]
    for bad in (b"NOTIFY", b"NOTIFY bogus", b"NOTIFY SET", b"NOTIFY SET STATUS",
                b"NOTIFY SET (personal MessageNew)",  # the event list needs its parentheses
                b"NOTIFY SET (unknownfilter (MessageNew MessageExpunge))",
                b"NOTIFY SET (selected (MessageNew))",  # section 5: MessageNew with MessageExpunge
                b"NOTIFY SET (personal (FlagChange))",  # and FlagChange needs both
                b"NOTIFY SET (selected (MailboxName))",  # section 6.1: message events only
                b"NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))"):
        assert w.cmd(b"b " + bad)[-1].startswith(b"b BAD"), bad
    # section 3.1: an unsupported event is a NO with BADEVENT listing what is supported
    supported = b"(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange MailboxMetadataChange " \
                b"ServerMetadataChange)"
    for event in (b"MessageNew MessageExpunge AnnotationChange", b"XFutureEvent", b"QuotaExceeded"):
        line = w.cmd(b"n NOTIFY SET (personal (%s))" % event)[-1]
        assert line.startswith(b"n NO [BADEVENT " + supported + b"]"), line
    ok(w.cmd(b"o NOTIFY SET (inboxes NONE)"), b"o")
    ok(w.cmd(b"o2 notify set (selected-delayed (messagenew messageexpunge flagchange)) (personal NONE)"), b"o2")
    ok(w.cmd(b"z NOTIFY NONE"), b"z")


def test_new_mail_elsewhere_gives_status(pair: Pair) -> None:
    w, a = pair.watcher, pair.actor
    ok(a.cmd(b"c1 CREATE Lists/Lemonade"), b"c1")
    ok(a.cmd(b"c2 CREATE Other"), b"c2")
    # section 3.1: with STATUS, a STATUS for each watched mailbox before the tagged OK
    lines = ok(w.cmd(b"a NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) "
                     b"MessageExpunge)) (subtree Lists (MessageNew MessageExpunge))"), b"a")
    statuses = sorted(line for line in lines if line.startswith(b"* STATUS"))
    assert [s.split(b" (")[0] for s in statuses] == [b'* STATUS "Lists"', b'* STATUS "Lists/Lemonade"'], lines
    assert re.fullmatch(rb"\* STATUS \"Lists/Lemonade\" \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0\)", statuses[1])
    append(a, b"Other")  # not watched
    append(a, b"Lists/Lemonade")
    got = unsolicited(w, rb"^\* STATUS")
    assert re.fullmatch(rb"\* STATUS \"Lists/Lemonade\" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)", got[-1]), got
    assert len(got) == 1, got
    # an expunge there too (section 5.3)
    ok(a.cmd(b"s SELECT Lists/Lemonade"), b"s")
    ok(a.cmd(b"x STORE 1 +FLAGS.SILENT (\\Deleted)"), b"x")
    ok(a.cmd(b"e EXPUNGE"), b"e")
    got = unsolicited(w, rb"^\* STATUS")
    assert re.fullmatch(rb"\* STATUS \"Lists/Lemonade\" \(MESSAGES 0 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 0\)", got[-1]), got
    # CONDSTORE on: HIGHESTMODSEQ too (section 5.2)
    ok(w.cmd(b"en ENABLE CONDSTORE"), b"en")
    append(a, b"Lists")
    got = unsolicited(w, rb"^\* STATUS")
    assert re.fullmatch(rb"\* STATUS \"Lists\" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1 HIGHESTMODSEQ \d+\)",
                        got[-1]), got
    # NOTIFY NONE: no more
    ok(w.cmd(b"z NOTIFY NONE"), b"z")
    append(a, b"Lists")
    silent(w)
    assert ok(w.cmd(b"n NOOP"), b"n") == []


def test_flagchange_statuses_carry_highestmodseq(pair: Pair) -> None:
    """imaptest's notify script: where FlagChange is asked for, STATUS has HIGHESTMODSEQ even
    without CONDSTORE (as Dovecot): a flag change elsewhere shows in nothing else."""
    w, a = pair.watcher, pair.actor
    ok(a.cmd(b"c1 CREATE Flagged"), b"c1")
    append(a, b"Flagged")
    lines = ok(w.cmd(b"a NOTIFY SET STATUS (mailboxes Flagged (MessageNew MessageExpunge FlagChange))"), b"a")
    assert re.fullmatch(rb'\* STATUS "Flagged" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1 HIGHESTMODSEQ \d+\)',
                        lines[0]), lines
    ok(a.cmd(b"s SELECT Flagged"), b"s")
    ok(a.cmd(b"x STORE 1 +FLAGS.SILENT (\\Flagged)"), b"x")
    got = unsolicited(w, rb"^\* STATUS")
    assert re.fullmatch(rb'\* STATUS "Flagged" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1 HIGHESTMODSEQ \d+\)',
                        got[-1]), got
    # without FlagChange: as before
    lines = ok(w.cmd(b"b NOTIFY SET STATUS (mailboxes Flagged (MessageNew MessageExpunge))"), b"b")
    assert re.fullmatch(rb'\* STATUS "Flagged" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)', lines[0]), lines
    ok(w.cmd(b"z NOTIFY NONE"), b"z")


def test_own_changes_are_not_news(pair: Pair) -> None:
    w = pair.watcher
    ok(w.cmd(b"a NOTIFY SET (personal (MessageNew MessageExpunge MailboxName SubscriptionChange))"), b"a")
    assert ok(w.cmd(b"c CREATE Mine"), b"c") == []
    w.send(b"ap APPEND Mine {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
    assert ok(w.until(b"ap"), b"ap") == []
    assert ok(w.cmd(b"s SUBSCRIBE Mine"), b"s") == []
    silent(w)


def test_selected_mailbox_exists_fetch_flags_expunge(pair: Pair) -> None:
    w, a = pair.watcher, pair.actor
    append(a, b"INBOX")
    ok(w.cmd(b"en ENABLE IMAP4rev2"), b"en")  # no RECENT among the responses
    ok(w.cmd(b"s SELECT INBOX"), b"s")
    ok(w.cmd(b"a NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge "
             b"FlagChange)) (personal (MessageNew MessageExpunge))"), b"a")
    append(a, b"INBOX")
    # section 5.2: EXISTS, then FETCH with what MessageNew asked for, no command needed
    got = unsolicited(w, rb"^\* 2 FETCH")
    assert got[0] == b"* 2 EXISTS", got
    assert got[-1] == b"* 2 FETCH (UID 2 BODY[HEADER.FIELDS (Subject)] {19}\r\nSubject: pushed\r\n\r\n)", got
    # no \Seen from the notification; no STATUS for the selected mailbox (section 6.1)
    lines = ok(w.cmd(b"f UID FETCH 2 FLAGS"), b"f")
    assert lines == [b"* 2 FETCH (UID 2 FLAGS ())"], lines
    # section 5.1: a flag change made elsewhere
    ok(a.cmd(b"as SELECT INBOX"), b"as")
    ok(a.cmd(b"st STORE 1 +FLAGS.SILENT (\\Flagged)"), b"st")
    got = unsolicited(w, rb"FETCH")
    assert got == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged))"], got
    # section 5.3: the expunge at once, with no command in progress
    ok(a.cmd(b"d STORE 1 +FLAGS.SILENT (\\Deleted)"), b"d")
    ok(a.cmd(b"e EXPUNGE"), b"e")
    got = unsolicited(w, rb"EXPUNGE")
    assert got[-1] == b"* 1 EXPUNGE", got
    assert ok(w.cmd(b"n NOOP"), b"n") == []
    # its own APPEND: EXISTS, but no FETCH of what it just sent (section 5.2)
    w.send(b"ap APPEND INBOX {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
    assert ok(w.until(b"ap"), b"ap") == [b"* 2 EXISTS"]


def test_selected_delayed_keeps_expunges_for_a_command(pair: Pair) -> None:
    w, a = pair.watcher, pair.actor
    append(a, b"INBOX")
    append(a, b"INBOX")
    ok(w.cmd(b"en ENABLE IMAP4rev2"), b"en")
    ok(w.cmd(b"s SELECT INBOX"), b"s")
    ok(w.cmd(b"a NOTIFY SET (selected-delayed (MessageNew MessageExpunge FlagChange))"), b"a")
    ok(a.cmd(b"as SELECT INBOX"), b"as")
    ok(a.cmd(b"d STORE 1 +FLAGS.SILENT (\\Deleted)"), b"d")
    ok(a.cmd(b"e EXPUNGE"), b"e")
    append(a, b"INBOX")
    got = unsolicited(w, rb"EXISTS")  # new mail is told at once, the expunge is not
    assert got[-1] == b"* 3 EXISTS" and not any(b"EXPUNGE" in line for line in got), got
    silent(w)
    # not during FETCH (RFC 9051 7.5.1); the message's data still (RFC 2180 4.1.1)
    assert ok(w.cmd(b"f FETCH 1 UID"), b"f") == [b"* 1 FETCH (UID 1)"]
    assert b"* 1 EXPUNGE" in ok(w.cmd(b"n NOOP"), b"n")


def test_mailbox_and_subscription_changes_give_list(pair: Pair) -> None:
    w, a = pair.watcher, pair.actor
    ok(w.cmd(b"a NOTIFY SET (personal (MailboxName SubscriptionChange))"), b"a")
    ok(a.cmd(b"c CREATE Projects/Alpha"), b"c")  # the parent is created too
    got = unsolicited(w, rb"Alpha")
    assert got == [b'* LIST () "/" "Projects"', b'* LIST () "/" "Projects/Alpha"'], got
    ok(a.cmd(b"r RENAME Projects Work"), b"r")  # section 5.4: OLDNAME, for the child too
    got = unsolicited(w, rb"Work/Alpha")
    assert got == [b'* LIST () "/" "Work" ("OLDNAME" ("Projects"))',
                   b'* LIST () "/" "Work/Alpha" ("OLDNAME" ("Projects/Alpha"))'], got
    ok(a.cmd(b"d DELETE Work/Alpha"), b"d")
    assert unsolicited(w, rb"Alpha") == [b'* LIST (\\NonExistent) "/" "Work/Alpha"']
    ok(a.cmd(b"s SUBSCRIBE Work"), b"s")  # section 5.5
    assert unsolicited(w, rb"Work") == [b'* LIST (\\Subscribed) "/" "Work"']
    ok(a.cmd(b"u UNSUBSCRIBE Work"), b"u")
    assert unsolicited(w, rb"Work") == [b'* LIST () "/" "Work"']


def test_metadata_changes(pair: Pair) -> None:
    w, a = pair.watcher, pair.actor
    ok(w.cmd(b"a NOTIFY SET (personal (MailboxMetadataChange ServerMetadataChange))"), b"a")
    ok(a.cmd(b'm SETMETADATA INBOX (/private/comment "hi")'), b"m")
    assert unsolicited(w, rb"METADATA") == [b"* METADATA INBOX /private/comment"]
    ok(a.cmd(b'm2 SETMETADATA "" (/private/vendor/x "1")'), b"m2")
    assert unsolicited(w, rb"METADATA") == [b'* METADATA "" /private/vendor/x']


def test_idle_delivers_what_notify_asked_for(pair: Pair) -> None:
    w, a = pair.watcher, pair.actor
    ok(a.cmd(b"c CREATE Lists"), b"c")
    ok(w.cmd(b"s SELECT INBOX"), b"s")
    ok(w.cmd(b"a NOTIFY SET (mailboxes Lists (MessageNew MessageExpunge))"), b"a")
    w.send(b"i IDLE\r\n")
    assert w.line().startswith(b"+ ")
    append(a, b"Lists")
    got = unsolicited(w, rb"STATUS")  # section 4: in IDLE, what NOTIFY asked for
    assert got[-1].startswith(b'* STATUS "Lists" (MESSAGES 1 UIDNEXT 2 '), got
    append(a, b"INBOX")  # and the selected mailbox, as IDLE always does
    assert unsolicited(w, rb"EXISTS")[-1] == b"* 1 EXISTS"
    w.send(b"DONE\r\n")
    ok(w.until(b"i"), b"i")


def test_overflow_turns_notify_off(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Section 5.8: a client that falls behind is told NOTIFICATIONOVERFLOW and hears no more.
    The watcher is kept busy with an APPEND whose literal it holds back, while five messages
    arrive elsewhere; its queue holds three."""
    monkeypatch.setattr(notify, "QUEUE_LIMIT", 3)
    w, a = pair.watcher, pair.actor
    ok(a.cmd(b"c CREATE Lists"), b"c")
    ok(w.cmd(b"a NOTIFY SET (personal (MessageNew MessageExpunge))"), b"a")
    w.send(b"ap APPEND INBOX {%d}\r\n" % len(MESSAGE))
    assert w.line().startswith(b"+ ")
    for n in range(5):
        append(a, b"Lists", b"x%d" % n)
    w.send(MESSAGE + b"\r\n")
    lines = ok(w.until(b"ap"), b"ap")
    assert lines == [b"* OK [NOTIFICATIONOVERFLOW] Too many notifications; NOTIFY is now off, as after NOTIFY NONE"]
    append(a, b"Lists")
    silent(w)


def test_first_group_that_covers_a_mailbox_decides(pair: Pair) -> None:
    """Section 6: MAILBOXES names exact mailboxes (no wildcard expansion, section 6.6), SUBSCRIBED follows the
    subscription list as it changes (section 6.4), and a mailbox covered by several groups gets
    what the first one asks for."""
    w, a = pair.watcher, pair.actor
    for name in (b"Lists", b"Other", b"Later"):
        ok(a.cmd(b"c CREATE " + name), b"c")
    ok(w.cmd(b'a NOTIFY SET (mailboxes ("Lists" "Lat" "L%") (MessageNew MessageExpunge)) '
             b'(subscribed (MessageNew MessageExpunge)) (personal NONE)'), b"a")
    append(a, b"Other")  # PERSONAL NONE
    append(a, b"Later")  # exact names, no prefix, no pattern
    append(a, b"Lists")
    assert unsolicited(w, rb"STATUS")[0].startswith(b'* STATUS "Lists" (MESSAGES 1 ')
    ok(a.cmd(b"s SUBSCRIBE Other"), b"s")
    append(a, b"Other")
    got = unsolicited(w, rb"STATUS")
    assert got == [got[-1]] and got[-1].startswith(b'* STATUS "Other" (MESSAGES 2 '), got
    ok(a.cmd(b"u UNSUBSCRIBE Other"), b"u")
    append(a, b"Other")
    silent(w)


def test_mail_delivered_over_smtp_gives_status(pair: Pair, srv: RunningServer) -> None:
    w = pair.watcher
    ok(w.cmd(b"a NOTIFY SET (inboxes (MessageNew MessageExpunge))"), b"a")
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("bob@example.net", [pair.address], MESSAGE)
    got = unsolicited(w, rb"STATUS")
    assert re.fullmatch(rb"\* STATUS INBOX \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)", got[-1]), got
