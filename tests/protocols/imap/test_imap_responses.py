"""Response serialisation and value encoders, round-tripped through the parser."""

from __future__ import annotations

import time

import pytest

from postoffice.protocols.imap import CommandReceived, Login, parse_command, responses as R
from postoffice.protocols.imap.grammar import Reader
from postoffice.protocols.imap.responses import Code


def test_tagged_and_codes() -> None:
    assert R.ok(b"a1", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert R.ok(b"a1", "done", Code.appenduid(38505, [3955])) == b"a1 OK [APPENDUID 38505 3955] done\r\n"
    assert R.no(b"a2", "no such mailbox", Code.TRYCREATE) == b"a2 NO [TRYCREATE] no such mailbox\r\n"
    assert R.bad(None, "junk") == b"* BAD junk\r\n"
    assert R.bad(b"a3", "too big", Code.TOOBIG) == b"a3 BAD [TOOBIG] too big\r\n"
    assert R.tagged(b"a4", "NO", "x", "OVERQUOTA") == b"a4 NO [OVERQUOTA] x\r\n"
    assert R.untagged_ok("ok", Code.uidvalidity(3857529045)) == b"* OK [UIDVALIDITY 3857529045] ok\r\n"
    assert R.untagged_ok("x", Code.uidnext(4392)) == b"* OK [UIDNEXT 4392] x\r\n"
    assert R.untagged_ok("x", Code.highestmodseq(715194045007)) == b"* OK [HIGHESTMODSEQ 715194045007] x\r\n"
    assert R.ok(b"a", "x", Code.modified([7, 9, 3, 1, 2])) == b"a OK [MODIFIED 1:3,7,9] x\r\n"
    assert R.ok(b"a", "x", Code.copyuid(38505, [304, 319, 320], [3956, 3957, 3958])) == (
        b"a OK [COPYUID 38505 304,319:320 3956:3958] x\r\n"
    )
    # COPYUID keeps pairing order (no sorting)
    assert Code.copyuid(1, [5, 3], [10, 11]) == b"COPYUID 1 5,3 10:11"
    assert Code.permanentflags(["\\Seen", "\\Deleted"]) == b"PERMANENTFLAGS (\\Seen \\Deleted \\*)"
    assert Code.capability(["IMAP4rev2", "IDLE"]) == b"CAPABILITY IMAP4rev2 IDLE"
    assert Code.badcharset(["UTF-8", "US-ASCII"]) == b"BADCHARSET (UTF-8 US-ASCII)"
    for code in (Code.ALERT, Code.NOMODSEQ, Code.CLOSED, Code.UIDNOTSTICKY, Code.CANNOT, Code.NONEXISTENT,
                 Code.ALREADYEXISTS, Code.SERVERBUG, Code.LIMIT, Code.READ_ONLY, Code.READ_WRITE,
                 Code.AUTHENTICATIONFAILED, Code.PRIVACYREQUIRED, Code.CONTACTADMIN, Code.UNAVAILABLE,
                 Code.INUSE, Code.EXPUNGEISSUED):
        assert R.no(b"t", "x", code) == b"t NO [" + code + b"] x\r\n"
    assert R.bye("bye") == b"* BYE bye\r\n"
    assert R.continuation() == b"+ \r\n"
    assert R.continuation("Ready") == b"+ Ready\r\n"


def test_text_cannot_break_framing() -> None:
    assert R.no(b"a", "bad\r\n* OK injected") == b"a NO bad  * OK injected\r\n"
    assert R.no(b"a", "x", b"CODE]\r\n") == b"a NO [CODE  ] x\r\n"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"INBOX", b"INBOX"),
        (b"a]b", b"a]b"),
        (b"", b'""'),
        (b"NIL", b'"NIL"'),
        (b"two words", b'"two words"'),
        (b'q"uo\\te', b'"q\\"uo\\\\te"'),
        (b"a*b", b'"a*b"'),
        (b"line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        (b"caf\xc3\xa9", b"{5}\r\ncaf\xc3\xa9"),
    ],
)
def test_astring_round_trip(value: bytes, wire: bytes) -> None:
    assert R.astring(value) == wire
    assert Reader(wire).astring() == value
    event = parse_command(b"a LOGIN " + R.astring(value) + b" " + R.astring(value))
    assert event == CommandReceived(b"a", Login(value, value))


def test_utf8_quoting() -> None:
    assert R.string("café", utf8=True) == '"café"'.encode()
    assert R.string("café") == b"{5}\r\ncaf\xc3\xa9"
    assert R.string(b"\xff", utf8=True) == b"{1}\r\n\xff"


def test_nstring_and_literals() -> None:
    assert R.nstring(None) == b"NIL"
    assert R.nstring(b"x") == b'"x"'
    assert R.literal8(b"\0\1") == b"~{2}\r\n\0\1"
    assert R.number(42) == b"42"
    assert R.plist([b"a", b"b"]) == b"(a b)"
    assert R.flag_list([]) == b"()"
    assert R.atom("FOO") == b"FOO"
    with pytest.raises(ValueError):
        R.atom("a b")


def test_untagged_data() -> None:
    assert R.exists(172) == b"* 172 EXISTS\r\n"
    assert R.recent(1) == b"* 1 RECENT\r\n"
    assert R.expunge(3) == b"* 3 EXPUNGE\r\n"
    assert R.flags(["\\Answered", "\\Seen"]) == b"* FLAGS (\\Answered \\Seen)\r\n"
    assert R.capability(["IMAP4rev2"]) == b"* CAPABILITY IMAP4rev2\r\n"
    assert R.enabled([]) == b"* ENABLED\r\n"
    assert R.enabled(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert R.search([2, 3, 6]) == b"* SEARCH 2 3 6\r\n"
    assert R.search([]) == b"* SEARCH\r\n"
    assert R.search([1], modseq=917162500) == b"* SEARCH 1 (MODSEQ 917162500)\r\n"
    assert R.esearch(b"A282", min=2, count=3) == b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    assert R.esearch(b"A283", uid=True, all=[1, 2, 3, 7]) == b'* ESEARCH (TAG "A283") UID ALL 1:3,7\r\n'
    assert R.esearch(b"A284", all=[]) == b'* ESEARCH (TAG "A284")\r\n'
    assert R.vanished([41, 43, 44, 45]) == b"* VANISHED 41,43:45\r\n"
    assert R.vanished([300, 301], earlier=True) == b"* VANISHED (EARLIER) 300:301\r\n"
    assert R.vanished([]) == b""
    assert R.fetch(12, [(b"FLAGS", R.flag_list(["\\Seen"])), (b"UID", b"4827313")]) == (
        b"* 12 FETCH (FLAGS (\\Seen) UID 4827313)\r\n"
    )
    assert R.list_response(["\\HasNoChildren", "\\Sent"], "/", b"Sent Items") == (
        b'* LIST (\\HasNoChildren \\Sent) "/" "Sent Items"\r\n'
    )
    assert R.list_response([], None, b"INBOX") == b"* LIST () NIL INBOX\r\n"
    assert R.list_response(["\\Subscribed"], "/", b"foo", extended={"CHILDINFO": b'("SUBSCRIBED")'}) == (
        b'* LIST (\\Subscribed) "/" "foo" ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert R.lsub_response([], ".", b"x") == b'* LSUB () "." "x"\r\n'
    assert R.status_response(b"blurdybloop", {"MESSAGES": 231, "UIDNEXT": 44292}) == (
        b'* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292)\r\n'
    )
    assert R.namespace([(b"", "/")]) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert R.id_response({"name": "postoffice", "version": None}) == b'* ID ("name" "postoffice" "version" NIL)\r\n'
    assert R.id_response(None) == b"* ID NIL\r\n"
    assert R.quota(b"", [("STORAGE", 10, 512)]) == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert R.quotaroot(b"INBOX", [b""]) == b'* QUOTAROOT INBOX ""\r\n'
    assert R.untagged(b"1 FETCH (UID 1)") == b"* 1 FETCH (UID 1)\r\n"
    assert R.sequence_set([1, 2, 3, 4, 5, 7, 9, 10, 11, 12]) == b"1:5,7,9:12"


def test_fetch_flags_100k_is_fast() -> None:
    """Bench target: FETCH 1:* (UID FLAGS) over 100k messages well under 1 s."""
    event = parse_command(b"a1 UID FETCH 1:* (UID FLAGS)")
    assert isinstance(event, CommandReceived)
    flag_sets = [R.flag_list(["\\Seen"]), R.flag_list([]), R.flag_list(["\\Seen", "\\Flagged"])]
    start = time.perf_counter()
    seqset = event.command.seqset  # type: ignore[union-attr]
    out = b"".join([
        R.fetch(seq, [(b"UID", b"%d" % seq), (b"FLAGS", flag_sets[seq % 3])])
        for seq in seqset.iter(100_000)
    ])
    elapsed = time.perf_counter() - start
    assert out.count(b"\r\n") == 100_000
    assert elapsed < 1.0, elapsed
