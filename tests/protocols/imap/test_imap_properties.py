"""Property tests: hostile input never raises; generated commands parse back."""

from __future__ import annotations

from datetime import date

from hypothesis import HealthCheck, given, settings, strategies as st

from postoffice.protocols.imap import (
    NEED_DATA, CommandReceived, ConnectionClosed, Fetch, FetchAtt, ImapConnection, InvalidCommand,
    Login, Search, SearchAll, SearchAnd, SearchBody, SearchDate, SearchFlag, SearchHeader,
    SearchKey, SearchNot, SearchOr, SearchSeqSet, SearchSize, SearchUid, Section, SequenceSet,
    Store, StoreMode, parse_command, responses as R, utf7_decode, utf7_encode,
)
from postoffice.protocols.imap.grammar import InvalidMailboxName

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Fragments that steer random input towards interesting parser paths.
TOKENS = st.sampled_from([
    b"a1 ", b"UID ", b"FETCH ", b"SEARCH ", b"STORE ", b"APPEND ", b"LOGIN ", b"SELECT ", b"LIST ",
    b"(", b")", b"[", b"]", b"<", b">", b"{", b"}", b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n", b"{99999}\r\n",
    b'"', b"\\", b"*", b"%", b"$", b":", b",", b" ", b"\r\n", b"\n", b"\r", b"\0", b"\xff", b"NIL",
    b"BODY[", b"HEADER.FIELDS", b"OR ", b"NOT ", b"1:*", b"RETURN ", b"CHANGEDSINCE ", b"DONE", b"=",
])
NOISE = st.one_of(st.binary(max_size=40), st.lists(TOKENS, max_size=30).map(b"".join))


@FAST
@given(NOISE)
def test_parse_command_never_raises(data: bytes) -> None:
    event = parse_command(data)
    assert isinstance(event, (CommandReceived, InvalidCommand))


@FAST
@given(st.lists(NOISE, max_size=8), st.lists(st.sampled_from(["idle", "sasl", "tls", "none"]), max_size=8))
def test_connection_never_raises(chunks: list[bytes], modes: list[str]) -> None:
    conn = ImapConnection(max_line_length=64, max_literal_size=50, max_other_literal_size=20, max_command_size=200)
    for i, chunk in enumerate(chunks):
        conn.receive_data(chunk)
        mode = modes[i] if i < len(modes) else "none"
        if mode == "idle":
            conn.expect_idle_done()
        elif mode == "sasl":
            conn.expect_sasl_response()
        elif mode == "tls":
            conn.start_tls()
        for _ in range(1000):
            if conn.next_event() is NEED_DATA:
                break
    conn.receive_data(b"")
    for _ in range(1000):
        ev = conn.next_event()
        if isinstance(ev, ConnectionClosed):
            break
    else:
        raise AssertionError("connection did not report closing after EOF")


@FAST
@given(st.text(max_size=30))
def test_utf7_round_trip(text: str) -> None:
    try:
        wire = utf7_encode(text)
    except UnicodeEncodeError:  # lone surrogates cannot be encoded
        return
    assert wire.isascii()
    assert utf7_decode(wire) == text


@FAST
@given(st.binary(max_size=20))
def test_utf7_decode_only_raises_invalid_mailbox_name(raw: bytes) -> None:
    try:
        utf7_decode(raw)
    except InvalidMailboxName:
        pass


# -- generated commands ------------------------------------------------------------
ASTRING_VALUES = st.binary(min_size=0, max_size=30).filter(lambda b: b"\0" not in b)


@FAST
@given(ASTRING_VALUES, ASTRING_VALUES)
def test_login_round_trip(user: bytes, password: bytes) -> None:
    data = b"t LOGIN " + R.astring(user) + b" " + R.astring(password)
    assert parse_command(data) == CommandReceived(b"t", Login(user, password))


numbers = st.integers(min_value=1, max_value=2**32 - 1)
seq_item = st.one_of(
    numbers.map(lambda n: (n, n)),
    st.tuples(st.one_of(numbers, st.none()), st.one_of(numbers, st.none())),
)
seqsets = st.lists(seq_item, min_size=1, max_size=5).map(lambda items: SequenceSet(tuple(items)))


@FAST
@given(seqsets)
def test_sequence_set_round_trip(s: SequenceSet) -> None:
    assert SequenceSet.parse(bytes(s)) == s


@FAST
@given(st.lists(st.integers(min_value=1, max_value=500), max_size=50), st.integers(min_value=0, max_value=600))
def test_sequence_set_resolution_matches_brute_force(numbers: list[int], star: int) -> None:
    s = SequenceSet.from_ints(numbers)
    assert list(s.iter(star)) == sorted(set(numbers))
    assert all(s.contains(n, star) == (n in numbers) for n in range(0, 510, 7))


flags = st.one_of(
    st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]),
    st.from_regex(r"\A\$?[A-Za-z][A-Za-z0-9_-]{0,10}\Z"),
)


@FAST
@given(seqsets, st.sampled_from(list(StoreMode)), st.booleans(), st.lists(flags, max_size=5), st.booleans(),
       st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1)))
def test_store_round_trip(s: SequenceSet, mode: StoreMode, silent: bool, fl: list[str], uid: bool, unchanged: int | None) -> None:
    data = b"t " + (b"UID " if uid else b"") + b"STORE " + bytes(s)
    if unchanged is not None:
        data += b" (UNCHANGEDSINCE %d)" % unchanged
    data += b" " + mode.value.encode() + b"FLAGS" + (b".SILENT" if silent else b"") + b" " + R.flag_list(fl)
    expected = Store(s, mode, tuple(fl), silent, unchanged, uid)
    assert parse_command(data) == CommandReceived(b"t", expected)


header_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,12}\Z")
sections = st.one_of(
    st.just(Section()),
    st.builds(Section, st.lists(st.integers(1, 50), min_size=1, max_size=3).map(tuple)),
    st.builds(Section, st.lists(st.integers(1, 50), max_size=3).map(tuple), st.sampled_from(["HEADER", "TEXT"])),
    st.builds(Section, st.lists(st.integers(1, 50), min_size=1, max_size=3).map(tuple), st.just("MIME")),
    st.builds(Section, st.lists(st.integers(1, 50), max_size=2).map(tuple),
              st.sampled_from(["HEADER.FIELDS", "HEADER.FIELDS.NOT"]),
              st.lists(header_names, min_size=1, max_size=4).map(tuple)),
)
partials = st.one_of(st.none(), st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 2**32 - 1)))
fetch_atts = st.one_of(
    st.sampled_from(["ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
                     "RFC822.SIZE", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ"]).map(FetchAtt),
    st.builds(FetchAtt, st.just("BODY"), sections, partials, st.booleans()),
    st.builds(FetchAtt, st.just("BINARY"),
              st.lists(st.integers(1, 9), max_size=3).map(lambda p: Section(tuple(p))), partials, st.booleans()),
    st.builds(FetchAtt, st.just("BINARY.SIZE"), st.lists(st.integers(1, 9), max_size=3).map(lambda p: Section(tuple(p)))),
)


@FAST
@given(seqsets, st.lists(fetch_atts, min_size=1, max_size=6), st.booleans(),
       st.one_of(st.none(), st.integers(min_value=1, max_value=2**63 - 1)))
def test_fetch_round_trip(s: SequenceSet, atts: list[FetchAtt], uid: bool, changedsince: int | None) -> None:
    data = b"t " + (b"UID " if uid else b"") + b"FETCH " + bytes(s) + b" (" + b" ".join(bytes(a) for a in atts) + b")"
    vanished = False
    if changedsince is not None:
        vanished = uid and changedsince % 2 == 0
        data += b" (CHANGEDSINCE %d%s)" % (changedsince, b" VANISHED" if vanished else b"")
    expected = Fetch(s, tuple(atts), changedsince, vanished, uid)
    assert parse_command(data) == CommandReceived(b"t", expected)


def _render(key: SearchKey) -> bytes:
    if isinstance(key, SearchAll):
        return b"ALL"
    if isinstance(key, SearchFlag):
        names = {"\\Seen": b"SEEN", "\\Answered": b"ANSWERED", "\\Deleted": b"DELETED", "\\Draft": b"DRAFT", "\\Flagged": b"FLAGGED"}
        if key.flag in names:
            return (b"" if key.present else b"UN") + names[key.flag]
        return (b"KEYWORD " if key.present else b"UNKEYWORD ") + key.flag.encode()
    if isinstance(key, SearchHeader):
        return b"HEADER " + R.astring(key.field) + b" " + R.astring(key.value)
    if isinstance(key, SearchBody):
        return b"BODY " + R.astring(key.value)
    if isinstance(key, SearchDate):
        d = key.date
        month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][d.month - 1]
        return (b"SENT" if key.sent else b"") + key.op.upper().encode() + b" %d-%s-%04d" % (d.day, month.encode(), d.year)
    if isinstance(key, SearchSize):
        return key.op.upper().encode() + b" %d" % key.size
    if isinstance(key, SearchNot):
        return b"NOT " + _render(key.key)
    if isinstance(key, SearchOr):
        return b"OR " + _render(key.left) + b" " + _render(key.right)
    if isinstance(key, SearchAnd):
        return b"(" + b" ".join(_render(k) for k in key.keys) + b")"
    if isinstance(key, SearchUid):
        return b"UID " + bytes(key.seqset)
    if isinstance(key, SearchSeqSet):
        return bytes(key.seqset)
    raise AssertionError(key)


leaf_keys = st.one_of(
    st.just(SearchAll()),
    st.builds(SearchFlag, st.sampled_from(["\\Seen", "\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "$Fwd", "Junk"]), st.booleans()),
    st.builds(SearchHeader, st.from_regex(r"\AX-[A-Za-z]{1,5}\Z"), ASTRING_VALUES),
    st.builds(SearchBody, ASTRING_VALUES),
    st.builds(SearchDate, st.sampled_from(["before", "on", "since"]), st.dates(date(1900, 1, 1), date(2100, 1, 1)), st.booleans()),
    st.builds(SearchSize, st.sampled_from(["larger", "smaller"]), st.integers(0, 2**63 - 1)),
    st.builds(SearchUid, seqsets),
    st.builds(SearchSeqSet, seqsets),
)
search_keys = st.recursive(
    leaf_keys,
    lambda inner: st.one_of(
        st.builds(SearchNot, inner),
        st.builds(SearchOr, inner, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda ks: SearchAnd(tuple(ks))),
    ),
    max_leaves=8,
)


@FAST
@given(search_keys, st.booleans())
def test_search_round_trip(key: SearchKey, uid: bool) -> None:
    data = b"t " + (b"UID " if uid else b"") + b"SEARCH " + _render(key)
    # (a parenthesised top-level list parses to the same SearchAnd as bare keys)
    assert parse_command(data) == CommandReceived(b"t", Search(key, uid=uid))


@FAST
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=3), st.integers(1, 50))
def test_connection_reassembles_literals_at_any_chunking(messages: list[bytes], step: int) -> None:
    messages = [m.replace(b"\0", b"x") for m in messages]
    wire = b"t APPEND x" + b"".join(b" {%d+}\r\n%s" % (len(m), m) for m in messages) + b"\r\nu NOOP\r\n"
    conn = ImapConnection()
    events = []
    for i in range(0, len(wire), step):
        conn.receive_data(wire[i : i + step])
        while (ev := conn.next_event()) is not NEED_DATA:
            events.append(ev)
    assert len(events) == 2
    assert isinstance(events[0], CommandReceived)
    assert [m.data for m in events[0].command.messages] == messages  # type: ignore[union-attr]
