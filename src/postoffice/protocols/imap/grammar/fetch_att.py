"""FETCH data items (RFC 9051 section 6.4.5, RFC 3501 section 6.4.5, RFC 3516
BINARY, RFC 7162 MODSEQ)::

    fetch-att       = "ENVELOPE" / "FLAGS" / "INTERNALDATE" /
                      "RFC822" [".HEADER" / ".TEXT" / ".SIZE"] /
                      "BODY" ["STRUCTURE"] / "UID" / "MODSEQ" /
                      "BODY" section [partial] / "BODY.PEEK" section [partial] /
                      "BINARY" [".PEEK"] section-binary [partial] /
                      "BINARY.SIZE" section-binary
    partial         = "<" number "." nz-number ">"
    section-binary  = "[" [section-part] "]"
    section         = "[" [section-spec] "]"
    section-spec    = section-msgtext / (section-part ["." section-text])
    section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
    section-part    = nz-number *("." nz-number)
    section-text    = section-msgtext / "MIME"
    header-list     = "(" header-fld-name *(SP header-fld-name) ")"
    header-fld-name = astring

Accepted beyond that grammar, as Dovecot does (imaptest's fetch-binary-mime scripts use them):
a BINARY section may be any ``section`` (``BINARY[TEXT]``, ``BINARY[2.MIME]``,
``BINARY[2.HEADER.FIELDS (FROM)]``), and a partial may omit its length (``<origin>``: to the
end).

The macros ALL, FAST and FULL are expanded by the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .reader import ASTRING_RE, ParseError, Reader

__all__ = ["Section", "FetchAtt", "parse_fetch_att", "parse_fetch_atts", "FETCH_MACROS"]

# The name part of a fetch-att: letters, digits and dots.
_NAME_RE = re.compile(rb"[A-Za-z0-9.]+")
_PART_RE = re.compile(rb"[0-9]+(?:\.[0-9]+)*")
_PARTIAL_RE = re.compile(rb"<([0-9]{1,10})(?:\.([0-9]{1,10}))?>")


@dataclass(frozen=True, slots=True)
class Section:
    """A body section: ``part`` numbers (``()`` = the whole message), then
    ``text`` one of None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
    "TEXT", "MIME"; ``headers`` lists the field names for HEADER.FIELDS[.NOT]
    as the client spelled them (compare case-insensitively)."""

    part: tuple[int, ...] = ()
    text: str | None = None
    headers: tuple[str, ...] = ()

    def __bytes__(self) -> bytes:
        out = ".".join(str(p) for p in self.part)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
        if self.headers:
            out += " (" + " ".join(_header_name(h) for h in self.headers) + ")"
        return b"[" + out.encode("ascii") + b"]"


def _header_name(name: str) -> str:
    raw = name.encode("ascii")
    if ASTRING_RE.fullmatch(raw):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One FETCH data item.

    ``name`` is one of: ENVELOPE, FLAGS, INTERNALDATE, RFC822, RFC822.HEADER,
    RFC822.TEXT, RFC822.SIZE, BODY, BODYSTRUCTURE, UID, MODSEQ, BINARY,
    BINARY.SIZE. ``BODY`` with ``section=None`` is the non-extensible body
    structure; ``BODY`` with a section is ``BODY[...]`` (``peek`` for
    BODY.PEEK). BINARY/BINARY.SIZE always carry a section.
    ``partial`` is ``(origin, length)``; length None means "to the end".
    """

    name: str
    section: Section | None = None
    partial: tuple[int, int | None] | None = None
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        """True if fetching this item implicitly sets \\Seen (RFC 9051 6.4.5)."""
        if self.peek:
            return False
        return self.name in ("RFC822", "RFC822.TEXT", "BINARY") or (
            self.name == "BODY" and self.section is not None
        )

    def response_name(self) -> bytes:
        """The item name to use in the FETCH response: ``BODY[1.MIME]``,
        ``BODY[]<0>`` for partial requests (only the origin is echoed),
        ``BINARY[1]``, ``BINARY.SIZE[1]``; PEEK is dropped."""
        if self.section is None:
            return self.name.encode("ascii")
        out = self.name.encode("ascii") + bytes(self.section)
        if self.partial is not None:
            out += b"<%d>" % self.partial[0]
        return out

    def __bytes__(self) -> bytes:
        """The request form (round-trips through the parser)."""
        if self.section is None:
            return self.name.encode("ascii")
        name = self.name + (".PEEK" if self.peek else "")
        out = name.encode("ascii") + bytes(self.section)
        if self.partial is not None:
            origin, length = self.partial
            out += b"<%d>" % origin if length is None else b"<%d.%d>" % (origin, length)
        return out


_SIMPLE = {
    b"ENVELOPE", b"FLAGS", b"INTERNALDATE", b"RFC822", b"RFC822.HEADER", b"RFC822.TEXT",
    b"RFC822.SIZE", b"BODYSTRUCTURE", b"UID", b"MODSEQ",
}

FETCH_MACROS: dict[bytes, tuple[FetchAtt, ...]] = {
    b"ALL": (FetchAtt("FLAGS"), FetchAtt("INTERNALDATE"), FetchAtt("RFC822.SIZE"), FetchAtt("ENVELOPE")),
    b"FAST": (FetchAtt("FLAGS"), FetchAtt("INTERNALDATE"), FetchAtt("RFC822.SIZE")),
    b"FULL": (
        FetchAtt("FLAGS"), FetchAtt("INTERNALDATE"), FetchAtt("RFC822.SIZE"),
        FetchAtt("ENVELOPE"), FetchAtt("BODY"),
    ),
}


def _section(r: Reader) -> Section:
    r.expect(b"[")
    part: tuple[int, ...] = ()
    m = _PART_RE.match(r.data, r.pos, r.end)
    if m is not None:
        numbers = m.group().split(b".")
        if any(len(n) > 10 or int(n) == 0 or int(n) > 2**32 - 1 for n in numbers):
            raise r.fail("section part numbers must be non-zero 32-bit numbers")
        part = tuple(int(n) for n in numbers)
        r.pos = m.end()
        if r.peek() == 0x5D:
            r.expect(b"]", "']' closing the section")
            return Section(part)
        r.expect(b".", "'.' or ']' in the section")
    elif r.peek() == 0x5D:
        r.pos += 1
        return Section()
    n = _NAME_RE.match(r.data, r.pos, r.end)
    word = n.group().upper() if n else b""
    if word in (b"HEADER", b"TEXT") or (word == b"MIME" and part):
        r.pos = n.end()  # type: ignore[union-attr]
        r.expect(b"]", "']' closing the section")
        return Section(part, word.decode())
    if word in (b"HEADER.FIELDS", b"HEADER.FIELDS.NOT"):
        r.pos = n.end()  # type: ignore[union-attr]
        r.sp()
        names = r.paren_list(lambda: r.astring("a header field name"), allow_empty=False, what="header list")
        headers = []
        for name in names:
            if not name or not name.isascii() or b":" in name or any(c <= 0x20 or c == 0x7F for c in name):
                raise r.fail("invalid header field name")
            headers.append(name.decode("ascii"))
        r.expect(b"]", "']' closing the section")
        return Section(part, word.decode(), tuple(headers))
    raise r.fail("invalid section (expected HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME)")


def _partial(r: Reader) -> tuple[int, int | None] | None:
    if r.peek() != 0x3C:
        return None
    m = _PARTIAL_RE.match(r.data, r.pos, r.end)
    if m is None:
        raise r.fail("invalid partial (expected <origin.length>)")
    origin = int(m.group(1))
    length = None if m.group(2) is None else int(m.group(2))
    if length == 0 or origin > 2**32 - 1 or (length or 0) > 2**32 - 1:
        raise r.fail("partial length must be a non-zero 32-bit number")
    r.pos = m.end()
    return origin, length


def parse_fetch_att(r: Reader) -> FetchAtt:
    """Consume one ``fetch-att`` (no macros)."""
    m = _NAME_RE.match(r.data, r.pos, r.end)
    if m is None:
        raise r.fail("expected a fetch attribute")
    word = m.group().upper()
    start = r.pos
    r.pos = m.end()
    has_section = r.peek() == 0x5B
    if word in _SIMPLE and not has_section:
        return FetchAtt(word.decode())
    if word in (b"BODY", b"BODY.PEEK"):
        if not has_section:
            if word == b"BODY.PEEK":
                raise r.fail("BODY.PEEK needs a section")
            return FetchAtt("BODY")
        section = _section(r)
        return FetchAtt("BODY", section, _partial(r), peek=word == b"BODY.PEEK")
    if word in (b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"):
        if not has_section:
            raise r.fail(f"{word.decode()} needs a section")
        section = _section(r)
        if word == b"BINARY.SIZE":
            return FetchAtt("BINARY.SIZE", section)
        return FetchAtt("BINARY", section, _partial(r), peek=word == b"BINARY.PEEK")
    raise ParseError(f"unknown fetch attribute {m.group().decode('ascii')!r}", start)


def parse_fetch_atts(r: Reader) -> tuple[FetchAtt, ...]:
    """``"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"``."""
    if r.peek() == 0x28:
        return tuple(r.paren_list(lambda: parse_fetch_att(r), allow_empty=False, what="fetch attribute list"))
    for name, items in FETCH_MACROS.items():
        if r.at_keyword(name):
            r.pos += len(name)
            return items
    return (parse_fetch_att(r),)
