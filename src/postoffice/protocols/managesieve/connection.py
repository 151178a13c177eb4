"""ManageSieve (RFC 5804) wire format, sans-IO: bytes in, commands out; replies to bytes.

Grammar (RFC 5804 §4): a command is an atom followed by arguments separated by single spaces,
ended by CRLF; an argument is a quoted string (``\\`` and ``"`` escaped by a backslash), a
literal (``{n+}`` CRLF and n octets; the synchronising ``{n}`` form is accepted too, without a
continuation, as Dovecot and Cyrus do) or a number. During AUTHENTICATE the client's
responses are a single string on a line (§2.1).

Limits: a line (outside literals) of at most :data:`MAX_LINE` octets, a literal of at most
:data:`MAX_LITERAL`; beyond either the command is an :class:`InvalidCommand` (the server then
says BYE: it cannot find the next command boundary reliably).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE = 8 * 1024
MAX_LITERAL = 1024 * 1024
MAX_ARGS = 8


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(frozen=True)
class Command:
    name: str  # upper case
    args: tuple[str | int, ...]  # strings (decoded UTF-8), numbers


@dataclass(frozen=True)
class SaslResponse:
    """One client response line during AUTHENTICATE (a string; ``"*"`` cancels)."""

    data: str


@dataclass(frozen=True)
class InvalidCommand:
    reason: str
    fatal: bool = False  # the stream cannot be resynchronised: say BYE and close


@dataclass(frozen=True)
class ConnectionClosed:
    pass


_ATOM = re.compile(rb"[A-Za-z]+")
_LITERAL = re.compile(rb"\{([0-9]{1,10})(\+?)\}\r\n")
_NUMBER = re.compile(rb"[0-9]{1,10}")


class ManageSieveConnection:
    """``receive_data(bytes)`` (``b""`` = EOF), then ``next_event()`` until NEED_DATA."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._sasl = False

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buf += data
        else:
            self._eof = True

    def expect_sasl_response(self, on: bool = True) -> None:
        self._sasl = on

    def discard_buffer(self) -> None:
        """STARTTLS: whatever came before the handshake is never executed."""
        self._buf.clear()

    def next_event(self) -> Command | SaslResponse | InvalidCommand | ConnectionClosed | _NeedData:
        result = self._parse()
        if result is NEED_DATA and self._eof:
            return ConnectionClosed()
        return result

    def _parse(self) -> Command | SaslResponse | InvalidCommand | _NeedData:
        buf = self._buf
        pos = 0
        args: list[str | int] = []
        name = ""
        if not self._sasl:
            m = _ATOM.match(buf, 0)
            if m is None:
                end = buf.find(b"\r\n")
                if end < 0:
                    return self._too_long(len(buf))
                del buf[:end + 2]
                return InvalidCommand("expected a command name")
            name = m.group(0).decode("ascii").upper()
            pos = m.end()
        while True:
            if pos + 2 > len(buf):
                return self._too_long(len(buf))
            if buf[pos:pos + 2] == b"\r\n":
                del buf[:pos + 2]
                if self._sasl:
                    if len(args) != 1 or not isinstance(args[0], str):
                        return InvalidCommand("expected one string")
                    return SaslResponse(args[0])
                return Command(name, tuple(args))
            if not self._sasl or args:
                if buf[pos:pos + 1] != b" ":
                    return self._skip_line(pos, "expected a space between arguments")
                pos += 1
            if len(args) >= MAX_ARGS:
                return self._skip_line(pos, "too many arguments")
            if pos >= len(buf):
                return NEED_DATA
            c = buf[pos:pos + 1]
            if c == b'"':
                value, new = self._quoted(pos)
                if value is None:
                    if new < 0:
                        return self._skip_line(pos, "bad quoted string")
                    return self._too_long(len(buf))
                args.append(value)
                pos = new
            elif c == b"{":
                m = _LITERAL.match(buf, pos)
                if m is None:
                    if b"\r\n" in buf[pos:]:
                        return self._skip_line(pos, "bad literal")
                    return self._too_long(len(buf))
                size = int(m.group(1))
                if size > MAX_LITERAL:
                    self._buf.clear()
                    return InvalidCommand("literal too large", fatal=True)
                start = m.end()
                if len(buf) < start + size:
                    return NEED_DATA
                try:
                    args.append(bytes(buf[start:start + size]).decode("utf-8"))
                except UnicodeDecodeError:
                    del buf[:start + size]
                    end = buf.find(b"\r\n")
                    if end >= 0:
                        del buf[:end + 2]
                    return InvalidCommand("a string must be UTF-8")
                pos = start + size
            else:
                m = _NUMBER.match(buf, pos)
                if m is None or m.end() == len(buf):
                    if m is None:
                        return self._skip_line(pos, "bad argument")
                    return NEED_DATA
                args.append(int(m.group(0)))
                pos = m.end()

    def _quoted(self, pos: int) -> tuple[str | None, int]:
        buf = self._buf
        i = pos + 1
        out = bytearray()
        while i < len(buf):
            ch = buf[i]
            if ch == 0x5C:  # backslash
                if i + 1 >= len(buf):
                    return None, 0
                nxt = buf[i + 1]
                if nxt not in (0x5C, 0x22):
                    return None, -1
                out.append(nxt)
                i += 2
                continue
            if ch == 0x22:
                try:
                    return out.decode("utf-8"), i + 1
                except UnicodeDecodeError:
                    return None, -1
            if ch in (0x0D, 0x0A, 0x00):
                return None, -1  # RFC 5804 §4: QUOTED-CHAR excludes CR, LF and NUL
            out.append(ch)
            i += 1
            if len(out) > 1024:
                return None, -1  # §4: quoted strings are short; scripts come as literals
        return None, 0

    def _skip_line(self, pos: int, reason: str) -> InvalidCommand | _NeedData:
        end = self._buf.find(b"\r\n", pos)
        if end < 0:
            return self._too_long(len(self._buf))
        del self._buf[:end + 2]
        return InvalidCommand(reason)

    def _too_long(self, size: int) -> InvalidCommand | _NeedData:
        if size > MAX_LINE and b"{" not in self._buf[:MAX_LINE]:
            self._buf.clear()
            return InvalidCommand("line too long", fatal=True)
        return NEED_DATA


# -- replies --------------------------------------------------------------------------------

def quoted(value: str) -> bytes:
    """A string for the wire: quoted when short and plain, else a literal (RFC 5804 §4)."""
    data = value.encode("utf-8")
    if len(data) <= 1024 and not any(c in data for c in (b"\r", b"\n", b"\0")):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def response(kind: str, text: str = "", code: str | None = None) -> bytes:
    """OK / NO / BYE with an optional response code (§1.3) and human-readable text."""
    out = kind.encode("ascii")
    if code:
        out += b" (" + code.encode("utf-8") + b")"
    if text:
        out += b" " + quoted(text)
    return out + b"\r\n"


def capability_lines(capabilities: list[tuple[str, str | None]]) -> bytes:
    out = b""
    for name, value in capabilities:
        out += quoted(name) + (b" " + quoted(value) if value is not None else b"") + b"\r\n"
    return out


__all__ = [
    "Command", "ConnectionClosed", "InvalidCommand", "MAX_LINE", "MAX_LITERAL", "ManageSieveConnection",
    "NEED_DATA", "SaslResponse", "capability_lines", "literal", "quoted", "response",
]
