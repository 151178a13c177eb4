"""Low-level IMAP lexical grammar: a cursor over one complete command.

RFC 9051 section 9 (formal syntax), the productions used here::

    atom            = 1*ATOM-CHAR
    ATOM-CHAR       = <any CHAR except atom-specials>
    atom-specials   = "(" / ")" / "{" / SP / CTL / list-wildcards /
                      quoted-specials / resp-specials
    list-wildcards  = "%" / "*"
    quoted-specials = DQUOTE / "\\"
    resp-specials   = "]"
    astring         = 1*ASTRING-CHAR / string
    ASTRING-CHAR    = ATOM-CHAR / resp-specials
    tag             = 1*<any ASTRING-CHAR except "+">
    list-mailbox    = 1*list-char / string
    list-char       = ATOM-CHAR / list-wildcards / resp-specials
    string          = quoted / literal
    quoted          = DQUOTE *QUOTED-CHAR DQUOTE
    QUOTED-CHAR     = <any TEXT-CHAR except quoted-specials> /
                      "\\" quoted-specials / UTF8-2 / UTF8-3 / UTF8-4
    literal         = "{" number64 ["+"] "}" CRLF *CHAR8
    literal8        = "~{" number64 ["+"] "}" CRLF *OCTET      ; RFC 3516, RFC 7888
    number          = 1*DIGIT        ; unsigned 32-bit
    number64        = 1*DIGIT        ; unsigned 63-bit
    nz-number       = digit-nz *DIGIT

The cursor never reads from a socket: literal contents are already inline in the
buffer (the connection object assembles a command with its literals).
Every failure raises :class:`ParseError`, which ``parse_command`` turns into an
``InvalidCommand`` value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar

T = TypeVar("T")

__all__ = [
    "ParseError",
    "Reader",
    "ATOM_RE",
    "ASTRING_RE",
    "TAG_RE",
    "LIST_CHARS_RE",
    "MAX_NUMBER",
    "MAX_NUMBER64",
]

MAX_NUMBER = 2**32 - 1
MAX_NUMBER64 = 2**63 - 1

# ATOM-CHAR = %x21 / %x23-24 / %x26-27 / %x2B-5B / %x5E-7A / %x7C-7E
_ATOM_CLASS = rb"\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e"
ATOM_RE = re.compile(rb"[" + _ATOM_CLASS + rb"]+")
# ASTRING-CHAR = ATOM-CHAR / "]"
ASTRING_RE = re.compile(rb"[" + _ATOM_CLASS + rb"\x5d]+")
# tag = 1*<any ASTRING-CHAR except "+">
TAG_RE = re.compile(rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+")
# list-char = ATOM-CHAR / list-wildcards / resp-specials
LIST_CHARS_RE = re.compile(rb"[" + _ATOM_CLASS + rb"\x25\x2a\x5d]+")
_DIGITS_RE = re.compile(rb"[0-9]+")
_LITERAL_RE = re.compile(rb"(~?)\{([0-9]{1,19})(\+?)\}\r?\n")
_TOKEN_RE = re.compile(rb"[^ \r\n]+")
# base64 = *(4base64-char) [base64-terminal]
_BASE64_RE = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")

_MONTHS = {
    b"JAN": 1, b"FEB": 2, b"MAR": 3, b"APR": 4, b"MAY": 5, b"JUN": 6,
    b"JUL": 7, b"AUG": 8, b"SEP": 9, b"OCT": 10, b"NOV": 11, b"DEC": 12,
}
# date-text = date-day "-" date-month "-" date-year
_DATE_RE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
# (date-day-fixed = (SP DIGIT) / 2DIGIT; a single digit is accepted too, leniently)
_DATE_TIME_RE = re.compile(
    rb'"( ?[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)


class ParseError(Exception):
    """Bad syntax at some position; becomes ``InvalidCommand`` (answered with BAD)."""

    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class Reader:
    """A cursor over one command's bytes (literal contents inline).

    Methods named after ABNF productions consume that production or raise
    :class:`ParseError`. ``peek``/``at``/``try_*`` look ahead without failing.
    """

    __slots__ = ("data", "pos", "end", "literals")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None,
                 literals: dict[int, bytearray] | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        # Large APPEND literals kept out of ``data`` by the connection: the offset where their
        # contents would start -> the contents (ImapConnection, OUT_OF_LINE).
        self.literals = literals

    # -- looking ahead -------------------------------------------------------
    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek(self) -> int:
        """The next byte value, or -1 at the end."""
        return self.data[self.pos] if self.pos < self.end else -1

    def at(self, token: bytes) -> bool:
        """True when the input continues with ``token`` (exact bytes)."""
        return self.data.startswith(token, self.pos, self.end)

    def at_keyword(self, word: bytes) -> bool:
        """True when the input continues with ``word`` case-insensitively and the
        word is not followed by another atom character."""
        n = len(word)
        if self.data[self.pos : self.pos + n].upper() != word:
            return False
        m = ATOM_RE.match(self.data, self.pos + n, self.end)
        return m is None

    def fail(self, message: str) -> ParseError:
        return ParseError(message, self.pos)

    # -- single tokens ------------------------------------------------------
    def expect(self, token: bytes, what: str | None = None) -> None:
        if not self.data.startswith(token, self.pos, self.end):
            raise self.fail(f"expected {what or repr(token.decode('ascii'))}")
        self.pos += len(token)

    def sp(self) -> None:
        """Exactly one SP (RFC 9051 section 9 note 2: never TAB, never two)."""
        if self.pos < self.end and self.data[self.pos] == 0x20:
            self.pos += 1
            return
        raise self._bad_char("a space")

    def try_sp(self) -> bool:
        if self.pos < self.end and self.data[self.pos] == 0x20:
            self.pos += 1
            return True
        return False

    def keyword(self, word: bytes) -> None:
        """Consume the case-insensitive keyword ``word`` or fail."""
        if not self.at_keyword(word):
            raise self.fail(f"expected {word.decode('ascii')}")
        self.pos += len(word)

    def try_keyword(self, word: bytes) -> bool:
        if self.at_keyword(word):
            self.pos += len(word)
            return True
        return False

    def atom(self, what: str = "an atom") -> bytes:
        m = ATOM_RE.match(self.data, self.pos, self.end)
        if m is None:
            raise self._bad_char(what)
        self.pos = m.end()
        return m.group()

    def _bad_char(self, what: str) -> ParseError:
        if self.pos >= self.end:
            return self.fail(f"expected {what}, got end of command")
        b = self.data[self.pos]
        if b >= 0x80:
            return self.fail(f"expected {what}, got an 8-bit byte")
        if b < 0x20 or b == 0x7F:
            return self.fail(f"expected {what}, got a control character")
        return self.fail(f"expected {what}, got {chr(b)!r}")

    def upper_atom(self, what: str = "an atom") -> str:
        return self.atom(what).upper().decode("ascii")

    def number(self, what: str = "a number", *, limit: int = MAX_NUMBER) -> int:
        m = _DIGITS_RE.match(self.data, self.pos, self.end)
        if m is None:
            raise self.fail(f"expected {what}")
        digits = m.group()
        if len(digits) > 20 or int(digits) > limit:
            raise self.fail(f"{what} is too large")
        self.pos = m.end()
        return int(digits)

    def nz_number(self, what: str = "a non-zero number", *, limit: int = MAX_NUMBER) -> int:
        n = self.number(what, limit=limit)
        if n == 0:
            raise ParseError(f"{what} must not be zero", self.pos)
        return n

    def number64(self, what: str = "a number") -> int:
        return self.number(what, limit=MAX_NUMBER64)

    # -- strings ------------------------------------------------------------
    def quoted(self) -> bytes:
        """``quoted``: returns the unescaped contents."""
        data, i, end = self.data, self.pos + 1, self.end
        if self.pos >= end or data[self.pos] != 0x22:
            raise self.fail("expected a quoted string")
        # Fast path: no escapes.
        j = data.find(b'"', i, end)
        if j < 0:
            raise self.fail("unterminated quoted string")
        k = data.find(b"\\", i, j)
        if k < 0:
            out = data[i:j]
            self.pos = j + 1
        else:
            buf = bytearray()
            while True:
                if i >= end:
                    raise self.fail("unterminated quoted string")
                c = data[i]
                if c == 0x22:
                    break
                if c == 0x5C:
                    if i + 1 >= end or data[i + 1] not in (0x22, 0x5C):
                        raise ParseError("invalid escape in quoted string", i)
                    buf.append(data[i + 1])
                    i += 2
                    continue
                buf.append(c)
                i += 1
            out = bytes(buf)
            self.pos = i + 1
        if b"\r" in out or b"\n" in out or b"\x00" in out:
            raise self.fail("CR, LF or NUL in a quoted string")
        if not out.isascii():
            # RFC 9051: QUOTED-CHAR =/ UTF8-2 / UTF8-3 / UTF8-4 (valid UTF-8 only).
            try:
                out.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("8-bit bytes in a quoted string that are not UTF-8") from None
        return out

    def literal(self, *, allow_literal8: bool = False) -> tuple[bytes, bool]:
        """``literal`` (or ``literal8`` when allowed): returns (contents, is_literal8).

        The contents are copied out of the buffer exactly once.
        """
        m = _LITERAL_RE.match(self.data, self.pos, self.end)
        if m is None:
            raise self.fail("expected a literal")
        binary = bool(m.group(1))
        if binary and not allow_literal8:
            raise self.fail("literal8 (~{n}) is not allowed here")
        size = int(m.group(2))
        if size > MAX_NUMBER64:
            raise self.fail("literal size is too large")
        start = m.end()
        outside = self.literals.get(start) if self.literals else None
        if outside is not None:
            if len(outside) != size:
                raise self.fail("literal is shorter than announced")
            if not binary and b"\x00" in outside:
                raise self.fail("NUL in a literal (use literal8)")
            self.pos = start
            return outside, binary  # type: ignore[return-value]  (a bytearray: never copied)
        stop = start + size
        if stop > self.end:
            raise self.fail("literal is shorter than announced")
        value = self.data[start:stop]
        if not binary and b"\x00" in value:
            # literal = ... *CHAR8, and CHAR8 = %x01-ff (RFC 9051 section 9)
            raise self.fail("NUL in a literal (use literal8)")
        self.pos = stop
        return value, binary

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()[0]
        raise self._bad_char("a string")

    def astring(self, what: str = "an astring") -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()[0]
        m = ASTRING_RE.match(self.data, self.pos, self.end)
        if m is None:
            raise self._bad_char(what)
        self.pos = m.end()
        return m.group()

    def nstring(self) -> bytes | None:
        if self.try_keyword(b"NIL"):
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        """``list-mailbox = 1*list-char / string`` (wildcards kept as-is)."""
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        m = LIST_CHARS_RE.match(self.data, self.pos, self.end)
        if m is None:
            raise self._bad_char("a mailbox pattern")
        self.pos = m.end()
        return m.group()

    def mailbox(self) -> bytes:
        """``mailbox = "INBOX" / astring``; INBOX in any case becomes b"INBOX"."""
        raw = self.astring("a mailbox name")
        if len(raw) == 5 and raw.upper() == b"INBOX":
            return b"INBOX"
        return raw

    def base64(self, what: str = "base64 data") -> bytes:
        """A ``base64`` token (still encoded) running to the next SP/CR/LF."""
        m = _TOKEN_RE.match(self.data, self.pos, self.end)
        if m is None:
            raise self.fail(f"expected {what}")
        if not _BASE64_RE.fullmatch(m.group()):
            raise self.fail(f"invalid base64 in {what}")
        self.pos = m.end()
        return m.group()

    # -- dates ----------------------------------------------------------------
    def date(self) -> date:
        """``date = date-text / DQUOTE date-text DQUOTE`` (SEARCH BEFORE/ON/SINCE...)."""
        quoted = self.peek() == 0x22
        if quoted:
            self.pos += 1
        m = _DATE_RE.match(self.data, self.pos, self.end)
        if m is None:
            raise self.fail("expected a date like 1-Feb-1994")
        month = _MONTHS.get(m.group(2).upper())
        if month is None:
            raise self.fail("invalid month name")
        try:
            value = date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            raise self.fail("invalid date") from None
        self.pos = m.end()
        if quoted:
            self.expect(b'"', "a closing quote")
        return value

    def date_time(self) -> datetime:
        """``date-time`` as used by APPEND; returns an aware datetime."""
        m = _DATE_TIME_RE.match(self.data, self.pos, self.end)
        if m is None:
            raise self.fail('expected a date-time like "17-Jul-1996 02:44:25 -0700"')
        month = _MONTHS.get(m.group(2).upper())
        if month is None:
            raise self.fail("invalid month name")
        hours, minutes = int(m.group(8)), int(m.group(9))
        if minutes > 59 or hours > 23:
            raise self.fail("invalid time zone")
        offset = timedelta(hours=hours, minutes=minutes)
        if m.group(7) == b"-":
            offset = -offset
        try:
            value = datetime(
                int(m.group(3)), month, int(m.group(1)),
                int(m.group(4)), int(m.group(5)), int(m.group(6)),
                tzinfo=timezone(offset),
            )
        except ValueError:
            raise self.fail("invalid date-time") from None
        self.pos = m.end()
        return value

    # -- lists --------------------------------------------------------------
    def paren_list(
        self, item: Callable[[], T], *, allow_empty: bool = True, what: str = "list"
    ) -> list[T]:
        """``"(" [item *(SP item)] ")"``; ``item`` is a callable consuming one item."""
        self.expect(b"(", f"'(' starting the {what}")
        out: list[T] = []
        if self.peek() == 0x29:
            if not allow_empty:
                raise self.fail(f"the {what} must not be empty")
            self.pos += 1
            return out
        while True:
            out.append(item())
            if self.peek() == 0x29:
                self.pos += 1
                return out
            if self.peek() == -1:
                raise self.fail(f"unterminated {what} (missing ')')")
            self.sp()
