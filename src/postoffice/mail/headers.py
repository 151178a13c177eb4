"""Header-block helpers over raw bytes: field splitting, unfolding, RFC 2047 decoding, dates.

Everything works on the original bytes and offsets; nothing here re-serialises a message.
"""

from __future__ import annotations

import binascii
import re
import threading
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_tz  # a date tokenizer only; no MIME structure from `email`

# A header field: (lower-case name, field start, value start, field end), offsets into raw.
# ``field end`` includes the field's line terminator (if any) and all continuation lines.
Field = tuple[bytes, int, int, int]

_FOLD = re.compile(rb"\r?\n")
_WS = b" \t\r\n"


def find_header_end(raw: bytes, start: int, end: int) -> int:
    """Offset just past the blank line ending the header block in raw[start:end].

    Returns ``end`` when there is no blank line (the whole region is header, body empty).
    Accepts CRLF and bare LF line ends.
    """
    if start >= end:
        return end
    if raw[start] == 0x0A:  # empty header block, bare LF
        return start + 1
    if raw.startswith(b"\r\n", start, end):
        return start + 2
    a = raw.find(b"\n\n", start, end)
    b = raw.find(b"\n\r\n", start, end)
    if a < 0 and b < 0:
        return end
    if b < 0 or (0 <= a < b):
        return a + 2
    return b + 3


def split_fields(raw: bytes, start: int, end: int) -> list[Field]:
    """Split the header block raw[start:end] into fields (continuation lines folded in).

    Lines without a colon are kept as nameless fields (name ``b""``) so HEADER output and
    offsets stay faithful; a blank line stops the scan.
    """
    memo = getattr(_memo, "split", None)
    if memo is not None and memo[0] is raw:
        hit = memo[1].get((start, end))
        if hit is None:
            hit = memo[1][(start, end)] = _split_fields(raw, start, end)
        return list(hit)
    return _split_fields(raw, start, end)


#: Per-thread memo of :func:`split_fields` for one message (see :func:`memo_fields`): the
#: MIME parse, the header map and ENVELOPE all split the same top-level header block.
_memo = threading.local()


class memo_fields:
    """``with memo_fields(raw):`` split each header block of ``raw`` once in this thread."""

    __slots__ = ("raw", "saved")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __enter__(self) -> None:
        self.saved = getattr(_memo, "split", None)
        _memo.split = (self.raw, {})

    def __exit__(self, *exc: object) -> None:
        _memo.split = self.saved


def _split_fields(raw: bytes, start: int, end: int) -> list[Field]:
    fields: list[Field] = []
    pos = start
    find = raw.find
    while pos < end:
        nl = find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        c = raw[pos]
        if c == 0x20 or c == 0x09:
            if fields:
                name, fs, vs, _ = fields[-1]
                fields[-1] = (name, fs, vs, line_end)
            else:
                fields.append((b"", pos, pos, line_end))
        elif c == 0x0A or (c == 0x0D and line_end - pos <= 2 and raw[pos + 1 : pos + 2] == b"\n"):
            break  # the blank line
        else:
            colon = find(b":", pos, line_end)
            if colon > pos:
                name = raw[pos:colon].strip(b" \t").lower()
                if b" " in name or b"\t" in name:
                    name = b""
                fields.append((name, pos, colon + 1, line_end))
            else:
                fields.append((b"", pos, line_end, line_end))
        pos = line_end
    return fields


_FIELD_END = re.compile(rb"\n(?![ \t])")


def find_fields(raw: bytes, name: bytes, limit: int | None = None) -> list[bytes]:
    """The ``name`` fields (lower case) of the header block ``raw`` - name, colon, value and
    continuation lines, without the final line end - at most ``limit`` of them. Found with
    ``bytes.find`` and a regular expression, in C: a header of 14,000 folded lines is not walked
    line by line in Python (what :func:`split_fields` does, fine for analysis in a worker but
    not on an event loop)."""
    lowered = raw.lower()
    needle = b"\n" + name
    out: list[bytes] = []
    at = 0 if lowered.startswith(name) else lowered.find(needle)
    while at >= 0:
        start = at if at == 0 and lowered.startswith(name) and not out else at + 1
        after = start + len(name)
        while after < len(raw) and raw[after] in (0x20, 0x09):
            after += 1
        if raw[after:after + 1] == b":":
            end_match = _FIELD_END.search(raw, after)
            end = end_match.start() if end_match else len(raw)
            if end > start and raw[end - 1:end] == b"\r":
                end -= 1
            out.append(raw[start:end])
            if limit is not None and len(out) >= limit:
                break
        at = lowered.find(needle, start + 1)
    return out


def unfold(value: bytes) -> bytes:
    """RFC 5322 section 2.2.3 unfolding (remove CRLF before WSP), then trim outer whitespace."""
    return _FOLD.sub(b"", value).strip(_WS)


def field_map(raw: bytes, fields: list[Field]) -> dict[bytes, bytes]:
    """First occurrence of each field name -> unfolded raw value."""
    out: dict[bytes, bytes] = {}
    for name, _fs, vs, fe in fields:
        if name and name not in out:
            out[name] = unfold(raw[vs:fe])
    return out


def bytes_to_text(value: bytes) -> str:
    """Header octets to str: UTF-8 when valid (RFC 6532), Latin-1 otherwise (never fails)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def decode_charset(data: bytes, charset: str | None) -> str:
    """Decode ``data`` in ``charset``, tolerating unknown or bogus charsets."""
    cs = (charset or "").strip().strip('"').lower()
    if cs in ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "default"):
        cs = "utf-8"
    try:
        return data.decode(cs, "replace")
    except Exception:  # LookupError, non-text codecs, codec bugs
        return bytes_to_text(data)


_EW = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def b64decode_lenient(data: bytes) -> bytes:
    """Base64 decode ignoring junk characters and bad padding."""
    data = _B64_JUNK.sub(b"", data)
    data = data[: len(data) - (len(data) % 4)] if len(data) % 4 == 1 else data
    data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        return b""


def decode_words(text: str) -> str:
    """RFC 2047 decoding: encoded-words decoded; linear whitespace between adjacent
    encoded-words dropped (section 6.2); adjacent words in one charset decoded together so a
    multi-byte character split across words survives."""
    if "=?" not in text:
        return text
    out: list[str] = []
    pending = bytearray()
    pending_cs: str | None = None
    pos = 0
    for m in _EW.finditer(text):
        between = text[pos : m.start()]
        charset, enc, payload = m.group(1), m.group(2), m.group(3)
        if enc in "bB":
            data = b64decode_lenient(payload.encode("ascii", "replace"))
        else:
            try:
                data = binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
            except (binascii.Error, ValueError):
                data = payload.encode("ascii", "replace")
        adjacent = pos > 0 and between.strip(" \t\r\n") == "" and pending_cs is not None
        if adjacent and charset.lower() == pending_cs:
            pending += data
        else:
            if pending_cs is not None:
                out.append(decode_charset(bytes(pending), pending_cs))
            if not adjacent:
                out.append(between)
            pending = bytearray(data)
            pending_cs = charset.lower()
        pos = m.end()
    if pending_cs is not None:
        out.append(decode_charset(bytes(pending), pending_cs))
    out.append(text[pos:])
    return "".join(out)


def decode_header_value(value: bytes) -> str:
    """Raw (already unfolded) header octets -> display text."""
    return decode_words(bytes_to_text(value))


_COMMENT = re.compile(r"\([^()]*\)")


def parse_date(value: str | bytes | None) -> datetime | None:
    """RFC 5322 date-time to an aware datetime, tolerant of common junk; None if hopeless.

    A missing or ``-0000`` zone is taken as UTC (RFC 5322 section 3.3).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = _COMMENT.sub(" ", value).strip()
    if not value or len(value) > 200:
        return None
    try:
        tup = parsedate_tz(value)
    except Exception:
        return None
    if tup is None:
        return None
    year, month, day, hour, minute, second = tup[:6]
    off = tup[9]
    try:
        if year < 100:
            year += 2000 if year < 50 else 1900
        tz = timezone.utc if not off else timezone(timedelta(seconds=off))
        return datetime(year, month, day, hour, minute, min(second, 59), tzinfo=tz)
    except (ValueError, OverflowError, TypeError):
        try:
            return datetime(year, month, day, tzinfo=timezone.utc)
        except (ValueError, OverflowError, TypeError):
            return None
