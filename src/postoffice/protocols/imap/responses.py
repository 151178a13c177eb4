"""Serialising server responses (RFC 9051 section 7 and extensions) to bytes.

Everything returns ``bytes`` ready to write, lines end with CRLF. The value
encoders (``astring``, ``nstring``, ``flag_list``...) return the wire form of
one value for composing untagged data, e.g.::

    untagged(b"LIST " + plist([b"\\\\HasNoChildren"]) + b' "/" ' + mailbox(name))
    fetch(3, [(b"UID", number(42)), (b"FLAGS", flag_list(["\\\\Seen"]))])

Response codes: pass ``code=`` as bytes (``Code.TRYCREATE``) or use the
``Code`` helpers for codes with arguments (``Code.appenduid(38505, [3955])``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .grammar.sequence_set import compress_uids

__all__ = [
    "Code", "ok", "no", "bad", "tagged", "untagged", "untagged_ok", "untagged_no",
    "untagged_bad", "bye", "preauth", "continuation", "atom", "quoted", "literal",
    "literal8", "string", "astring", "nstring", "mailbox", "number", "plist",
    "flag_list", "sequence_set", "fetch", "esearch", "esearch_update", "search", "sort", "thread",
    "ordered_set",
    "vanished", "exists",
    "recent", "expunge", "flags", "capability", "enabled", "list_response",
    "lsub_response", "status_response", "namespace", "id_response", "quota",
    "quotaroot",
]

_ATOM_RE = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")
_ASTRING_RE = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e]+")
# What may go in a quoted string (TEXT-CHAR; quoted-specials get escaped).
_QUOTABLE_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")
_TEXT_BAD = re.compile(rb"[\r\n\x00]")


def _text(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    # resp-text must not contain CR/LF/NUL: never let a message break framing.
    return _TEXT_BAD.sub(b" ", raw)


# -- response codes -------------------------------------------------------------
class Code:
    """Response codes (RFC 9051 7.1, 4315, 5530, 7162, 6851, 9208...) as bytes
    without the brackets."""

    ALERT = b"ALERT"
    ALREADYEXISTS = b"ALREADYEXISTS"
    AUTHENTICATIONFAILED = b"AUTHENTICATIONFAILED"
    AUTHORIZATIONFAILED = b"AUTHORIZATIONFAILED"
    CANNOT = b"CANNOT"
    CLIENTBUG = b"CLIENTBUG"
    CLOSED = b"CLOSED"
    CONTACTADMIN = b"CONTACTADMIN"
    CORRUPTION = b"CORRUPTION"
    EXPIRED = b"EXPIRED"
    EXPUNGEISSUED = b"EXPUNGEISSUED"
    HASCHILDREN = b"HASCHILDREN"
    INUSE = b"INUSE"
    LIMIT = b"LIMIT"
    NOMODSEQ = b"NOMODSEQ"
    NONEXISTENT = b"NONEXISTENT"
    NOPERM = b"NOPERM"
    OVERQUOTA = b"OVERQUOTA"
    PARSE = b"PARSE"
    PRIVACYREQUIRED = b"PRIVACYREQUIRED"
    READ_ONLY = b"READ-ONLY"
    READ_WRITE = b"READ-WRITE"
    SERVERBUG = b"SERVERBUG"
    TOOBIG = b"TOOBIG"
    TRYCREATE = b"TRYCREATE"
    UIDNOTSTICKY = b"UIDNOTSTICKY"
    UNAVAILABLE = b"UNAVAILABLE"
    UNKNOWN_CTE = b"UNKNOWN-CTE"
    NOTSAVED = b"NOTSAVED"
    COMPRESSIONACTIVE = b"COMPRESSIONACTIVE"  # RFC 4978 section 3
    TOOFEW = b"TOOFEW"    # RFC 10022
    TOOMANY = b"TOOMANY"  # RFC 10022
    NOTIFICATIONOVERFLOW = b"NOTIFICATIONOVERFLOW"  # RFC 5465 section 5.8

    @staticmethod
    def noupdate(tag: bytes) -> bytes:
        """``NOUPDATE "tag"``: the UPDATE of that search is refused (RFC 5267 section 4.3.1)."""
        return b"NOUPDATE " + quoted(tag)

    @staticmethod
    def appenduid(uidvalidity: int, uids: Iterable[int]) -> bytes:
        """``APPENDUID uidvalidity uid-set`` (RFC 4315; a set for MULTIAPPEND)."""
        return b"APPENDUID %d %s" % (uidvalidity, compress_uids(uids))

    @staticmethod
    def copyuid(uidvalidity: int, source: Sequence[int], dest: Sequence[int]) -> bytes:
        """``COPYUID uidvalidity src-uids dst-uids`` (RFC 4315). The two lists
        pair up in order, so they are written in the given order, not sorted."""
        return b"COPYUID %d %s %s" % (uidvalidity, _ordered_set(source), _ordered_set(dest))

    @staticmethod
    def uidvalidity(n: int) -> bytes:
        return b"UIDVALIDITY %d" % n

    @staticmethod
    def uidnext(n: int) -> bytes:
        return b"UIDNEXT %d" % n

    @staticmethod
    def unseen(n: int) -> bytes:
        return b"UNSEEN %d" % n

    @staticmethod
    def highestmodseq(n: int) -> bytes:
        return b"HIGHESTMODSEQ %d" % n

    @staticmethod
    def modified(numbers: Iterable[int]) -> bytes:
        """``MODIFIED set`` after a conditional STORE (RFC 7162 3.1.3)."""
        return b"MODIFIED " + compress_uids(numbers)

    @staticmethod
    def permanentflags(flag_names: Iterable[str], allow_new_keywords: bool = True) -> bytes:
        names = list(flag_names)
        if allow_new_keywords and "\\*" not in names:
            names.append("\\*")
        return b"PERMANENTFLAGS " + flag_list(names)

    @staticmethod
    def capability(caps: Iterable[str]) -> bytes:
        return b"CAPABILITY " + " ".join(caps).encode("ascii")

    @staticmethod
    def badevent(events: Iterable[str]) -> bytes:
        """``BADEVENT (MessageNew ...)``: the events the server supports (RFC 5465 section 3.1)."""
        return b"BADEVENT (" + " ".join(events).encode("ascii") + b")"

    @staticmethod
    def badcharset(charsets: Iterable[str] = ()) -> bytes:
        names = [astring(c) for c in charsets]
        return b"BADCHARSET" + ((b" " + plist(names)) if names else b"")

    @staticmethod
    def appendlimit(n: int) -> bytes:
        return b"APPENDLIMIT %d" % n


def _ordered_set(numbers: Sequence[int]) -> bytes:
    # Compress runs only where they ascend by one, keeping the given order.
    out: list[bytes] = []
    it = iter(numbers)
    for first in it:
        lo = hi = first
        for n in it:
            if n == hi + 1:
                hi = n
                continue
            out.append(b"%d" % lo if lo == hi else b"%d:%d" % (lo, hi))
            lo = hi = n
        out.append(b"%d" % lo if lo == hi else b"%d:%d" % (lo, hi))
    return b",".join(out)


# -- status responses -------------------------------------------------------------
def _status_line(prefix: bytes, status: bytes, text: str | bytes, code: bytes | str | None) -> bytes:
    if code is not None:
        c = code.encode("ascii") if isinstance(code, str) else code
        return b"%s %s [%s] %s\r\n" % (prefix, status, _text(c).replace(b"]", b""), _text(text))
    return b"%s %s %s\r\n" % (prefix, status, _text(text))


def tagged(tag: bytes, status: str, text: str | bytes, code: bytes | str | None = None) -> bytes:
    """``tag OK|NO|BAD [code] text``."""
    return _status_line(tag, status.encode("ascii"), text, code)


def ok(tag: bytes, text: str | bytes = "completed", code: bytes | str | None = None) -> bytes:
    return _status_line(tag, b"OK", text, code)


def no(tag: bytes, text: str | bytes, code: bytes | str | None = None) -> bytes:
    return _status_line(tag, b"NO", text, code)


def bad(tag: bytes | None, text: str | bytes, code: bytes | str | None = None) -> bytes:
    """``tag BAD ...``; with ``tag=None`` (tag unreadable) ``* BAD ...``."""
    return _status_line(tag if tag is not None else b"*", b"BAD", text, code)


def untagged_ok(text: str | bytes, code: bytes | str | None = None) -> bytes:
    """``* OK [code] text`` (greeting, UIDVALIDITY..., ALERT)."""
    return _status_line(b"*", b"OK", text, code)


def untagged_no(text: str | bytes, code: bytes | str | None = None) -> bytes:
    return _status_line(b"*", b"NO", text, code)


def untagged_bad(text: str | bytes, code: bytes | str | None = None) -> bytes:
    return _status_line(b"*", b"BAD", text, code)


def bye(text: str | bytes = "Logging out", code: bytes | str | None = None) -> bytes:
    return _status_line(b"*", b"BYE", text, code)


def preauth(text: str | bytes, code: bytes | str | None = None) -> bytes:
    return _status_line(b"*", b"PREAUTH", text, code)


def continuation(text: str | bytes = b"") -> bytes:
    """``+ text`` (a SASL challenge is the base64 text; may be empty)."""
    return b"+ " + _text(text) + b"\r\n"


def untagged(data: bytes) -> bytes:
    """``* data``: any untagged response built from the encoders below."""
    return b"* " + data + b"\r\n"


# -- value encoders -------------------------------------------------------------------
def atom(value: str | bytes) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) else value
    if not _ATOM_RE.fullmatch(raw):
        raise ValueError(f"not an atom: {value!r}")
    return raw


def number(n: int) -> bytes:
    return b"%d" % n


def quoted(value: bytes) -> bytes:
    """``"..."`` with ``\\`` and ``"`` escaped; caller ensures it is quotable."""
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(value: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(value), value)


def literal8(value: bytes) -> bytes:
    """``~{n}`` literal8 for BINARY[] data that may contain NUL (RFC 3516)."""
    return b"~{%d}\r\n%s" % (len(value), value)


def string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """A ``string``: quoted when every byte is a TEXT-CHAR (or, with ``utf8``
    - UTF8=ACCEPT/IMAP4rev2 - valid UTF-8 without CR/LF/NUL), else a literal."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) <= 1024 and _QUOTABLE_RE.fullmatch(raw):
        return quoted(raw)
    if utf8 and len(raw) <= 1024 and not _TEXT_BAD.search(raw):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return quoted(raw)
    return literal(raw)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An atom when possible (non-empty, only ASTRING-CHAR), else ``string``."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if raw and _ASTRING_RE.fullmatch(raw) and raw.upper() != b"NIL":
        return raw
    return string(raw, utf8=utf8)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    """``NIL`` for None, else ``string`` (envelope fields, BODY[] data)."""
    if value is None:
        return b"NIL"
    return string(value, utf8=utf8)


def mailbox(encoded_name: bytes) -> bytes:
    """A mailbox name already encoded with ``encode_mailbox_name``; always
    quoted or a literal (clients parse atom names badly with ``]`` etc.)."""
    if encoded_name == b"INBOX":
        return b"INBOX"
    return string(encoded_name, utf8=not encoded_name.isascii())


def plist(items: Iterable[bytes]) -> bytes:
    """``(a b c)`` of already-encoded items."""
    return b"(" + b" ".join(items) + b")"


def flag_list(flag_names: Iterable[str]) -> bytes:
    """``(\\Seen $Forwarded)``; flags are atoms (validated by the grammar)."""
    return ("(" + " ".join(flag_names) + ")").encode("ascii")


def sequence_set(numbers: Iterable[int]) -> bytes:
    """Sorted, compressed: ``[1,2,3,4,5,7,9,10,11,12]`` -> ``1:5,7,9:12``."""
    return compress_uids(numbers)


# -- untagged data ----------------------------------------------------------------------
def fetch(seq: int, items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``* seq FETCH (name value ...)``: items are (name, encoded value) pairs,
    e.g. ``(b"UID", b"42")``, ``(b"FLAGS", flag_list(...))``,
    ``(att.response_name(), nstring(data))``."""
    return b"* %d FETCH (%s)\r\n" % (seq, b" ".join([k + b" " + v for k, v in items]))


def uidbatches(tag: bytes, ranges: Iterable[tuple[int, int]]) -> bytes:
    """``* UIDBATCHES (TAG "t") high:low,high:low...`` (RFC 10022), newest batch first."""
    out = b'* UIDBATCHES (TAG ' + quoted(tag) + b")"
    spans = b",".join(b"%d:%d" % span for span in ranges)
    return out + (b" " + spans if spans else b"") + b"\r\n"


def esearch(
    tag: bytes | None,
    *,
    uid: bool = False,
    min: int | None = None,
    max: int | None = None,
    all: Iterable[int] | None = None,
    count: int | None = None,
    modseq: int | None = None,
    ordered: bool = False,
    partial: tuple[tuple[int, int], Sequence[int]] | None = None,
) -> bytes:
    """``* ESEARCH (TAG "t") [UID] [MIN n] [MAX n] [ALL set] [COUNT n] [MODSEQ n]``
    (RFC 4731; MIN/MAX/ALL are omitted when there is no match). ``ordered``: ALL keeps the
    given order (an ESORT result, RFC 5267 section 3.2) instead of a sorted set."""
    out = [b"* ESEARCH"]
    if tag is not None:
        out.append(b"(TAG " + quoted(tag) + b")")
    if uid:
        out.append(b"UID")
    if min is not None:
        out.append(b"MIN %d" % min)
    if max is not None:
        out.append(b"MAX %d" % max)
    if all is not None:
        s = ordered_set(all) if ordered else compress_uids(all)
        if s:
            out.append(b"ALL " + s)
    if count is not None:
        out.append(b"COUNT %d" % count)
    if partial is not None:
        # ret-data-partial = "PARTIAL" SP "(" partial-range SP partial-results ")"; the range
        # as requested, NIL when nothing falls in it (RFC 5267 section 4.4)
        (lo, hi), got = partial
        results = (ordered_set(got) if ordered else compress_uids(got)) if got else b"NIL"
        out.append(b"PARTIAL (%d:%d %s)" % (lo, hi, results))
    if modseq is not None:
        out.append(b"MODSEQ %d" % modseq)
    return b" ".join(out) + b"\r\n"


def esearch_update(tag: bytes, *, uid: bool, items: Sequence[tuple[bytes, Sequence[tuple[int, bytes]]]]) -> bytes:
    """``* ESEARCH (TAG "t") [UID] ADDTO (pos set ...) REMOVEFROM (pos set ...)`` (RFC 5267
    section 4.3): ``items`` are (b"ADDTO" / b"REMOVEFROM", [(context position, set)])."""
    out = [b"* ESEARCH (TAG " + quoted(tag) + b")"]
    if uid:
        out.append(b"UID")
    for name, pairs in items:
        out.append(name + b" (" + b" ".join(b"%d %s" % (pos, st) for pos, st in pairs) + b")")
    return b" ".join(out) + b"\r\n"


def ordered_set(numbers: Iterable[int]) -> bytes:
    """A sequence-set listing ``numbers`` in the given order (ESORT ALL, RFC 5267 section
    3.2): only ascending runs become ranges ("10:12", never "12:10"), e.g. 5,3,1:2."""
    return _ordered_set(list(numbers))


def sort(numbers: Iterable[int]) -> bytes:
    """``* SORT 2 3 6`` (RFC 5256 section 4)."""
    body = b" ".join(b"%d" % n for n in numbers)
    return b"* SORT" + (b" " + body if body else b"") + b"\r\n"


def thread(threads: bytes) -> bytes:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` (RFC 5256 section 4); ``threads`` is the
    already formatted thread list (empty: no message matched)."""
    return b"* THREAD" + (b" " + threads if threads else b"") + b"\r\n"


def search(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """``* SEARCH 2 3 6 [(MODSEQ n)]`` (RFC 3501; RFC 7162 3.1.5)."""
    body = b" ".join(b"%d" % n for n in numbers)
    out = b"* SEARCH" + (b" " + body if body else b"")
    if modseq is not None:
        out += b" (MODSEQ %d)" % modseq
    return out + b"\r\n"


def vanished(uids: Iterable[int], *, earlier: bool = False) -> bytes:
    """``* VANISHED [(EARLIER)] uid-set`` (RFC 7162 3.2.10); b"" when empty."""
    s = compress_uids(uids)
    if not s:
        return b""
    return (b"* VANISHED (EARLIER) " if earlier else b"* VANISHED ") + s + b"\r\n"


def exists(n: int) -> bytes:
    return b"* %d EXISTS\r\n" % n


def recent(n: int) -> bytes:
    return b"* %d RECENT\r\n" % n


def expunge(seq: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % seq


def flags(flag_names: Iterable[str]) -> bytes:
    return b"* FLAGS " + flag_list(flag_names) + b"\r\n"


def capability(caps: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(caps).encode("ascii") + b"\r\n"


def enabled(caps: Iterable[str]) -> bytes:
    joined = " ".join(caps).encode("ascii")
    return b"* ENABLED" + (b" " + joined if joined else b"") + b"\r\n"


def list_response(
    attributes: Iterable[str],
    delimiter: str | None,
    encoded_name: bytes,
    *,
    extended: Mapping[str, bytes] | None = None,
    kind: bytes = b"LIST",
) -> bytes:
    """``* LIST (\\HasNoChildren) "/" name [(CHILDINFO ("SUBSCRIBED"))]``.

    ``encoded_name`` comes from ``encode_mailbox_name``; ``extended`` maps
    mbox-list-extended item tags (e.g. ``"CHILDINFO"``, ``"OLDNAME"``) to their
    encoded values (RFC 5258, RFC 9051 OLDNAME).
    """
    delim = b"NIL" if delimiter is None else quoted(delimiter.encode("ascii"))
    out = b"* %s %s %s %s" % (kind, flag_list(attributes), delim, mailbox(encoded_name))
    if extended:
        out += b" " + plist(quoted(k.encode("ascii")) + b" " + v for k, v in extended.items())
    return out + b"\r\n"


def lsub_response(attributes: Iterable[str], delimiter: str | None, encoded_name: bytes) -> bytes:
    return list_response(attributes, delimiter, encoded_name, kind=b"LSUB")


def status_response(encoded_name: bytes, items: Mapping[str, int]) -> bytes:
    """``* STATUS name (MESSAGES 3 UIDNEXT 9)``; item order as given."""
    body = b" ".join(b"%s %d" % (k.encode("ascii"), v) for k, v in items.items())
    return b"* STATUS %s (%s)\r\n" % (mailbox(encoded_name), body)


def namespace(
    personal: Sequence[tuple[bytes, str | None]] | None,
    other: Sequence[tuple[bytes, str | None]] | None = None,
    shared: Sequence[tuple[bytes, str | None]] | None = None,
) -> bytes:
    """``* NAMESPACE (("" "/")) NIL NIL``; each group is None (NIL) or a list
    of (encoded prefix, delimiter) pairs."""

    def group(g: Sequence[tuple[bytes, str | None]] | None) -> bytes:
        if not g:
            return b"NIL"
        return plist(
            b"(" + string(p) + b" " + (b"NIL" if d is None else quoted(d.encode("ascii"))) + b")"
            for p, d in g
        )

    return b"* NAMESPACE %s %s %s\r\n" % (group(personal), group(other), group(shared))


def id_response(params: Mapping[str, str | None] | None) -> bytes:
    """``* ID ("name" "postoffice" ...)`` or ``* ID NIL`` (RFC 2971)."""
    if not params:
        return b"* ID NIL\r\n"
    body = b" ".join(string(k) + b" " + nstring(v) for k, v in params.items())
    return b"* ID (" + body + b")\r\n"


def quota(root: bytes, resources: Iterable[tuple[str, int, int]]) -> bytes:
    """``* QUOTA root (STORAGE usage limit ...)`` (RFC 9208; STORAGE in KiB)."""
    body = b" ".join(b"%s %d %d" % (n.encode("ascii"), u, lim) for n, u, lim in resources)
    return b"* QUOTA %s (%s)\r\n" % (astring(root), body)


def quotaroot(encoded_mailbox: bytes, roots: Iterable[bytes]) -> bytes:
    """``* QUOTAROOT mailbox root...`` (RFC 9208)."""
    parts = [b"* QUOTAROOT", mailbox(encoded_mailbox), *(astring(r) for r in roots)]
    return b" ".join(parts) + b"\r\n"
