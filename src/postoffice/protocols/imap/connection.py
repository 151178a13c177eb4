"""``ImapConnection``: the sans-IO server side of an IMAP connection (h11 style).

The server loop::

    conn = ImapConnection()
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(await reader.read(65536))   # b"" on EOF
            continue
        ...  # handle the event, write responses (see responses.py)

Implementation notes (invariants):

* Input is split into lines on LF (a preceding CR is kept and stripped by the
  parser; bare LF is tolerated). A line ending in ``{n}``, ``{n+}`` or ``~{n}``
  announces a literal of n bytes that follows the line; the command continues
  after it (RFC 9051 section 4.3, RFC 7888). The whole command, literal
  contents inline, is handed to ``parse_command``.
* A synchronizing literal within limits yields ``ContinuationNeeded``; the
  server must write ``+ ...`` before the client sends it. Over the limit it
  yields ``LiteralRejected`` (answer NO [TOOBIG]); the client will not send it
  and the partial command is dropped.
* A non-synchronizing literal over the limit yields ``LiteralRejected`` with
  ``must_close``: the bytes are already in flight (RFC 7888 section 4), so the
  server answers BAD [TOOBIG], says BYE and closes; the connection is dead.
* ``literal_gate(size)``, when given, is asked before every literal within the limits is
  read (the server's in-flight budget): False refuses it for now with
  ``LiteralRejected(busy=True)`` (answer ``NO [LIMIT]``; the session goes on). A refused
  LITERAL+ literal is read and dropped with the rest of its command first. The gate is asked
  once per literal; the server gives the octets back when the command is done.
* Limits: ``max_line_length`` per line (literals excluded),
  ``max_literal_size`` for APPEND literals, ``max_other_literal_size`` for
  the literals of any other command *together* (10,000 one-kilobyte literals in
  one SEARCH add up), ``max_command_size`` for the whole command,
  ``max_nonsync_literal_size`` (set 4096 when advertising LITERAL- instead of
  LITERAL+).
* Before login (until ``logged_in()``), ``max_preauth_literal_size`` bounds the
  literals of a command together: more gets ``LiteralRejected`` with
  ``before_login`` (answer BYE, not ``+``; the connection is dead).
* Misbehaving clients (Dovecot's rule): the server reports each command with
  ``note_command``; the ``max_bad_before_login``-th invalid command before
  login, or the ``max_bad_in_a_row``-th in a row after it, returns True and
  the server says BYE and closes. This ends protocol confusion (an HTTP or SMTP
  client talking to port 143) and scanners quickly.
* The receive buffer is a bytearray with a read offset; consumed bytes are
  dropped in bulk, LF searches resume where they stopped and literal bytes are
  copied out once per received chunk, so a byte-by-byte feed and a 50 MB
  APPEND are both linear.
"""

from __future__ import annotations

import binascii
import enum
import re
from collections.abc import Callable

from .events import (
    NEED_DATA, CommandReceived, ConnectionClosed, ContinuationNeeded, IdleDone,
    InvalidCommand, LiteralRejected, LineTooLong, NeedData, SaslCancelled, SaslInvalid,
    SaslResponse,
)
from .grammar.reader import TAG_RE
from .grammar.search import MAX_SEARCH_DEPTH
from .parser import parse_command

__all__ = ["ImapConnection", "NextEvent"]

NextEvent = (
    CommandReceived | InvalidCommand | ContinuationNeeded | LiteralRejected | LineTooLong
    | IdleDone | SaslResponse | SaslCancelled | SaslInvalid | ConnectionClosed | NeedData
)

# A literal announcement at the very end of a line.
_LITERAL_AT_END = re.compile(rb"~?\{([0-9]+)(\+?)\}\r?\n\Z")
_APPEND_RE = re.compile(rb"[^ ]+ (?:APPEND) ", re.IGNORECASE)
# base64 = *(4base64-char) [base64-terminal]  (RFC 9051 section 9)
_BASE64_LINE = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_COMPACT_AT = 1 << 16
#: APPEND literals at least this large are collected into a buffer of their own as they arrive
#: and handed to the parser beside the command, not joined into it: a 50 MB message is then
#: copied once, a piece per read, instead of twice more in one go at its end (tens of ms during
#: which every other session of the process waits).
OUT_OF_LINE = 1 << 20


class _OutOfLine:
    """A literal being collected outside the command (see OUT_OF_LINE)."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        # Grown a read at a time (no up-front bytearray(size): zeroing 50 MB at once is itself
        # a pause; large reallocations move pages with mremap, not by copying).
        self.buffer = bytearray()


class _Mode(enum.Enum):
    COMMAND = "command"
    IDLE = "idle"
    SASL = "sasl"


class ImapConnection:
    """Bytes in, events out. One instance per client connection."""

    def __init__(
        self,
        *,
        max_line_length: int = 64 * 1024,
        max_literal_size: int = 50 * 1024 * 1024,
        max_other_literal_size: int = 256 * 1024,
        max_command_size: int | None = None,
        max_nonsync_literal_size: int | None = None,
        max_search_depth: int = MAX_SEARCH_DEPTH,
        max_preauth_literal_size: int | None = None,
        max_bad_before_login: int | None = None,
        max_bad_in_a_row: int | None = None,
        literal_gate: Callable[[int], bool] | None = None,
    ) -> None:
        self.max_line_length = max_line_length
        self.literal_gate = literal_gate
        self.max_literal_size = max_literal_size
        self.max_other_literal_size = max_other_literal_size
        self.max_command_size = (
            max_command_size if max_command_size is not None else max_literal_size + 1024 * 1024
        )
        self.max_nonsync_literal_size = max_nonsync_literal_size
        self.max_search_depth = max_search_depth
        self.max_preauth_literal_size = max_preauth_literal_size
        self.max_bad_before_login = max_bad_before_login
        self.max_bad_in_a_row = max_bad_in_a_row
        self.authenticated = False
        self._bad = 0  # invalid commands: all of them before login, the current run after
        self._literal_total = 0  # literal bytes announced in the command being assembled
        self._buf = bytearray()
        self._pos = 0  # read offset into _buf
        self._scan = 0  # LF search resumes here (absolute index into _buf)
        self._parts: list[bytes | _OutOfLine] = []  # pieces of the command being assembled
        self._cmd_size = 0
        self._literal_remaining = 0
        self._mode = _Mode.COMMAND
        self._discarding = False  # dropping input up to the next LF
        # A LITERAL+ literal the gate refused: (tag, size) of it while its octets and the rest
        # of its command are read and dropped (see literal_gate).
        self._dropping: tuple[bytes | None, int] | None = None
        self._eof = False
        self._dead = False

    # -- feeding --------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer; ``b""`` means EOF."""
        if not data:
            self._eof = True
        elif not self._dead and not self._eof:
            self._buf += data

    @property
    def buffered(self) -> int:
        """Number of received bytes not yet consumed."""
        return len(self._buf) - self._pos

    @property
    def mid_command(self) -> bool:
        """True while a command has begun arriving but is not complete (a partial line, or a
        literal announced and not yet fully received): the client is sending, not waiting."""
        return (bool(self._parts) or self._literal_remaining > 0 or self.buffered > 0
                or self._dropping is not None)

    @property
    def closed(self) -> bool:
        """True once EOF was received or a fatal event was emitted."""
        return self._dead or self._eof

    # -- modes the server switches on ------------------------------------------
    def expect_idle_done(self) -> None:
        """After answering IDLE with ``+ idling``: the next line must be DONE
        (RFC 2177) -> ``IdleDone``; anything else -> ``InvalidCommand(None, ...)``
        (answer the IDLE tag with BAD). Either way IDLE mode ends."""
        self._mode = _Mode.IDLE

    def expect_sasl_response(self) -> None:
        """After sending a ``+ <challenge>``: the next line is a base64 SASL
        response -> ``SaslResponse``, ``*`` -> ``SaslCancelled``, otherwise
        ``SaslInvalid`` (RFC 9051 6.2.2). Call again for every challenge."""
        self._mode = _Mode.SASL

    def logged_in(self) -> None:
        """Call when the client has logged in: the pre-login limits no longer apply."""
        self.authenticated = True
        self._bad = 0

    def note_command(self, valid: bool) -> bool:
        """Tell the connection whether the client's last command was one the server could
        run (``valid``), or invalid: unparsable, unknown, over-long, or not allowed in this
        state (answered BAD before anything ran). Returns True when it was one invalid
        command too many: the server sends ``* BYE`` and closes (Dovecot: 3 invalid commands
        before login, 20 in a row after; a refused login or a cancelled SASL exchange is
        not an invalid command)."""
        if valid:
            if self.authenticated:
                self._bad = 0  # "in a row": a command that ran breaks the run
            return False
        self._bad += 1
        limit = self.max_bad_in_a_row if self.authenticated else self.max_bad_before_login
        return limit is not None and self._bad >= limit

    def start_tls(self) -> bool:
        """Call after writing the STARTTLS OK, before the handshake.

        Returns False when the client pipelined bytes after STARTTLS (plaintext
        injection, CVE-2011-0411 style); those bytes are discarded and the
        server should close the connection. Resets any partial state.
        """
        clean = self.buffered == 0 and not self._parts
        self._buf = bytearray()
        self._pos = self._scan = 0
        self._reset_command()
        self._mode = _Mode.COMMAND
        self._discarding = False
        return clean

    def start_compression(self) -> bytes:
        """Call after writing the tagged OK to COMPRESS (RFC 4978 section 3): from here on the
        client's bytes are compressed. Returns (and drops from the buffer) whatever arrived
        after the command; the caller inflates it and feeds it back with ``receive_data``."""
        rest = bytes(self._buf[self._pos:])
        self._buf = bytearray()
        self._pos = self._scan = 0
        return rest

    def send(self, response: bytes | bytearray) -> bytes:
        """h11-style symmetry: responses are already bytes (see responses.py)."""
        return bytes(response)

    # -- events -----------------------------------------------------------------
    def next_event(self) -> NextEvent:
        """The next event, or ``NEED_DATA``. Never raises on bad input."""
        while True:
            if self._dead:
                return ConnectionClosed()
            if self._literal_remaining:
                avail = len(self._buf) - self._pos
                if avail == 0:
                    return ConnectionClosed() if self._eof else NEED_DATA
                take = min(avail, self._literal_remaining)
                last = self._parts[-1] if self._parts else None
                if self._dropping is not None:
                    self._pos = self._scan = self._pos + take
                    self._compact()
                elif isinstance(last, _OutOfLine):
                    with memoryview(self._buf) as view:
                        last.buffer += view[self._pos:self._pos + take]
                    self._pos = self._scan = self._pos + take
                    self._compact()
                else:
                    self._parts.append(self._take(self._pos + take))
                self._literal_remaining -= take
                continue
            nl = self._buf.find(b"\n", self._scan)
            if nl < 0:
                self._scan = len(self._buf)
                if self._discarding:
                    self._pos = len(self._buf)
                    self._compact()
                elif len(self._buf) - self._pos > self.max_line_length:
                    return self._line_too_long()
                return ConnectionClosed() if self._eof else NEED_DATA
            if self._discarding:
                self._pos = self._scan = nl + 1
                self._compact()
                self._discarding = False
                continue
            if nl - self._pos > self.max_line_length + 1:  # +1: the CR
                tag = self._current_tag()
                self._reset_command()
                self._mode = _Mode.COMMAND  # an overlong DONE / SASL line ends IDLE / AUTHENTICATE
                self._pos = self._scan = nl + 1
                self._compact()
                return LineTooLong(tag, self.max_line_length)
            line = self._take(nl + 1)
            if self._mode is _Mode.IDLE:
                self._mode = _Mode.COMMAND
                if line.rstrip(b"\r\n").upper() == b"DONE":
                    return IdleDone()
                return InvalidCommand(None, "expected DONE to end IDLE")
            if self._mode is _Mode.SASL:
                self._mode = _Mode.COMMAND
                return _sasl_line(line.rstrip(b"\r\n"))
            event = self._command_line(line)
            if event is not None:
                return event

    # -- internals --------------------------------------------------------------
    def _take(self, end: int) -> bytes:
        """Copy ``_buf[_pos:end]`` out once and consume it."""
        with memoryview(self._buf) as view:
            chunk = bytes(view[self._pos : end])
        self._pos = self._scan = end
        self._compact()
        return chunk

    def _compact(self) -> None:
        if self._pos >= len(self._buf):
            self._buf.clear()
            self._pos = self._scan = 0
        elif self._pos > _COMPACT_AT and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0

    def _reset_command(self) -> None:
        self._parts = []
        self._cmd_size = 0
        self._literal_remaining = 0
        self._literal_total = 0
        self._dropping = None

    def _current_tag(self, first: bytes | None = None) -> bytes | None:
        if first is not None:
            head = first
        elif self._parts:
            head = self._parts[0]
        else:
            head = bytes(self._buf[self._pos : self._pos + 256])
        m = TAG_RE.match(head)
        return m.group() if m is not None and head[m.end() : m.end() + 1] == b" " else None

    def _line_too_long(self) -> LineTooLong:
        """No LF within the limit: drop the rest of this line as it arrives."""
        tag = self._current_tag()
        self._reset_command()
        self._mode = _Mode.COMMAND
        self._discarding = True
        self._pos = self._scan = len(self._buf)
        self._compact()
        return LineTooLong(tag, self.max_line_length)

    def _command_line(self, line: bytes) -> NextEvent | None:
        if self._dropping is not None:
            return self._dropping_line(line)
        self._cmd_size += len(line)
        if self._cmd_size > self.max_command_size:
            tag = self._current_tag(self._parts[0] if self._parts else line)
            self._reset_command()
            return LineTooLong(tag, self.max_command_size)
        self._parts.append(line)
        m = _LITERAL_AT_END.search(line)
        if m is None:
            single = len(self._parts) == 1
            literals: dict[int, bytearray] | None = None
            if single:
                data = line
            else:
                pieces: list[bytes] = []
                at = 0
                for part in self._parts:
                    if isinstance(part, _OutOfLine):
                        literals = literals or {}
                        literals[at] = part.buffer
                    else:
                        pieces.append(part)
                        at += len(part)
                data = b"".join(pieces)
            self._reset_command()
            # (Only a one-line command can be empty; never strip a copy of a 50 MB APPEND.)
            if single and not line.strip(b"\r\n"):
                return InvalidCommand(None, "empty command line")
            return parse_command(data, max_search_depth=self.max_search_depth, literals=literals)
        digits, plus = m.group(1), m.group(2)
        size = int(digits) if len(digits) <= 20 else 1 << 64
        synchronizing = not plus
        first = self._parts[0]
        if _APPEND_RE.match(first):
            limit = self.max_literal_size
        else:
            # the literals of one command together (not each on its own)
            limit = self.max_other_literal_size - self._literal_total
        limit = min(limit, self.max_command_size - self._cmd_size)
        if not synchronizing and self.max_nonsync_literal_size is not None:
            limit = min(limit, self.max_nonsync_literal_size)
        before_login = False
        if not self.authenticated and self.max_preauth_literal_size is not None:
            preauth = self.max_preauth_literal_size - self._literal_total
            if size > preauth:
                limit, before_login = min(limit, preauth), True
        tag = self._current_tag(first)
        if size > limit:
            self._reset_command()
            if not synchronizing or before_login:
                self._dead = True
            return LiteralRejected(tag, size, max(limit, 0), synchronizing, before_login)
        if self.literal_gate is not None and not self.literal_gate(size):
            # No room for it now (the server's in-flight budget): a temporary refusal, and the
            # session goes on. A synchronizing literal is simply not asked for; a LITERAL+ one
            # is already on its way, so it and the rest of its command are read and dropped.
            if synchronizing:
                self._reset_command()
                return LiteralRejected(tag, size, max(limit, 0), True, busy=True)
            self._reset_command()
            self._dropping = (tag, size)
            self._literal_remaining = size
            return None
        self._literal_remaining = size
        self._literal_total += size
        self._cmd_size += size
        if size >= OUT_OF_LINE and _APPEND_RE.match(first):
            self._parts.append(_OutOfLine())
        if synchronizing:
            return ContinuationNeeded(tag, size)
        return None

    def _dropping_line(self, line: bytes) -> NextEvent | None:
        """A line of a command whose LITERAL+ literal was refused by the gate: drop it; a
        further LITERAL+ literal is dropped too; the command's end (or a synchronizing literal,
        which the client would wait for) yields the refusal."""
        assert self._dropping is not None
        tag, size = self._dropping
        m = _LITERAL_AT_END.search(line)
        if m is not None and m.group(2) and len(m.group(1)) <= 20:
            self._literal_remaining = int(m.group(1))
            return None
        self._dropping = None
        return LiteralRejected(tag, size, 0, False, busy=True)


def _sasl_line(line: bytes) -> SaslResponse | SaslCancelled | SaslInvalid:
    # RFC 9051 6.2.2: "*" cancels; otherwise base64 (an empty line is an empty response).
    if line == b"*":
        return SaslCancelled()
    if not _BASE64_LINE.fullmatch(line):
        return SaslInvalid("SASL response is not base64")
    try:
        return SaslResponse(binascii.a2b_base64(line, strict_mode=True) if line else b"")
    except binascii.Error:
        return SaslInvalid("SASL response is not valid base64")
