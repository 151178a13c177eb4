"""POP3 replies and the multi-line body helpers (dot-stuffing, TOP).

Replies are frozen dataclasses serialised with ``bytes(reply)`` (or ``Pop3Connection.send``):

* :class:`Ok` / :class:`Err` — a single status line, ``+OK text`` / ``-ERR [CODE] text``
  (RFC 1939 §3, response codes RFC 2449 §8 and RFC 3206);
* :class:`Continuation` — a SASL challenge, ``+ base64`` (RFC 5034 §4);
* :class:`MultiLine` — a status line followed by a body already terminated by ``.CRLF``.

Bodies are built with C-speed ``bytes`` methods only (``replace``, ``split``, ``join``): the
server streams thousands of messages and listings and must not loop per byte or per line.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from typing import Final, Union

CRLF: Final = b"\r\n"
TERMINATOR: Final = b".\r\n"
MAX_STATUS_TEXT: Final = 400  # keeps every status line well under RFC 1939's 512 octets


class ResponseCode(enum.StrEnum):
    """Extended response codes (RFC 2449 §8, RFC 3206 §4)."""

    AUTH = "AUTH"  # RFC 3206: the failure is about credentials or authorisation
    SYS_TEMP = "SYS/TEMP"  # RFC 3206: temporary system problem, try again later
    SYS_PERM = "SYS/PERM"  # RFC 3206: permanent system problem
    IN_USE = "IN-USE"  # RFC 2449 §8.1.1: the maildrop is locked by another session
    LOGIN_DELAY = "LOGIN-DELAY"  # RFC 2449 §8.1.2: not used by postoffice


def _clean(text: str) -> bytes:
    """One line of status text: no CR/LF/NUL (no response injection), bounded length."""
    data = text.encode("utf-8", "replace")
    if b"\r" in data or b"\n" in data or b"\0" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\0", b" ")
    return data[:MAX_STATUS_TEXT]


@dataclass(frozen=True)
class Ok:
    """``+OK text``."""

    text: str = ""

    def __bytes__(self) -> bytes:
        text = self.text
        if not text:
            return b"+OK\r\n"
        if len(text) <= MAX_STATUS_TEXT and text.isascii() and text.isprintable():
            return b"+OK %b\r\n" % text.encode("ascii")  # nothing for _clean to do
        return b"+OK " + _clean(text) + CRLF


@dataclass(frozen=True)
class Err:
    """``-ERR [CODE] text``."""

    text: str
    code: ResponseCode | None = None

    def __bytes__(self) -> bytes:
        prefix = b"-ERR [" + self.code.value.encode() + b"] " if self.code else b"-ERR "
        return prefix + _clean(self.text) + CRLF


@dataclass(frozen=True)
class Continuation:
    """A SASL server challenge, ``+ base64`` (RFC 5034 §4); ``data`` is the raw challenge."""

    data: bytes = b""

    def __bytes__(self) -> bytes:
        return b"+ " + base64.b64encode(self.data) + CRLF


@dataclass(frozen=True)
class MultiLine:
    """A status line plus a body that is already dot-stuffed and ends with ``.CRLF``."""

    status: Ok
    body: bytes

    def __bytes__(self) -> bytes:
        return b"".join((bytes(self.status), self.body))


Reply = Union[Ok, Err, Continuation, MultiLine]


def normalise_newlines(data: bytes) -> bytes:
    """Turn bare LF into CRLF (a lone CR that is not before LF is left alone)."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def dot_stuff(message: bytes, *, canonical: bool = False) -> bytes:
    """Return ``message`` as a multi-line response body (RFC 1939 §3).

    Bare LF becomes CRLF, every line starting with "." gets another "." in front, the last
    line is ended with CRLF if it was not, and the ``.CRLF`` terminator is appended.
    ``canonical=True`` promises the line ends are CRLF already (the store keeps messages that
    way) and skips the two scans that look for bare LF.
    """
    data = message if canonical else normalise_newlines(message)
    if not data:
        return TERMINATOR
    tail = TERMINATOR if data[-2:] == CRLF else CRLF + TERMINATOR
    # split + join is one scan and one copy (replace() scans twice); the terminator rides on
    # the last piece so the whole body is not copied once more to append it.
    parts = data.split(b"\r\n.")
    if len(parts) > 1:
        parts[-1] += tail
        data = b"\r\n..".join(parts)
    else:
        data += tail
    if data[:1] == b".":
        data = b"." + data
    return data


def top(message: bytes, lines: int, *, canonical: bool = False) -> bytes:
    """The headers, the blank separator line and the first ``lines`` body lines (RFC 1939 §7).

    A message without a blank line is all header and is returned whole.  Asking for more lines
    than the body has returns the whole message.  The result uses CRLF line ends.
    """
    data = message if canonical else normalise_newlines(message)
    if data.startswith(CRLF):  # no header fields at all
        head_end = 2
    else:
        sep = data.find(b"\r\n\r\n")
        if sep < 0:
            return data
        head_end = sep + 4
    if lines <= 0:
        return data[:head_end]
    body = data[head_end:]
    if lines > len(body):
        return data  # cannot have that many lines (and split() wants a C ssize_t)
    parts = body.split(CRLF, lines)
    if len(parts) <= lines:
        return data  # the body has no more than ``lines`` lines
    return data[: head_end + len(body) - len(parts[-1])]


def message_body(message: bytes, top_lines: int | None = None, *, canonical: bool = False) -> bytes:
    """The multi-line body for RETR (``top_lines`` is None) or TOP."""
    if top_lines is not None:
        message, canonical = top(message, top_lines, canonical=canonical), True
    return dot_stuff(message, canonical=canonical)


def listing(first: Ok, lines: list[str]) -> MultiLine:
    """A multi-line reply whose body lines need no stuffing (LIST, UIDL, CAPA); one join."""
    if lines:
        body = ("\r\n".join(lines) + "\r\n.\r\n").encode("utf-8")
    else:
        body = TERMINATOR
    return MultiLine(first, body)
