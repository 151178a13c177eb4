"""SEARCH keys as an AST (RFC 9051 section 6.4.4, RFC 3501 section 6.4.4,
RFC 7162 MODSEQ, RFC 5032 OLDER/YOUNGER, RFC 5182 ``$``)::

    search-key = "ALL" / "ANSWERED" / "BCC" SP astring / "BEFORE" SP date /
                 "BODY" SP astring / "CC" SP astring / "DELETED" / "FLAGGED" /
                 "FROM" SP astring / "KEYWORD" SP flag-keyword / "NEW" / "OLD" /
                 "ON" SP date / "RECENT" / "SEEN" / "SINCE" SP date /
                 "SUBJECT" SP astring / "TEXT" SP astring / "TO" SP astring /
                 "UNANSWERED" / "UNDELETED" / "UNFLAGGED" / "UNKEYWORD" SP flag-keyword /
                 "UNSEEN" / "DRAFT" / "HEADER" SP header-fld-name SP astring /
                 "LARGER" SP number64 / "NOT" SP search-key / "OR" SP search-key SP search-key /
                 "SENTBEFORE" SP date / "SENTON" SP date / "SENTSINCE" SP date /
                 "SMALLER" SP number64 / "UID" SP sequence-set / "UNDRAFT" /
                 sequence-set / "(" search-key *(SP search-key) ")"
    search-key =/ "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer      ; RFC 7162
    search-modseq-ext = SP entry-name SP entry-type-req
    entry-name = DQUOTE "/flags/" attr-flag DQUOTE
    entry-type-req = "priv" / "shared" / "all"
    search-key =/ "OLDER" SP nz-number / "YOUNGER" SP nz-number            ; RFC 5032

Strings stay bytes: the server decodes them with the SEARCH CHARSET.
Nesting (parentheses, NOT, OR) is bounded by ``max_depth``; deeper input is a
ParseError, never a RecursionError.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Union

from .reader import ATOM_RE, MAX_NUMBER64, ParseError, Reader
from .sequence_set import SequenceSet, parse_sequence_set

__all__ = [
    "SearchKey", "SearchAll", "SearchFlag", "SearchNew", "SearchOld", "SearchHeader",
    "SearchBody", "SearchText", "SearchDate", "SearchSize", "SearchNot", "SearchOr",
    "SearchAnd", "SearchSeqSet", "SearchUid", "SearchModSeq", "SearchOlder",
    "SearchYounger", "parse_search_key", "parse_flag", "MAX_SEARCH_DEPTH",
]

MAX_SEARCH_DEPTH = 32


@dataclass(frozen=True, slots=True)
class SearchAll:
    """ALL."""


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """A flag test: ANSWERED/DELETED/DRAFT/FLAGGED/SEEN/RECENT -> ``\\Answered``...
    (``present=True``), UN* -> ``present=False``, KEYWORD/UNKEYWORD -> the keyword."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchNew:
    """NEW: RECENT and not SEEN."""


@dataclass(frozen=True, slots=True)
class SearchOld:
    """OLD: not RECENT."""


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """BCC/CC/FROM/SUBJECT/TO (field is "Bcc", "Cc", "From", "Subject", "To") and
    HEADER field value. An empty ``value`` matches every message having the field.
    ``address``: the BCC/CC/FROM/TO keys, which search the envelope's addresses rather than
    the header text (RFC 9051 6.4.4); HEADER From is the header text."""

    field: str
    value: bytes
    address: bool = False


@dataclass(frozen=True, slots=True)
class SearchBody:
    """BODY string: substring of the body (not the header)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class SearchText:
    """TEXT string: substring of header or body."""

    value: bytes


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE (``sent=False``: internal date, disregarding time and
    timezone) and SENTBEFORE/SENTON/SENTSINCE (``sent=True``: the Date: header).
    ``op`` is "before", "on" or "since"."""

    op: str
    date: date
    sent: bool = False


@dataclass(frozen=True, slots=True)
class SearchSize:
    """LARGER n (``op="larger"``) / SMALLER n (``op="smaller"``), RFC822.SIZE."""

    op: str
    size: int


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """A parenthesised list, or several top-level keys: all must match."""

    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class SearchSeqSet:
    """A bare sequence set (message sequence numbers), or ``$``."""

    seqset: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchUid:
    """UID sequence-set (or ``UID $``)."""

    seqset: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """MODSEQ [entry-name entry-type] n: messages with mod-sequence >= n
    (RFC 7162 section 3.1.5). ``entry_flag`` is the flag of ``"/flags/<flag>"``."""

    modseq: int
    entry_flag: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchOlder:
    """OLDER n: internal date more than n seconds ago (RFC 5032)."""

    seconds: int


@dataclass(frozen=True, slots=True)
class SearchYounger:
    """YOUNGER n: internal date at most n seconds ago (RFC 5032)."""

    seconds: int


SearchKey = Union[
    SearchAll, SearchFlag, SearchNew, SearchOld, SearchHeader, SearchBody, SearchText,
    SearchDate, SearchSize, SearchNot, SearchOr, SearchAnd, SearchSeqSet, SearchUid,
    SearchModSeq, SearchOlder, SearchYounger,
]

_SYSTEM_FLAGS = {
    "\\ANSWERED": "\\Answered", "\\FLAGGED": "\\Flagged", "\\DELETED": "\\Deleted",
    "\\SEEN": "\\Seen", "\\DRAFT": "\\Draft", "\\RECENT": "\\Recent",
}

_SIMPLE: dict[bytes, SearchKey] = {
    b"ALL": SearchAll(),
    b"ANSWERED": SearchFlag("\\Answered"),
    b"DELETED": SearchFlag("\\Deleted"),
    b"DRAFT": SearchFlag("\\Draft"),
    b"FLAGGED": SearchFlag("\\Flagged"),
    b"SEEN": SearchFlag("\\Seen"),
    b"RECENT": SearchFlag("\\Recent"),
    b"UNANSWERED": SearchFlag("\\Answered", False),
    b"UNDELETED": SearchFlag("\\Deleted", False),
    b"UNDRAFT": SearchFlag("\\Draft", False),
    b"UNFLAGGED": SearchFlag("\\Flagged", False),
    b"UNSEEN": SearchFlag("\\Seen", False),
    b"NEW": SearchNew(),
    b"OLD": SearchOld(),
}
_ADDRESS_HEADERS = {b"BCC": "Bcc", b"CC": "Cc", b"FROM": "From", b"SUBJECT": "Subject", b"TO": "To"}
_DATES = {
    b"BEFORE": ("before", False), b"ON": ("on", False), b"SINCE": ("since", False),
    b"SENTBEFORE": ("before", True), b"SENTON": ("on", True), b"SENTSINCE": ("since", True),
}


def normalise_flag(raw: bytes) -> str:
    """``\\seen`` -> ``\\Seen``; keywords keep their spelling (they are
    case-insensitive for matching, RFC 9051 section 2.3.2)."""
    text = raw.decode("ascii")
    if text.startswith("\\"):
        return _SYSTEM_FLAGS.get(text.upper(), text)
    return text


def parse_flag(r: Reader, *, allow_wildcard: bool = False) -> str:
    """``flag = "\\" atom / atom`` (flag-keyword / flag-extension / system flags).

    ``allow_wildcard`` admits ``\\*`` (only meaningful in PERMANENTFLAGS).
    """
    if r.peek() == 0x5C:
        r.pos += 1
        if allow_wildcard and r.peek() == 0x2A:
            r.pos += 1
            return "\\*"
        return normalise_flag(b"\\" + r.atom("a flag name"))
    return normalise_flag(r.atom("a flag"))


def parse_search_key(r: Reader, *, max_depth: int = MAX_SEARCH_DEPTH, depth: int = 0) -> SearchKey:
    """Consume one ``search-key``. ``depth`` counts enclosing (, NOT and OR."""
    c = r.peek()
    if c == 0x28:  # "("
        if depth >= max_depth:
            raise r.fail("search keys are nested too deeply")
        r.pos += 1
        keys = [parse_search_key(r, max_depth=max_depth, depth=depth + 1)]
        while True:
            c = r.peek()
            if c == 0x29:
                r.pos += 1
                break
            if c == -1:
                raise r.fail("unbalanced parentheses in search")
            r.sp()
            keys.append(parse_search_key(r, max_depth=max_depth, depth=depth + 1))
        return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
    if c == 0x24 or 0x30 <= c <= 0x39 or c == 0x2A:  # "$", digit or "*"
        return SearchSeqSet(parse_sequence_set(r))
    m = ATOM_RE.match(r.data, r.pos, r.end)
    if m is None:
        raise r.fail("expected a search key" if c != -1 else "missing search key")
    word = m.group().upper()
    start = r.pos
    r.pos = m.end()
    simple = _SIMPLE.get(word)
    if simple is not None:
        return simple
    if word in _ADDRESS_HEADERS:
        r.sp()
        return SearchHeader(_ADDRESS_HEADERS[word], r.astring(), word != b"SUBJECT")
    if word in _DATES:
        op, sent = _DATES[word]
        r.sp()
        return SearchDate(op, r.date(), sent)
    if word == b"BODY":
        r.sp()
        return SearchBody(r.astring())
    if word == b"TEXT":
        r.sp()
        return SearchText(r.astring())
    if word == b"HEADER":
        r.sp()
        name = r.astring("a header field name")
        if not name or not name.isascii():
            raise r.fail("invalid header field name")
        r.sp()
        return SearchHeader(name.decode("ascii"), r.astring())
    if word in (b"KEYWORD", b"UNKEYWORD"):
        r.sp()
        flag = normalise_flag(r.atom("a keyword"))
        return SearchFlag(flag, word == b"KEYWORD")
    if word in (b"LARGER", b"SMALLER"):
        r.sp()
        return SearchSize(word.decode().lower(), r.number64("a size"))
    if word == b"NOT":
        if depth >= max_depth:
            raise r.fail("search keys are nested too deeply")
        r.sp()
        return SearchNot(parse_search_key(r, max_depth=max_depth, depth=depth + 1))
    if word == b"OR":
        if depth >= max_depth:
            raise r.fail("search keys are nested too deeply")
        r.sp()
        left = parse_search_key(r, max_depth=max_depth, depth=depth + 1)
        r.sp()
        right = parse_search_key(r, max_depth=max_depth, depth=depth + 1)
        return SearchOr(left, right)
    if word == b"UID":
        r.sp()
        return SearchUid(parse_sequence_set(r))
    if word == b"MODSEQ":
        r.sp()
        entry_flag = entry_type = None
        if r.peek() == 0x22:
            # entry-name = DQUOTE "/flags/" attr-flag DQUOTE (RFC 7162 section 7)
            name = r.quoted()
            if not name.lower().startswith(b"/flags/") or len(name) <= 7:
                raise r.fail('MODSEQ entry name must be "/flags/<flag>"')
            try:
                entry_flag = normalise_flag(name[7:])
            except UnicodeDecodeError:
                raise r.fail("invalid flag in MODSEQ entry name") from None
            r.sp()
            t = r.atom("priv, shared or all").lower()
            if t not in (b"priv", b"shared", b"all"):
                raise r.fail("MODSEQ entry type must be priv, shared or all")
            entry_type = t.decode()
            r.sp()
        return SearchModSeq(r.number("a mod-sequence", limit=MAX_NUMBER64), entry_flag, entry_type)
    if word in (b"OLDER", b"YOUNGER"):
        r.sp()
        n = r.nz_number("a number of seconds")
        return SearchOlder(n) if word == b"OLDER" else SearchYounger(n)
    raise ParseError(f"unknown search key {m.group().decode('ascii')!r}", start)
