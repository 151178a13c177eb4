"""Tiny IMAP string encoder (RFC 9051 section 4.3) for wire formats built in ``mail/``.

``mail/`` cannot import the IMAP protocol package, so ENVELOPE and BODYSTRUCTURE use this local
encoder.  Output is always valid for an IMAP4rev1 *and* IMAP4rev2 client without UTF8=ACCEPT:
8-bit text goes out as a synchronising literal, never as a quoted string.
"""

from __future__ import annotations

import re

NIL = b"NIL"

# quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR is any TEXT-CHAR (7-bit, no CR/LF/NUL)
# with '"' and '\' escaped.  Anything else needs a literal.
_NEEDS_LITERAL = re.compile(rb"[^\x01-\x09\x0b\x0c\x0e-\x7f]")
_QUOTED_SPECIALS = re.compile(rb'(["\\])')


def quoted(value: bytes) -> bytes:
    """Quote ``value``; caller guarantees it is quotable (see :func:`string`)."""
    return b'"' + _QUOTED_SPECIALS.sub(rb"\\\1", value) + b'"'


def literal(value: bytes) -> bytes:
    """A synchronising literal ``{n}\\r\\n`` + octets.  NUL is not allowed in a literal
    (RFC 9051 ``CHAR8``), so NUL octets are dropped."""
    value = value.replace(b"\x00", b"")
    return b"{%d}\r\n" % len(value) + value


def string(value: bytes | str) -> bytes:
    """Encode as ``string``: quoted when safe, literal otherwise (8-bit, CR, LF)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if len(value) > 1024 or _NEEDS_LITERAL.search(value):
        return literal(value)
    return quoted(value)


def nstring(value: bytes | str | None) -> bytes:
    """Encode as ``nstring``: NIL for None, otherwise :func:`string`."""
    if value is None:
        return NIL
    return string(value)
