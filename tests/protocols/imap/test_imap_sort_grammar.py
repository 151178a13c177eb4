"""SORT / THREAD / ESORT grammar (RFC 5256 section 5, RFC 5957, RFC 5267 section 3) and the
response formats, without sockets. The commands are the RFCs' own examples."""

from __future__ import annotations

import pytest

from postoffice.protocols.imap import CommandReceived, InvalidCommand, Sort, Thread, parse_command
from postoffice.protocols.imap import responses as r
from postoffice.protocols.imap.grammar.search import SearchAnd, SearchDate, SearchFlag, SearchText
from postoffice.protocols.imap.grammar.sort import SortCriterion


def cmd(line: bytes) -> object:
    event = parse_command(line)
    assert isinstance(event, CommandReceived), event
    return event.command


def test_rfc5256_sort_examples() -> None:
    c = cmd(b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994")
    assert isinstance(c, Sort) and c.criteria == (SortCriterion("SUBJECT"),)
    assert c.charset == "UTF-8" and isinstance(c.key, SearchDate) and not c.uid
    c = cmd(b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL")
    assert c.criteria == (SortCriterion("SUBJECT"), SortCriterion("DATE", True))
    c = cmd(b'A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"')
    assert c.charset == "US-ASCII" and c.key == SearchText(b"not in mailbox")
    c = cmd(b"a UID SORT (reverse arrival cc from size to) \"utf-8\" ALL")
    assert c.uid and [x.key for x in c.criteria] == ["ARRIVAL", "CC", "FROM", "SIZE", "TO"]
    assert c.criteria[0].reverse and not c.criteria[1].reverse and c.charset == "UTF-8"


def test_rfc5957_display_keys() -> None:
    c = cmd(b"C1 SORT (DISPLAYFROM) UTF-8 ALL")
    assert c.criteria == (SortCriterion("DISPLAYFROM"),)
    c = cmd(b"C2 SORT (REVERSE DISPLAYTO) UTF-8 ALL")
    assert c.criteria == (SortCriterion("DISPLAYTO", True),)


def test_rfc5267_esort_example() -> None:
    c = cmd(b"E01 UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk")
    assert isinstance(c, Sort) and c.uid and c.return_options == ("ALL",)
    assert c.key == SearchAnd((SearchFlag("\\Deleted", False), SearchFlag("$Junk", False)))
    assert cmd(b"E02 SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL").return_options == ("MIN", "MAX", "COUNT")


def test_return_after_the_charset_as_dovecot_accepts() -> None:
    """imaptest's sort-partial puts RETURN after the charset; one RETURN list only."""
    c = cmd(b"a SORT (ARRIVAL) US-ASCII RETURN (PARTIAL 2:4) ALL")
    assert isinstance(c, Sort) and c.return_options == ("PARTIAL",) and c.partial == (2, 4)
    assert c.charset == "US-ASCII" and c.criteria == (SortCriterion("ARRIVAL"),)
    for bad in (b"a SORT RETURN (MIN) (DATE) UTF-8 RETURN (MAX) ALL", b"a SORT (DATE) UTF-8 RETURN (SAVE) ALL"):
        assert isinstance(parse_command(bad), InvalidCommand), bad


def test_rfc5256_thread_examples() -> None:
    c = cmd(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000")
    assert isinstance(c, Thread) and c.algorithm == "ORDEREDSUBJECT" and c.charset == "UTF-8"
    c = cmd(b'A284 THREAD ORDEREDSUBJECT US-ASCII TEXT "gewp"')
    assert c.key == SearchText(b"gewp")
    c = cmd(b"a UID THREAD references UTF-8 ALL")
    assert c.uid and c.algorithm == "REFERENCES"


@pytest.mark.parametrize("line", [
    b"a SORT (DATE) ALL",                      # the charset is mandatory (RFC 5256 section 3)
    b"a SORT () UTF-8 ALL",                     # at least one criterion
    b"a SORT DATE UTF-8 ALL",                   # parenthesised
    b"a SORT (REVERSE) UTF-8 ALL",              # REVERSE needs a key
    b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL",
    b"a SORT (BOGUS) UTF-8 ALL",
    b"a SORT (DATE) UTF-8",                     # 1*(SP search-key)
    b"a SORT RETURN (SAVE) (DATE) UTF-8 ALL",   # SAVE is for SEARCH only
    b"a SORT RETURN (FOO) (DATE) UTF-8 ALL",
    b"a THREAD UTF-8 ALL",
    b"a THREAD NOSUCH UTF-8 ALL",
    b"a THREAD REFERENCES ALL",
])
def test_bad_sort_and_thread(line: bytes) -> None:
    event = parse_command(line)
    assert isinstance(event, InvalidCommand) and event.tag == b"a", event


def test_responses() -> None:
    assert r.sort([2, 84, 882]) == b"* SORT 2 84 882\r\n"
    assert r.sort([]) == b"* SORT\r\n"
    assert r.thread(b"(2)(3 6 (4 23)(44 7 96))") == b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    assert r.thread(b"") == b"* THREAD\r\n"
    # RFC 5267 section 3.2/3.3: ranges only where ascending, the order otherwise kept
    assert r.ordered_set([23765, 23764, 23763, 23761]) == b"23765,23764,23763,23761"
    assert r.ordered_set([4, 1, 2, 3, 10, 11]) == b"4,1:3,10:11"
    assert r.esearch(b"E01", uid=True, all=[3, 1, 2], ordered=True) == b'* ESEARCH (TAG "E01") UID ALL 3,1:2\r\n'


def test_compress_command() -> None:
    """RFC 4978 section 4: compress = "COMPRESS" SP algorithm; valid after login only."""
    from postoffice.protocols.imap import Compress, State, command_allowed

    c = cmd(b"a COMPRESS deflate")
    assert c == Compress("DEFLATE")
    assert command_allowed(State.AUTHENTICATED, c) and command_allowed(State.SELECTED, c)
    assert not command_allowed(State.NOT_AUTHENTICATED, c)
    assert isinstance(parse_command(b"a COMPRESS"), InvalidCommand)
    assert r.no(b"a", "x", r.Code.COMPRESSIONACTIVE) == b"a NO [COMPRESSIONACTIVE] x\r\n"


def test_context_return_options() -> None:
    """RFC 5267 section 4: CONTEXT, UPDATE, PARTIAL lo:hi; CANCELUPDATE with quoted tags."""
    from postoffice.protocols.imap import CancelUpdate

    c = cmd(b"A02 UID SEARCH RETURN (PARTIAL 23500:24000) UNDELETED UNKEYWORD $Junk")
    assert c.partial == (23500, 24000) and c.return_options == ("PARTIAL",)
    assert cmd(b"a SEARCH RETURN (PARTIAL 500:400) ALL").partial == (400, 500)  # same as 400:500
    c = cmd(b"B01 UID SEARCH RETURN (UPDATE COUNT) DELETED KEYWORD $Junk")
    assert c.return_options == ("UPDATE", "COUNT") and c.partial is None
    c = cmd(b"a UID SORT RETURN (UPDATE PARTIAL 1:10) (DATE) UTF-8 ALL")
    assert c.return_options == ("UPDATE", "PARTIAL") and c.partial == (1, 10)
    assert cmd(b'B04 CANCELUPDATE "B01" "B02"') == CancelUpdate((b"B01", b"B02"))
    for bad in (b"a SEARCH RETURN (PARTIAL 1:5 ALL) ALL", b"a SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:7) ALL",
                b"a SEARCH RETURN (PARTIAL 0:5) ALL", b"a SEARCH RETURN (PARTIAL 5) ALL",
                b"a SEARCH RETURN (PARTIAL 1:*) ALL", b"a CANCELUPDATE", b"a CANCELUPDATE B01"):
        assert isinstance(parse_command(bad), InvalidCommand), bad
    assert r.esearch(b"A04", uid=True, partial=((24000, 24500), [])) == b'* ESEARCH (TAG "A04") UID PARTIAL (24000:24500 NIL)\r\n'
    assert r.esearch_update(b"C01", uid=True, items=[(b"ADDTO", [(1, b"2733"), (1, b"2731:2732")])]) == \
        b'* ESEARCH (TAG "C01") UID ADDTO (1 2733 1 2731:2732)\r\n'


def test_imap_urls_and_catenate() -> None:
    """RFC 5092 URLs as RFC 4469 section 6 uses them, and the CATENATE append-data."""
    from postoffice.protocols.imap.grammar.fetch_att import Section
    from postoffice.protocols.imap.grammar.imapurl import parse_imap_url

    u = parse_imap_url(b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER")
    assert (u.mailbox, u.uidvalidity, u.uid, u.section) == (b"Drafts", 385759045, 20, Section((), "HEADER"))
    u = parse_imap_url(b"/INBOX;UIDVALIDITY=785799047/;UID=113330/;section=1.5.9")
    assert u.section == Section((1, 5, 9)) and u.uid == 113330
    u = parse_imap_url(b"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:91354a")
    assert (u.user, u.host, u.mailbox, u.uid, u.urlauth) == ("joe", "example.com", b"INBOX", 20, b"submit+fred:internal:91354a")
    u = parse_imap_url(b"/Caf%C3%A9/Sub;UID=3/;SECTION=HEADER.FIELDS%20(SUBJECT%20FROM)/;PARTIAL=10.5")
    assert u.mailbox == "Café/Sub".encode() and u.section == Section((), "HEADER.FIELDS", ("SUBJECT", "FROM"))
    assert u.partial == (10, 5)
    for bad in (b"/INBOX", b"/;UID=3", b"/INBOX;UID=0", b"/INBOX;UID=3;FOO=1", b"INBOX;UID=1",
                b"/INBOX;UID=1/;SECTION=HEADER.FIELDS", b"/INBOX;UID=1/;UID=2", b"/INBOX;UID=1/;PARTIAL=x"):
        with pytest.raises(ValueError):
            parse_imap_url(bad)
    c = cmd(b'A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL "/Drafts;UID=20/;section=HEADER" '
            b"TEXT {4}\r\n--\r\n URL \"/Drafts;UID=20/;section=1\")")
    m = c.messages[0]
    assert m.flags == ("\\Seen", "\\Draft", "$MDNSent") and m.data == b""
    assert m.catenate == (("URL", b"/Drafts;UID=20/;section=HEADER"), ("TEXT", b"--\r\n"),
                          ("URL", b"/Drafts;UID=20/;section=1"))
    for bad in (b"a APPEND x CATENATE ()", b"a APPEND x CATENATE (FOO 1)", b'a APPEND x CATENATE (TEXT "q")'):
        assert isinstance(parse_command(bad), InvalidCommand), bad


def test_urlauth_commands() -> None:
    """RFC 4467 section 9: GENURLAUTH 1*(url-rump mechanism), URLFETCH 1*url, RESETKEY."""
    from postoffice.protocols.imap import GenUrlAuth, ResetKey, State, UrlFetch, command_allowed

    rump = b"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred"
    c = cmd(b'a001 GENURLAUTH "%s" INTERNAL' % rump)
    assert c == GenUrlAuth(((rump, "INTERNAL"),))
    full = rump + b":internal:91354a473744909de610943775f92038"
    assert cmd(b'a002 URLFETCH "%s"' % full) == UrlFetch((full,))
    assert cmd(b"a RESETKEY") == ResetKey()
    assert cmd(b"a RESETKEY INBOX INTERNAL") == ResetKey(b"INBOX", ("INTERNAL",))
    assert command_allowed(State.AUTHENTICATED, c) and not command_allowed(State.NOT_AUTHENTICATED, c)
    for bad in (b"a GENURLAUTH", b'a GENURLAUTH "x"', b"a URLFETCH"):
        assert isinstance(parse_command(bad), InvalidCommand), bad
    # RFC 5524 (URLAUTH=BINARY): a URL in parentheses with what is wanted of it
    c = cmd(b'a003 URLFETCH ("%s" BINARY bodypartstructure) "%s"' % (full, full))
    assert c == UrlFetch((full, full), (("BINARY", "BODYPARTSTRUCTURE"), None))
    assert cmd(b'a URLFETCH ("%s" BODY)' % full) == UrlFetch((full,), (("BODY",),))
    for bad in (b'a URLFETCH ("%s")' % full, b'a URLFETCH ("%s" TEXT)' % full, b'a URLFETCH ("%s" BINARY' % full):
        assert isinstance(parse_command(bad), InvalidCommand), bad


def test_metadata_commands() -> None:
    """RFC 5464 section 5: GETMETADATA [options] mailbox entries, SETMETADATA mailbox (entry value)."""
    from postoffice.protocols.imap import GetMetadata, SetMetadata

    assert cmd(b'a GETMETADATA "" /shared/comment') == GetMetadata(b"", ("/shared/comment",))
    assert cmd(b"a GETMETADATA (MAXSIZE 1024 DEPTH infinity) INBOX (/Shared/Comment /private/comment)") == \
        GetMetadata(b"INBOX", ("/shared/comment", "/private/comment"), 1024, -1)
    assert cmd(b"a GETMETADATA (DEPTH 1) INBOX /private/filters/values").depth == 1
    assert cmd(b'a SETMETADATA INBOX (/private/comment {33}\r\nMy new comment across\r\ntwo lines. /shared/x NIL)') == \
        SetMetadata(b"INBOX", (("/private/comment", b"My new comment across\r\ntwo lines."), ("/shared/x", None)))
    assert cmd(b"a SETMETADATA INBOX (/private/b ~{3}\r\na\x00b)").items == (("/private/b", b"a\x00b"),)
    for bad in (b"a GETMETADATA INBOX /foo", b"a GETMETADATA INBOX /private//x", b"a GETMETADATA INBOX /private/x/",
                b"a GETMETADATA INBOX /private/*", b"a GETMETADATA (DEPTH 2) INBOX /private",
                b"a GETMETADATA (FOO 1) INBOX /private", b"a SETMETADATA INBOX ()", b"a SETMETADATA INBOX (/private/x)"):
        assert isinstance(parse_command(bad), InvalidCommand), bad
