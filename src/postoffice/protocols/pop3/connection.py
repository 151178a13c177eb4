"""Pop3Connection: bytes in, POP3 command events out (h11 style, no I/O).

::

    conn = Pop3Connection()
    conn.receive_data(b"USER alice\\r\\nPASS secret\\r\\n")   # b"" signals EOF
    conn.next_event()  # -> User("alice")
    conn.next_event()  # -> Pass("secret")
    conn.next_event()  # -> NEED_DATA
    wire = conn.send(Ok("send PASS"))                        # reply -> bytes to write

Framing rules:

* Lines end with CRLF; a bare LF is accepted as a line end (lenient, common in test clients).
* In COMMAND mode a line may be at most ``MAX_AUTH_LINE`` (512) octets; the parser then holds
  non-AUTH commands to RFC 2449's 255.  A longer line produces one
  ``InvalidCommand("line too long")``; the rest of that line is discarded as it arrives and the
  session goes on.  The receive buffer therefore never holds more than one limit's worth of an
  unterminated line plus whatever the caller passed to the last ``receive_data``.
* After a :class:`~.responses.Continuation` has been sent with :meth:`send`, the next line is
  returned raw as :class:`SaslResponse` (limit ``MAX_SASL_LINE``), then COMMAND mode resumes.
* :meth:`start_tls` empties the receive buffer and returns what it threw away: anything the
  client pipelined after STLS was sent in plaintext and must not be executed after the TLS
  handshake (RFC 2595 §4, the CVE-2011-0411 command-injection class).
* At EOF a trailing unterminated line is dropped, never executed; then :class:`ConnectionClosed`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Union

from .commands import MAX_AUTH_LINE, MAX_SASL_LINE, Command, InvalidCommand, parse_command
from .responses import Continuation, Reply


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData.NEED_DATA


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed its side (EOF). Nothing destructive may follow."""


@dataclass(frozen=True)
class SaslResponse:
    """One client line during a SASL exchange: base64 text or ``*`` (RFC 5034 §4), no CRLF."""

    line: bytes


Event = Union[Command, InvalidCommand, SaslResponse, ConnectionClosed]


class Mode(enum.Enum):
    """What the next client line is."""

    COMMAND = "COMMAND"
    SASL_RESPONSE = "SASL_RESPONSE"


class Pop3Connection:
    """The sans-IO POP3 server side of one connection: framing, limits, STLS buffer hygiene."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._discarding = False  # inside an over-long line, dropping up to its LF
        self.mode = Mode.COMMAND

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means EOF."""
        if not data:
            self._eof = True
            return
        if self._eof:
            return  # nothing after EOF is meaningful
        if self._discarding:
            lf = data.find(b"\n")
            if lf < 0:
                return
            self._discarding = False
            data = data[lf + 1 :]
        self._buffer += data

    @property
    def _limit(self) -> int:
        return MAX_SASL_LINE if self.mode is Mode.SASL_RESPONSE else MAX_AUTH_LINE

    def next_event(self) -> Event | _NeedData:
        """The next complete event, or ``NEED_DATA`` until more bytes (or EOF) arrive."""
        buf = self._buffer
        limit = self._limit
        lf = buf.find(b"\n", 0, limit)
        if lf < 0:
            if len(buf) >= limit:
                # Over-long line: report once and drop it through its LF, which may not have
                # arrived yet (then the rest is skipped in receive_data as it comes).
                far = buf.find(b"\n", limit)
                if far >= 0:
                    del buf[: far + 1]
                else:
                    del buf[:]
                    self._discarding = True
                self.mode = Mode.COMMAND
                return InvalidCommand("line too long")
            if self._eof:
                del buf[:]  # an unterminated last line is never executed
                return ConnectionClosed()
            return NEED_DATA
        line = bytes(buf[:lf])
        del buf[: lf + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.mode is Mode.SASL_RESPONSE:
            self.mode = Mode.COMMAND
            return SaslResponse(line)
        return parse_command(line)

    # -- output ------------------------------------------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """Serialise a reply; a SASL continuation makes the next line a SaslResponse."""
        self.mode = Mode.SASL_RESPONSE if isinstance(reply, Continuation) else Mode.COMMAND
        return bytes(reply)

    # -- STLS --------------------------------------------------------------------------------

    def start_tls(self) -> bytes:
        """Call after sending STLS's +OK, before the handshake; returns the discarded bytes.

        Whatever is buffered was pipelined in plaintext after STLS and is thrown away
        (RFC 2595 §4; CVE-2011-0411).  The server should log a non-empty result.
        """
        discarded = bytes(self._buffer)
        del self._buffer[:]
        self._discarding = False
        self.mode = Mode.COMMAND
        return discarded

    @property
    def buffered(self) -> int:
        """Octets received but not yet turned into events."""
        return len(self._buffer)
