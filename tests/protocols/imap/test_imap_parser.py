"""parse_command: tables of good and bad commands (RFC 9051 section 9 and extensions)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from postoffice.protocols.imap import (
    COMMAND_VERBS, STATE_COMMANDS, Append, AppendMessage, Authenticate, Capability, Check, Close,
    CommandReceived, Copy, Create, Delete, Enable, Examine, Expunge, Fetch, FetchAtt, GetQuota,
    GetQuotaRoot, Id, Idle, InvalidCommand, List, Login, Logout, Lsub, Move, Namespace, Noop,
    QresyncParams, Rename, Search, SearchAll, SearchAnd, SearchBody, SearchDate, SearchFlag,
    SearchHeader, SearchModSeq, SearchNew, SearchNot, SearchOld, SearchOlder, SearchOr,
    SearchSeqSet, SearchSize, SearchText, SearchUid, SearchYounger, Section, Select, SequenceSet,
    SetQuota, StartTls, State, Status, Store, StoreMode, Subscribe, UidBatches, UidExpunge,
    Unselect, Unsubscribe, command_allowed, parse_command,
)

S = SequenceSet.parse
ALL = SequenceSet.all()
FA = FetchAtt

GOOD = [
    # -- any state
    ("a1 CAPABILITY", Capability()),
    ("a1 capability", Capability()),
    ("a1 NOOP\r\n", Noop()),
    ("a1 LOGOUT\n", Logout()),
    ('a1 ID ("name" "sodr" "version" "19.34" "x" NIL)', Id({"name": "sodr", "version": "19.34", "x": None})),
    ("a1 ID NIL", Id(None)),
    ("a1 ID ()", Id({})),
    ("a1 ENABLE CONDSTORE qresync", Enable(("CONDSTORE", "QRESYNC"))),
    ("a1 ENABLE UTF8=ACCEPT", Enable(("UTF8=ACCEPT",))),
    # -- not authenticated
    ("a1 STARTTLS", StartTls()),
    ("a1 AUTHENTICATE plain", Authenticate("PLAIN")),
    ("a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", Authenticate("PLAIN", b"\0alice\0secret")),
    ("a1 AUTHENTICATE EXTERNAL =", Authenticate("EXTERNAL", b"")),
    ("a1 LOGIN alice secret", Login(b"alice", b"secret")),
    ('a1 LOGIN "al\\"ice" "p\\\\w d"', Login(b'al"ice', b"p\\w d")),
    ("a1 LOGIN {5}\r\nalice {6+}\r\nsec\"et", Login(b"alice", b'sec"et')),
    ("a1 LOGIN a]b x", Login(b"a]b", b"x")),
    ('a1 LOGIN "" ""', Login(b"", b"")),
    # -- authenticated
    ("a1 SELECT inbox", Select(b"INBOX")),
    ("a1 SELECT Inbox/sub", Select(b"Inbox/sub")),
    ("a1 EXAMINE \"Sent Items\" (CONDSTORE)", Examine(b"Sent Items", condstore=True)),
    ("a1 SELECT INBOX (QRESYNC (67890007 20050715194045000))", Select(b"INBOX", qresync=QresyncParams(67890007, 20050715194045000))),
    (
        "A02 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
        Select(b"INBOX", qresync=QresyncParams(67890007, 90060115194045000, S(b"41:211,214:541"))),
    ),
    (
        "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
        Select(b"INBOX", qresync=QresyncParams(
            67890007, 90060115194045000, S(b"1:29997"),
            (S(b"5000,7500,9000,9990:9999"), S(b"15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997")),
        )),
    ),
    ("a1 SELECT x (QRESYNC (1 2 (1 3)))", Select(b"x", qresync=QresyncParams(1, 2, None, (S(b"1"), S(b"3"))))),
    ("a1 SELECT x (CONDSTORE QRESYNC (1 2))", Select(b"x", True, QresyncParams(1, 2))),
    ("a1 CREATE owatagusiam/", Create(b"owatagusiam/")),
    ("a1 CREATE MySpecialArchive (USE (\\archive))", Create(b"MySpecialArchive", ("\\Archive",))),
    ("a1 CREATE x (USE (\\Sent \\Drafts \\X-Custom))", Create(b"x", ("\\Sent", "\\Drafts", "\\X-Custom"))),
    ("a1 DELETE blurdybloop", Delete(b"blurdybloop")),
    ("a1 RENAME blurdybloop sarasoop", Rename(b"blurdybloop", b"sarasoop")),
    ("a1 RENAME inbox old-mail", Rename(b"INBOX", b"old-mail")),
    ("a1 SUBSCRIBE #news.comp.mail.mime", Subscribe(b"#news.comp.mail.mime")),
    ("a1 UNSUBSCRIBE &Jjo-", Unsubscribe(b"&Jjo-")),
    ('a1 LIST "" *', List(b"", (b"*",))),
    ('a1 LIST "" %', List(b"", (b"%",))),
    ("a1 LIST ~/Mail/ foo]%*", List(b"~/Mail/", (b"foo]%*",))),
    ('a1 LIST "" ""', List(b"", (b"",))),
    ('a1 LIST () "" %', List(b"", (b"%",), extended=True)),
    (
        'a1 LIST (SUBSCRIBED RECURSIVEMATCH remote) "" ("INBOX" "foo*" %) RETURN (CHILDREN special-use)',
        List(b"", (b"INBOX", b"foo*", b"%"), frozenset({"SUBSCRIBED", "RECURSIVEMATCH", "REMOTE"}),
             frozenset({"CHILDREN", "SPECIAL-USE"}), None, True),
    ),
    ('a1 LIST (SPECIAL-USE) "" *', List(b"", (b"*",), frozenset({"SPECIAL-USE"}), extended=True)),
    (
        'a1 LIST "" % RETURN (STATUS (MESSAGES UNSEEN size))',
        List(b"", (b"%",), return_options=frozenset({"STATUS"}), status_items=("MESSAGES", "UNSEEN", "SIZE"), extended=True),
    ),
    ('a1 LIST "" % RETURN ()', List(b"", (b"%",), extended=True)),
    ('a1 LSUB "#news." "comp.mail.*"', Lsub(b"#news.", b"comp.mail.*")),
    ("a1 NAMESPACE", Namespace()),
    (
        "a1 STATUS blurdybloop (UIDNEXT MESSAGES UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT)",
        Status(b"blurdybloop", ("UIDNEXT", "MESSAGES", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT", "HIGHESTMODSEQ", "APPENDLIMIT")),
    ),
    ("a1 APPEND saved-messages {3}\r\nabc", Append(b"saved-messages", (AppendMessage(b"abc"),))),
    (
        'a1 APPEND saved (\\Seen $Junk) "17-Jul-1996 02:44:25 -0700" {3+}\r\nabc',
        Append(b"saved", (AppendMessage(b"abc", ("\\Seen", "$Junk"), datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7)))),)),
    ),
    ('a1 APPEND x " 7-Jul-1996 02:44:25 +0130" {0}\r\n', Append(b"x", (AppendMessage(b"", internal_date=datetime(1996, 7, 7, 2, 44, 25, tzinfo=timezone(timedelta(hours=1, minutes=30)))),))),
    ("a1 APPEND x () {1}\r\na", Append(b"x", (AppendMessage(b"a"),))),
    (
        "a1 APPEND x {1}\r\na (\\Draft) {2}\r\nbc ~{3}\r\n\0\1\2",
        Append(b"x", (AppendMessage(b"a"), AppendMessage(b"bc", ("\\Draft",)), AppendMessage(b"\0\1\2", binary=True))),
    ),
    ("a1 APPEND x UTF8 (~{2}\r\n\xc3\xa9)", Append(b"x", (AppendMessage("é".encode(), binary=True, utf8=True),))),
    ("a1 APPEND x ~{2+}\r\n\r\n", Append(b"x", (AppendMessage(b"\r\n", binary=True),))),
    ("a1 IDLE", Idle()),
    ('a1 GETQUOTA ""', GetQuota(b"")),
    ("a1 GETQUOTAROOT INBOX", GetQuotaRoot(b"INBOX")),
    ('a1 SETQUOTA "" (STORAGE 512 message 1000)', SetQuota(b"", (("STORAGE", 512), ("MESSAGE", 1000)))),
    ('a1 SETQUOTA "" ()', SetQuota(b"", ())),
    # -- selected
    ("a1 CHECK", Check()),
    ("a1 CLOSE", Close()),
    ("a1 UNSELECT", Unselect()),
    ("a1 EXPUNGE", Expunge()),
    ("a1 UID EXPUNGE 3000:3002", UidExpunge(S(b"3000:3002"))),
    ("a1 uid expunge $", UidExpunge(SequenceSet(saved=True))),
    ("a1 SEARCH ALL", Search(SearchAll())),
    (
        'a1 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Search(SearchAnd((SearchFlag("\\Flagged"), SearchDate("since", date(1994, 2, 1)), SearchNot(SearchHeader("From", b"Smith", True))))),
    ),
    (
        "a1 UID SEARCH CHARSET utf-8 TEXT {4}\r\n\xd0\xb9\xd1\x86",
        Search(SearchText("йц".encode()), "UTF-8", None, True),
    ),
    ("a1 SEARCH RETURN (MIN MAX) UNSEEN", Search(SearchFlag("\\Seen", False), None, ("MIN", "MAX"))),
    ("a1 SEARCH RETURN () 1:*", Search(SearchSeqSet(ALL), None, ("ALL",))),
    ("a1 UID SEARCH RETURN (SAVE) CHARSET \"US-ASCII\" OR SEEN ANSWERED", Search(SearchOr(SearchFlag("\\Seen"), SearchFlag("\\Answered")), "US-ASCII", ("SAVE",), True)),
    ("a1 SEARCH $", Search(SearchSeqSet(SequenceSet(saved=True)))),
    ("a1 SEARCH UID $ SMALLER 4", Search(SearchAnd((SearchUid(SequenceSet(saved=True)), SearchSize("smaller", 4))))),
    (
        "a1 SEARCH ANSWERED BCC a BEFORE 3-Mar-2020 BODY b CC c DELETED DRAFT HEADER X-Foo \"\" KEYWORD $Fwd LARGER 10 NEW OLD ON \"01-Jan-2000\" RECENT SEEN SENTBEFORE 1-jan-2000 SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000 SUBJECT s TO t UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Junk UNSEEN UID 1,3:* OLDER 60 YOUNGER 3600 MODSEQ 5 2:4 (SEEN)",
        Search(SearchAnd((
            SearchFlag("\\Answered"), SearchHeader("Bcc", b"a", True), SearchDate("before", date(2020, 3, 3)),
            SearchBody(b"b"), SearchHeader("Cc", b"c", True), SearchFlag("\\Deleted"), SearchFlag("\\Draft"),
            SearchHeader("X-Foo", b""), SearchFlag("$Fwd"), SearchSize("larger", 10), SearchNew(), SearchOld(),
            SearchDate("on", date(2000, 1, 1)), SearchFlag("\\Recent"), SearchFlag("\\Seen"),
            SearchDate("before", date(2000, 1, 1), True), SearchDate("on", date(2000, 1, 1), True),
            SearchDate("since", date(2000, 1, 1), True), SearchHeader("Subject", b"s"), SearchHeader("To", b"t", True),
            SearchFlag("\\Answered", False), SearchFlag("\\Deleted", False), SearchFlag("\\Draft", False),
            SearchFlag("\\Flagged", False), SearchFlag("$Junk", False), SearchFlag("\\Seen", False),
            SearchUid(S(b"1,3:*")), SearchOlder(60), SearchYounger(3600), SearchModSeq(5),
            SearchSeqSet(S(b"2:4")), SearchFlag("\\Seen"),
        ))),
    ),
    ('a1 SEARCH MODSEQ "/flags/\\\\draft" all 620162338', Search(SearchModSeq(620162338, "\\Draft", "all"))),
    ("a1 SEARCH ((((SEEN))))", Search(SearchFlag("\\Seen"))),
    ("a1 FETCH 1 ALL", Fetch(S(b"1"), (FA("FLAGS"), FA("INTERNALDATE"), FA("RFC822.SIZE"), FA("ENVELOPE")))),
    ("a1 FETCH 1 fast", Fetch(S(b"1"), (FA("FLAGS"), FA("INTERNALDATE"), FA("RFC822.SIZE")))),
    ("a1 FETCH 1 FULL", Fetch(S(b"1"), (FA("FLAGS"), FA("INTERNALDATE"), FA("RFC822.SIZE"), FA("ENVELOPE"), FA("BODY")))),
    ("a1 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])", Fetch(S(b"2:4"), (FA("FLAGS"), FA("BODY", Section((), "HEADER.FIELDS", ("DATE", "FROM"))))),),
    ("a1 FETCH * body[]", Fetch(S(b"*"), (FA("BODY", Section()),))),
    ("a1 FETCH 1 BODY.PEEK[1.2.TEXT]<0.2048>", Fetch(S(b"1"), (FA("BODY", Section((1, 2), "TEXT"), (0, 2048), True),))),
    ("a1 FETCH 1 (BODY[1.MIME] BODY[2] BODY[HEADER] BODY[3.HEADER.FIELDS.NOT (X-A \"X-B\")])", Fetch(S(b"1"), (
        FA("BODY", Section((1,), "MIME")), FA("BODY", Section((2,))), FA("BODY", Section((), "HEADER")),
        FA("BODY", Section((3,), "HEADER.FIELDS.NOT", ("X-A", "X-B"))),
    ))),
    ("a1 FETCH 1 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE BODY BODYSTRUCTURE UID MODSEQ)", Fetch(S(b"1"), tuple(
        FA(n) for n in ("ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "RFC822.SIZE", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ")
    ))),
    ("a1 FETCH 1 (BINARY[1] BINARY.PEEK[1.2]<0.10> BINARY.SIZE[] BINARY[])", Fetch(S(b"1"), (
        FA("BINARY", Section((1,))), FA("BINARY", Section((1, 2)), (0, 10), True), FA("BINARY.SIZE", Section()), FA("BINARY", Section()),
    ))),
    # beyond RFC 3516's section-binary and RFC 9051's partial, as Dovecot accepts them
    ("a1 FETCH 1 (BINARY.PEEK[TEXT] BINARY[2.MIME] BINARY.SIZE[2.HEADER.FIELDS (FROM)] BODY[]<5> BINARY[1]<40>)", Fetch(S(b"1"), (
        FA("BINARY", Section((), "TEXT"), None, True), FA("BINARY", Section((2,), "MIME")),
        FA("BINARY.SIZE", Section((2,), "HEADER.FIELDS", ("FROM",))), FA("BODY", Section(), (5, None)),
        FA("BINARY", Section((1,)), (40, None)),
    ))),
    ("a1 UIDBATCHES 2000", UidBatches(2000)),
    ("a1 uidbatches 500 3:10", UidBatches(500, (3, 10))),
    ("a1 UIDBATCHES 1000 4:1", UidBatches(1000, (4, 1))),  # refused by the server, CLIENTBUG
    ("a1 UID FETCH 1:* (UID FLAGS)", Fetch(ALL, (FA("UID"), FA("FLAGS")), uid=True)),
    ("a1 FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)", Fetch(ALL, (FA("FLAGS"),), 12345)),
    ("a1 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)", Fetch(S(b"300:500"), (FA("FLAGS"),), 12345, True, True)),
    ("a1 FETCH $ FLAGS", Fetch(SequenceSet(saved=True), (FA("FLAGS"),))),
    ("a1 STORE 2:4 +FLAGS (\\Deleted)", Store(S(b"2:4"), StoreMode.ADD, ("\\Deleted",))),
    ("a1 STORE 1 FLAGS.SILENT \\seen $label1", Store(S(b"1"), StoreMode.REPLACE, ("\\Seen", "$label1"), True)),
    ("a1 STORE 1 -flags ()", Store(S(b"1"), StoreMode.REMOVE, ())),
    ("a1 UID STORE 1:* (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Flagged)", Store(ALL, StoreMode.ADD, ("\\Flagged",), True, 0, True)),
    ("a1 COPY 2:4 MEETING", Copy(S(b"2:4"), b"MEETING")),
    ("a1 UID COPY 4827313:4828442 \"Sent Mail\"", Copy(S(b"4827313:4828442"), b"Sent Mail", True)),
    ("a1 MOVE 1:3 Trash", Move(S(b"1:3"), b"Trash")),
    ("a1 UID MOVE 42 inbox", Move(S(b"42"), b"INBOX", True)),
    ("+.!#$&'-=[^_`|}~] NOOP", Noop()),
]


@pytest.mark.parametrize(("line", "expected"), GOOD, ids=[g[0][:60] for g in GOOD])
def test_good_commands(line: str, expected: object) -> None:
    raw = line.encode("latin-1")
    if raw.startswith(b"+"):
        raw = raw[1:]  # "+" is not allowed in tags; this row tests other odd tag chars
    event = parse_command(raw)
    assert isinstance(event, CommandReceived), event
    assert event.command == expected


def test_tag_is_returned() -> None:
    assert parse_command(b"A0001 NOOP") == CommandReceived(b"A0001", Noop())


BAD = [
    ("", "tag"),
    ("a1", "missing command"),
    ("+a NOOP", "tag"),
    ("a{1 NOOP", "tag"),
    ("a1 NOOP extra", "unexpected data"),
    ("a1  NOOP", "command name"),
    ("a1 NOOP ", "unexpected data"),
    ("a1 LOGIN alice", "space"),
    ("a1 LOGIN alice  secret", "password"),
    ("a1 LOGIN al\xe9 x", "8-bit"),
    ("a1 LOGIN \"alice secret", "unterminated"),
    ("a1 LOGIN \"a\\x\" y", "escape"),
    ("a1 LOGIN \"\xff\xfe\" y", "UTF-8"),
    ("a1 LOGIN a\x01b y", "control"),
    ("a1 LOGIN {5}\r\nabc", "shorter"),
    ("a1 LOGIN {3}\r\na\0c x", "NUL"),
    ("a1 LOGIN a\tb", "space"),
    ("a1 SELECT", "end of command"),
    ("a1 SELECT x (FOO)", "unknown SELECT parameter"),
    ("a1 SELECT x ()", "must not be empty"),
    ("a1 SELECT x (QRESYNC (0 1))", "zero"),
    ("a1 SELECT x (QRESYNC (1 0))", "positive"),
    ("a1 SELECT x (QRESYNC (1 2 1:*))", "not allowed"),
    ("a1 SELECT x (CONDSTORE", "unterminated"),
    ("a1 CREATE x (USE (Sent))", "special-use"),
    ("a1 CREATE x (FOO (x))", "unknown CREATE parameter"),
    ("a1 LIST (RECURSIVEMATCH) \"\" %", "RECURSIVEMATCH"),
    ("a1 LIST (REMOTE RECURSIVEMATCH) \"\" %", "RECURSIVEMATCH"),
    ("a1 LIST (BOGUS) \"\" %", "unknown LIST selection option"),
    ("a1 LIST \"\" % RETURN (BOGUS)", "unknown LIST return option"),
    ("a1 LIST \"\" % RETURN (STATUS ())", "must not be empty"),
    ("a1 LIST \"\" ()", "must not be empty"),
    ("a1 LIST \"\" % FOO", "RETURN"),
    ("a1 STATUS x (MESSAGES BOGUS)", "unknown status item"),
    ("a1 STATUS x ()", "must not be empty"),
    ("a1 STATUS x MESSAGES", "'('"),
    ("a1 APPEND x", "expected a message literal"),
    ("a1 APPEND x \"abc\"", "date-time"),
    ("a1 APPEND x (\\Seen) abc", "literal"),
    ("a1 APPEND x {3}\r\na\0c", "NUL"),
    ("a1 APPEND x \"32-Jan-2000 00:00:00 +0000\" {1}\r\na", "invalid date"),
    ("a1 APPEND x \"01-Foo-2000 00:00:00 +0000\" {1}\r\na", "month"),
    ("a1 APPEND x UTF8 ({1}\r\na)", "literal8"),
    ("a1 APPEND x {1}\r\na ", "literal"),
    ("a1 SEARCH", "end of command"),
    ("a1 SEARCH FOO", "unknown search key"),
    ("a1 SEARCH (SEEN", "unbalanced"),
    ("a1 SEARCH SEEN)", "unexpected data"),
    ("a1 SEARCH SINCE 1-Foo-2000", "month"),
    ("a1 SEARCH SINCE 30-Feb-2000", "invalid date"),
    ("a1 SEARCH LARGER x", "size"),
    ("a1 SEARCH OLDER 0", "zero"),
    ("a1 SEARCH RETURN (BOGUS) ALL", "unknown SEARCH return option"),
    ("a1 SEARCH OR SEEN", "end of command"),
    ("a1 SEARCH MODSEQ \"/foo/bar\" all 5", "/flags/"),
    ("a1 SEARCH MODSEQ \"/flags/\\\\seen\" none 5", "priv"),
    ("a1 SEARCH 0", "between 1"),
    ("a1 SEARCH 4294967296", "between 1"),
    ("a1 FETCH 1", "space"),
    ("a1 FETCH 1 BOGUS", "unknown fetch attribute"),
    ("a1 FETCH 1 ()", "must not be empty"),
    ("a1 FETCH 1 (FLAGS", "unterminated"),
    ("a1 FETCH 1 BODY[FOO]", "invalid section"),
    ("a1 FETCH 1 BODY[MIME]", "invalid section"),
    ("a1 FETCH 1 BODY[0]", "non-zero"),
    ("a1 FETCH 1 BODY[1.]", "invalid section"),
    ("a1 FETCH 1 BODY[HEADER.FIELDS ()]", "must not be empty"),
    ("a1 FETCH 1 BODY[]<0.0>", "non-zero"),
    ("a1 FETCH 1 BODY[]<5.>", "partial"),
    ("a1 FETCH 1 BODY.PEEK", "needs a section"),
    ("a1 FETCH 1 BINARY[FOO]", "invalid section"),
    ("a1 FETCH 1 BINARY.SIZE", "needs a section"),
    ("a1 FETCH 1 FLAGS (VANISHED)", "VANISHED"),
    ("a1 UID FETCH 1 FLAGS (VANISHED)", "VANISHED"),
    ("a1 FETCH 1 FLAGS (BOGUS)", "unknown FETCH modifier"),
    ("a1 FETCH 1:2:3 FLAGS", "space"),
    ("a1 FETCH ,1 FLAGS", "sequence set"),
    ("a1 STORE 1 FLAGS", "space"),
    ("a1 STORE 1 XFLAGS (\\Seen)", "FLAGS"),
    ("a1 STORE 1 +FLAGS (\\Seen", "unterminated"),
    ("a1 STORE 1 (FOO 1) FLAGS ()", "unknown STORE modifier"),
    ("a1 COPY 1", "space"),
    ("a1 UIDBATCHES", "space"),
    ("a1 UIDBATCHES 0", "zero"),
    ("a1 UIDBATCHES abc", "batch size"),
    ("a1 UIDBATCHES 500 10", "':'"),
    ("a1 UIDBATCHES 500 0:3", "zero"),
    ("a1 UID", "UID needs a command"),
    ("a1 UID NOOP", "unknown command UID NOOP"),
    ("a1 UID EXPUNGE", "space"),
    ("a1 AUTHENTICATE PLAIN !!!", "base64"),
    ("a1 AUTHENTICATE PLAIN AGFsa", "invalid base64"),
    ("a1 ENABLE", "space"),
    ("a1 ID (\"a\")", "space"),
    ("a1 SETQUOTA x (STORAGE)", "space"),
    ("a1 XYZZY", "unknown command"),
    ("a1 NOOP\r", "stray CR"),
]


@pytest.mark.parametrize(("line", "fragment"), BAD, ids=[b[0][:60] for b in BAD])
def test_bad_commands(line: str, fragment: str) -> None:
    event = parse_command(line.encode("latin-1"))
    assert isinstance(event, InvalidCommand), event
    assert fragment.lower() in event.message.lower(), event.message


def test_invalid_command_keeps_tag_and_verb() -> None:
    event = parse_command(b"a7 FETCH 1 BOGUS")
    assert isinstance(event, InvalidCommand)
    assert event.tag == b"a7" and event.verb == b"FETCH" and not event.unknown
    unknown = parse_command(b"a8 XYZZY")
    assert isinstance(unknown, InvalidCommand) and unknown.unknown and unknown.verb == b"XYZZY"
    assert parse_command(b"\xff NOOP") == InvalidCommand(None, "invalid or missing tag")


def test_deep_search_nesting_is_bad_not_recursion_error() -> None:
    for opener, closer in ((b"(", b")"), (b"NOT ", b""), (b"OR SEEN ", b"")):
        data = b"a1 SEARCH " + opener * 1000 + b"SEEN" + closer * 1000
        event = parse_command(data)
        assert isinstance(event, InvalidCommand)
        assert "nested too deeply" in event.message
    ok = parse_command(b"a1 SEARCH " + b"(" * 31 + b"SEEN" + b")" * 31)
    assert isinstance(ok, CommandReceived)


def test_literal_contents_are_opaque() -> None:
    event = parse_command(b'a1 LOGIN {10}\r\n) "(\r\n{3}\\ {2}\r\n\xff\xfe')
    assert event == CommandReceived(b"a1", Login(b') "(\r\n{3}\\', b"\xff\xfe"))


def test_login_repr_hides_password() -> None:
    assert "secret" not in repr(Login(b"alice", b"secret"))


def test_every_command_class_is_in_the_state_table() -> None:
    import postoffice.protocols.imap.commands as commands

    all_allowed = set().union(*STATE_COMMANDS.values())
    for verb in COMMAND_VERBS:
        assert verb.upper() == verb
    classes = [getattr(commands, n) for n in commands.__all__ if isinstance(getattr(commands, n), type)]
    cmd_classes = [c for c in classes if c.__module__ == commands.__name__ and c not in (
        commands.State, commands.StoreMode, commands.QresyncParams, commands.AppendMessage, commands.NotifyGroup)]
    assert set(cmd_classes) == all_allowed
    assert command_allowed(State.NOT_AUTHENTICATED, Login(b"a", b"b"))
    assert not command_allowed(State.AUTHENTICATED, Login(b"a", b"b"))
    assert not command_allowed(State.AUTHENTICATED, Expunge())
    assert command_allowed(State.SELECTED, Noop())
    assert not command_allowed(State.NOT_AUTHENTICATED, Select(b"INBOX"))


def test_fetch_att_response_names() -> None:
    event = parse_command(b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"X-Y\")]<10.20> BINARY.PEEK[1]<0.5> BINARY.SIZE[2] RFC822.HEADER BODY[1.MIME])")
    assert isinstance(event, CommandReceived) and isinstance(event.command, Fetch)
    names = [a.response_name() for a in event.command.items]
    assert names == [b'BODY[HEADER.FIELDS (From X-Y)]<10>', b"BINARY[1]<0>", b"BINARY.SIZE[2]", b"RFC822.HEADER", b"BODY[1.MIME]"]
    assert [a.sets_seen for a in event.command.items] == [False, False, False, False, True]
    # __bytes__ round-trips the request form
    again = parse_command(b"a FETCH 1 (" + b" ".join(bytes(a) for a in event.command.items) + b")")
    assert isinstance(again, CommandReceived) and again.command == event.command
