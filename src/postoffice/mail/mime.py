"""Iterative MIME structure parser over the original message bytes.

:func:`parse` returns a :class:`Part` tree whose offsets index the raw message; nothing is
re-serialised.  The parse uses an explicit work stack (no recursion), nesting is capped at
:data:`MAX_DEPTH` (deeper multiparts/messages become opaque ``application/octet-stream``
leaves) and the total part count at :data:`MAX_PARTS`.

Offsets of a part: ``raw[header_start:body_start]`` is its header block *including* the blank
line that ends it (``header_end == body_start``); ``raw[body_start:body_end]`` is its body.  For a
multipart body, the CRLF before each delimiter line belongs to the delimiter (RFC 2046 5.1.1),
so children end before it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from .headers import field_map, find_header_end, split_fields

MAX_DEPTH = 64
MAX_PARTS = 10_000

_TOKEN = r"[^\x00-\x20()<>@,;:\\\"/\[\]?=\x7f]+"
_TYPE_RE = re.compile(r"\s*(" + _TOKEN + r")\s*/\s*(" + _TOKEN + r")")
_LEAD_TOKEN_RE = re.compile(r"\s*(" + _TOKEN + r")")
_PARAM_RE = re.compile(
    r";\s*(" + _TOKEN + r")\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"?|([^;\s]*))", re.S
)
_UNESCAPE = re.compile(r"\\(.)", re.S)
_COMMENTS = re.compile(r"\((?:[^()\\]|\\.)*\)")


def _text(value: bytes) -> str:
    # Round-trips exactly back to the original octets (see Part docs).
    return value.decode("utf-8", "surrogateescape")


def parse_params(rest: str) -> list[tuple[str, str]]:
    """``; name=value`` pairs (names lower-cased, quoted values unescaped), in order."""
    out: list[tuple[str, str]] = []
    if ";" not in rest:
        return out
    for m in _PARAM_RE.finditer(rest):
        name = m.group(1).lower()
        if m.group(2) is not None:
            value = _UNESCAPE.sub(r"\1", m.group(2))
        else:
            value = m.group(3) or ""
        out.append((name, value))
    return out


def parse_content_type(value: str | None) -> tuple[str, str, list[tuple[str, str]]] | None:
    """``type/subtype; params`` -> lower-cased (type, subtype, params); None if invalid."""
    if value is None:
        return None
    m = _TYPE_RE.match(value)
    if not m:
        return None
    return m.group(1).lower(), m.group(2).lower(), parse_params(value[m.end() :])


def parse_disposition(value: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    if value is None:
        return None
    m = _LEAD_TOKEN_RE.match(value)
    if not m:
        return None
    return m.group(1).lower(), parse_params(value[m.end() :])


def _strip_comments(value: str) -> str:
    if "(" not in value:
        return value.strip()
    return _COMMENTS.sub(" ", value).strip()


@dataclass(slots=True)
class Part:
    """One MIME entity.  String attributes are the header octets decoded as UTF-8 with
    ``surrogateescape`` (``.encode("utf-8", "surrogateescape")`` gives the original bytes)."""

    header_start: int
    body_start: int
    body_end: int
    type: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, str]] = field(default_factory=list)
    id: str | None = None
    description: str | None = None
    encoding: str | None = None  # lower-cased token, None when the header is absent
    disposition: tuple[str, list[tuple[str, str]]] | None = None
    language: list[str] | None = None
    location: str | None = None
    md5: str | None = None
    lines: int | None = None  # text/* and message/rfc822|global only
    children: list[Part] = field(default_factory=list)  # multipart children
    message: Part | None = None  # encapsulated message of message/rfc822|global

    @property
    def header_end(self) -> int:
        return self.body_start

    @property
    def size(self) -> int:
        """Body size in octets (BODYSTRUCTURE body-fld-octets)."""
        return self.body_end - self.body_start

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    @property
    def is_message(self) -> bool:
        """message/rfc822 or message/global with a parsed encapsulated message."""
        return self.message is not None

    def param(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.params:
            if k == name:
                return v
        return None

    def walk(self) -> Iterator[Part]:
        """Pre-order walk over this part, its children and encapsulated messages (iterative)."""
        stack = [self]
        while stack:
            p = stack.pop()
            yield p
            if p.message is not None:
                stack.append(p.message)
            stack.extend(reversed(p.children))

    # ---- compact JSON -------------------------------------------------------------------
    def to_list(self) -> list[Any]:
        return [
            self.header_start,
            self.body_start,
            self.body_end,
            self.type,
            self.subtype,
            [list(p) for p in self.params],
            self.id,
            self.description,
            self.encoding,
            None if self.disposition is None else [self.disposition[0], [list(p) for p in self.disposition[1]]],
            self.language,
            self.location,
            self.md5,
            self.lines,
            [c.to_list() for c in self.children],
            None if self.message is None else self.message.to_list(),
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> Part:
        dsp = data[9]
        return cls(
            header_start=data[0],
            body_start=data[1],
            body_end=data[2],
            type=data[3],
            subtype=data[4],
            params=[(k, v) for k, v in data[5]],
            id=data[6],
            description=data[7],
            encoding=data[8],
            disposition=None if dsp is None else (dsp[0], [(k, v) for k, v in dsp[1]]),
            language=data[10],
            location=data[11],
            md5=data[12],
            lines=data[13],
            children=[cls.from_list(c) for c in data[14]],
            message=None if data[15] is None else cls.from_list(data[15]),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_list(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Part:
        return cls.from_list(json.loads(text))


def _count_lines(raw: bytes, start: int, end: int) -> int:
    if end <= start:
        return 0
    n = raw.count(b"\n", start, end)
    if raw[end - 1] != 0x0A:
        n += 1
    return n


def _split_multipart(
    raw: bytes, start: int, end: int, boundary: bytes, limit: int = MAX_PARTS
) -> list[tuple[int, int]]:
    """Body-part regions of the multipart body raw[start:end] (RFC 2046 section 5.1.1).

    A delimiter line is ``--boundary`` at a line start, optionally ``--`` (close), then only
    transport padding.  Preamble and epilogue are skipped; a missing close-delimiter ends the
    last part at the end of the region.  After ``limit`` parts the rest of the region is
    folded into the last part (bounded work for hostile input).
    """
    delim = b"--" + boundary
    dlen = len(delim)
    regions: list[tuple[int, int]] = []
    cur: int | None = None
    pos = start
    find = raw.find
    while True:
        i = find(delim, pos, end)
        if i < 0:
            break
        if i != start and raw[i - 1] != 0x0A:
            pos = i + 1
            continue
        j = i + dlen
        close = raw.startswith(b"--", j, end)
        k = j + 2 if close else j
        nl = find(b"\n", k, end)
        line_end = end if nl < 0 else nl + 1
        if raw[k:line_end].strip(b" \t\r\n"):
            pos = i + 1  # e.g. a longer boundary sharing this prefix
            continue
        if cur is not None:
            e = i
            if e > cur and raw[e - 1] == 0x0A:
                e -= 1
                if e > cur and raw[e - 1] == 0x0D:
                    e -= 1
            regions.append((cur, e))
        if close:
            cur = None
            break
        cur = line_end
        pos = line_end
        if len(regions) >= limit - 1:
            break  # this last allowed part runs to the end of the region
    if cur is not None:
        regions.append((cur, end))
    return regions


def _fill_headers(raw: bytes, part: Part, start: int, end: int, in_digest: bool) -> None:
    """Parse the header block of the entity raw[start:end] into ``part``."""
    body_start = find_header_end(raw, start, end)
    part.header_start = start
    part.body_start = body_start
    part.body_end = end
    fields = split_fields(raw, start, body_start)
    # Only Content-* fields matter for structure; skip the rest cheaply.
    content = [f for f in fields if f[0].startswith(b"content-")]
    fm = field_map(raw, content) if content else {}

    ct_raw = fm.get(b"content-type")
    ct = parse_content_type(_text(ct_raw)) if ct_raw is not None else None
    if ct is None:
        # RFC 2045 5.2: absent or invalid Content-Type -> text/plain; charset=us-ascii,
        # except in multipart/digest where the default is message/rfc822 (RFC 2046 5.1.5).
        if in_digest and ct_raw is None:
            part.type, part.subtype, part.params = "message", "rfc822", []
        else:
            part.type, part.subtype, part.params = "text", "plain", []
    else:
        part.type, part.subtype, part.params = ct

    v = fm.get(b"content-id")
    part.id = _text(v) if v is not None else None
    v = fm.get(b"content-description")
    part.description = _text(v) if v is not None else None
    v = fm.get(b"content-transfer-encoding")
    if v is not None:
        enc = _strip_comments(_text(v)).lower()
        part.encoding = enc or None
    v = fm.get(b"content-disposition")
    if v is not None:
        part.disposition = parse_disposition(_text(v))
    v = fm.get(b"content-language")
    if v is not None:
        langs = [t for t in re.split(r"[\s,]+", _strip_comments(_text(v))) if t]
        part.language = langs or None
    v = fm.get(b"content-location")
    part.location = _text(v) if v is not None else None
    v = fm.get(b"content-md5")
    part.md5 = _text(v) if v is not None else None


def parse(raw: bytes, max_depth: int = MAX_DEPTH, max_parts: int = MAX_PARTS) -> Part:
    """Parse ``raw`` (a whole RFC 5322 message) into a :class:`Part` tree. Never raises for
    any input bytes; cost is linear in ``len(raw)`` times the (capped) nesting depth."""
    n = len(raw)
    root = Part(0, 0, n)
    # work item: (part, start, end, depth, parent-is-digest)
    stack: list[tuple[Part, int, int, int, bool]] = [(root, 0, n, 0, False)]
    count = 1
    while stack:
        part, start, end, depth, in_digest = stack.pop()
        _fill_headers(raw, part, start, end, in_digest)
        bs, be = part.body_start, part.body_end
        if part.type == "multipart":
            boundary = part.param("boundary")
            if not boundary:
                # RFC 2046 5.1.1: boundary is mandatory; treat as invalid Content-Type.
                part.type, part.subtype, part.params = "text", "plain", []
            elif depth >= max_depth or count >= max_parts:
                part.type, part.subtype = "application", "octet-stream"
            else:
                regions = _split_multipart(
                    raw, bs, be, boundary.encode("utf-8", "surrogateescape"),
                    max(max_parts - count, 1),
                )
                digest = part.subtype == "digest"
                if not regions:
                    # Garbage/missing delimiters: expose the whole body as one implicit
                    # text/plain part with an empty header so nothing is hidden.
                    child = Part(bs, bs, be, lines=_count_lines(raw, bs, be))
                    part.children.append(child)
                    count += 1
                else:
                    for s, e in regions:
                        child = Part(s, s, e)
                        part.children.append(child)
                        stack.append((child, s, e, depth + 1, digest))
                    count += len(regions)
                continue
        if part.type == "message" and part.subtype in ("rfc822", "global"):
            if depth >= max_depth or count >= max_parts:
                part.type, part.subtype = "application", "octet-stream"
            else:
                inner = Part(bs, bs, be)
                part.message = inner
                part.lines = _count_lines(raw, bs, be)
                stack.append((inner, bs, be, depth + 1, False))
                count += 1
                continue
        if part.type == "text":
            part.lines = _count_lines(raw, bs, be)
    return root


def canonicalize_crlf(raw: bytes) -> bytes:
    """Bare LF (and bare CR) line ends -> CRLF.  The store should keep this canonical form so
    RFC822.SIZE and BODY[] octet counts match what IMAP sends (RFC 9051 requires CRLF)."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") == crlf and raw.count(b"\r") == crlf:
        return raw  # already canonical: the common case, three C-speed scans
    return re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
