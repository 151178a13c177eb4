"""Sans-IO SMTP server connection, in the style of h11.

The server loop owns the socket and does::

    conn = SmtpConnection(max_message_size=..., tls=False)
    write(bytes(greeting(hostname)))
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(await read())          # b"" at EOF
            continue
        reply = handle(event)                        # a Reply, decided by the server
        write(conn.send(reply))

Division of work
----------------
The connection owns framing, limits and *sequencing*; the server owns every business
decision (is this sender allowed, is the recipient local, is AUTH required here, is TLS
available). Concretely:

* The connection answers on its own everything that is decidable from the bytes and the
  session state, by returning ``InvalidCommand(reply)`` / ``LineTooLong(reply)``: syntax
  errors (500/501/555), unknown verbs, and out-of-sequence commands (RCPT before MAIL,
  DATA without recipients, MAIL inside a transaction, AUTH during a transaction or twice,
  STARTTLS under TLS, DATA after BDAT, DATA with BODY=BINARYMIME, SIZE= over the limit).
  The rules are the :data:`SEQUENCE_ERRORS` table.
* Every other command is returned to the server, which replies and then tells the
  connection the outcome *before the next* ``next_event()``:

  ======================  ================================================================
  server replied          then call
  ======================  ================================================================
  2xx to MailFrom         :meth:`SmtpConnection.accept_mail`
  2xx to RcptTo           :meth:`SmtpConnection.accept_rcpt`
  354 to Data             :meth:`SmtpConnection.begin_data` (message text follows)
  334 to Auth / response  :meth:`SmtpConnection.expect_auth_response` (next line is an
                          :class:`AuthResponse`)
  235 to AUTH             :meth:`SmtpConnection.auth_succeeded`
  220 to StartTls         :meth:`SmtpConnection.start_tls` (after writing the 220)
  4xx/5xx to Bdat         :meth:`SmtpConnection.reset_transaction` (optional)
  ======================  ================================================================

  While a message arrives the server may take its octets as they come
  (:meth:`SmtpConnection.take_message_data`, after each NEED_DATA and ``Bdat``) to spool them,
  and refuse the rest (:meth:`SmtpConnection.reject_message`: no room, absurd header); the
  refusal is answered at the end of data, which the connection still reads to keep the framing.

  A ``LineTooLong`` while an ``AuthResponse`` was expected ends the SASL exchange: the
  server answers the 500 and forgets its mechanism.
  A rejected MAIL/RCPT/DATA needs no call: the state simply does not advance, so
  pipelined follow-ups (RFC 2920) get the right 503/554 from the connection.
* EHLO/HELO and RSET reset the transaction by themselves (RFC 5321 §4.1.4); a
  transaction also ends by itself with :class:`MessageReceived` / :class:`MessageRejected`.

Implementation notes (invariants)
---------------------------------
* Command lines end only at CRLF; a bare CR or LF inside one makes it a 500 5.5.2.
  Limits (RFC 5321 §4.5.3.1.4): 512 octets including CRLF, 2048 for MAIL/RCPT (ESMTP
  parameters, RFC 1869 §4.1.2 / RFC 3461 / RFC 4954 §5 raise it) and 12288 for AUTH and
  SASL responses (RFC 4954 §4). A longer line yields one ``LineTooLong`` as soon as the
  limit is passed; the rest of it is discarded without buffering, and the session goes on.
* DATA ends only at ``CRLF . CRLF`` (RFC 5321 §4.1.1.4). SMTP smuggling (SEC Consult,
  2023): a bare LF or bare CR is never a line end, so ``LF.LF``, ``CR.CR``, ``LF.CRLF`` and
  ``CRLF.LF`` never end a message. Policy (``bare_line_endings``): ``REJECT`` (default,
  like Postfix ``smtpd_forbid_bare_newline``) keeps reading to the real end of data,
  stores nothing and answers ``550 5.5.2 bare LF/CR not allowed``; ``NORMALISE`` rewrites
  each bare CR or LF to CRLF in the stored message (the dot on such a line stays, so a
  relay dot-stuffs it and cannot be smuggled).
* Dot-unstuffing (RFC 5321 §4.5.2) and the size limit run on whole buffers with
  ``bytes.find``/``replace``/``count``; at most four bytes (a possible partial terminator)
  are ever held back, so work is linear in the message size.
* Text lines in DATA longer than 1000 octets (RFC 5321 §4.5.3.1.6) are *accepted*:
  §4.5.3.1 asks receivers to avoid limits where they can, rejecting them loses real mail,
  and memory is bounded by ``max_message_size`` anyway.
* Size (RFC 1870): counted after unstuffing; once over ``max_message_size`` the rest is
  discarded and ``MessageRejected(552 5.3.4)`` comes at the end of data / the LAST chunk.
* BDAT (RFC 3030): the chunk octets are always consumed, even when the command is out of
  sequence (the 503 comes after the chunk), to keep the framing.
* STARTTLS (RFC 3207 §4.2, CVE-2011-0411): :meth:`start_tls` throws away anything
  buffered after the STARTTLS line and resets to the pre-EHLO state.
* After ``max_errors`` errors (syntax, sequence, line too long) the next event is
  :class:`TooManyErrors` (421 4.7.0) and the connection is closed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from postoffice.protocols.smtp import replies as r
from postoffice.protocols.smtp.commands import (
    Auth,
    Bdat,
    Command,
    Data,
    Ehlo,
    Helo,
    InvalidCommand,
    MailFrom,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    parse_command,
)
from postoffice.protocols.smtp.grammar import Body, Extensions, MailParams
from postoffice.protocols.smtp.replies import Reply

__all__ = [
    "NEED_DATA",
    "SEQUENCE_ERRORS",
    "AuthResponse",
    "BareLineEndings",
    "ConnectionClosed",
    "Event",
    "LineTooLong",
    "MessageReceived",
    "MessageRejected",
    "SmtpConnection",
    "SmtpProtocolError",
    "State",
    "TooManyErrors",
]

MAX_COMMAND_LINE = 512  # RFC 5321 §4.5.3.1.4, CRLF included
MAX_PARAMETER_LINE = 2048  # MAIL/RCPT with ESMTP parameters
MAX_AUTH_LINE = 12288  # RFC 4954 §4
DEFAULT_MAX_MESSAGE_SIZE = 35 * 1024 * 1024
DEFAULT_MAX_ERRORS = 10

_TERMINATOR = b"\r\n.\r\n"
_LINE_END = re.compile(rb"\r\n|\r|\n")


class SmtpProtocolError(Exception):
    """The *server* misused the connection API (a bug in the caller, like h11's Local)."""


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData.NEED_DATA


class State(enum.Enum):
    """Session state (RFC 5321 §3: session initiation, client initiation, mail transaction)."""

    INITIAL = "initial"  # before EHLO/HELO (again after STARTTLS)
    READY = "ready"  # greeted, no transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    CHUNKING = "chunking"  # BDAT chunks under way (RFC 3030)
    DATA = "data"  # reading the DATA text
    CLOSED = "closed"  # QUIT, EOF or too many errors


class BareLineEndings(enum.Enum):
    """What to do with a bare CR or LF in DATA text (see module notes)."""

    REJECT = "reject"
    NORMALISE = "normalise"


class _Mode(enum.Enum):
    COMMAND = "command"
    AUTH_RESPONSE = "auth-response"
    DATA = "data"
    CHUNK = "chunk"


@dataclass(frozen=True)
class MessageReceived:
    """End of DATA or of the LAST BDAT chunk: ``data`` is the unstuffed message (only what
    ``take_message_data`` has not handed out yet, when the server takes it as it arrives)."""

    data: bytes


@dataclass(frozen=True)
class MessageRejected:
    """End of data reached but the message was discarded; send ``reply``."""

    reply: Reply


@dataclass(frozen=True)
class LineTooLong:
    reply: Reply


@dataclass(frozen=True)
class AuthResponse:
    """One SASL response line (CRLF stripped), to decode with ``sasl.decode_response``."""

    line: bytes


@dataclass(frozen=True)
class TooManyErrors:
    """Send ``reply`` (421) and close the connection."""

    reply: Reply


@dataclass(frozen=True)
class ConnectionClosed:
    pass


Event = (
    Command
    | InvalidCommand
    | MessageReceived
    | MessageRejected
    | LineTooLong
    | AuthResponse
    | TooManyErrors
    | ConnectionClosed
)

_IN_TRANSACTION = (State.MAIL, State.RCPT, State.CHUNKING)

#: (command type, state) -> the reply the connection gives on its own. Commands absent
#: from the table are allowed in every state (EHLO, HELO, RSET, NOOP, QUIT, VRFY, EXPN, HELP).
SEQUENCE_ERRORS: dict[tuple[type, State], Reply] = {
    (MailFrom, State.INITIAL): r.R503_NEED_EHLO,
    (MailFrom, State.MAIL): r.R503_NESTED_MAIL,
    (MailFrom, State.RCPT): r.R503_NESTED_MAIL,
    (MailFrom, State.CHUNKING): r.R503_NESTED_MAIL,
    (RcptTo, State.INITIAL): r.R503_NEED_MAIL,
    (RcptTo, State.READY): r.R503_NEED_MAIL,
    (RcptTo, State.CHUNKING): r.R503_BAD_SEQUENCE,
    (Data, State.INITIAL): r.R503_NEED_MAIL,
    (Data, State.READY): r.R503_NEED_MAIL,
    (Data, State.MAIL): r.R554_NO_VALID_RCPT,  # RFC 2920 §3.1 / RFC 5321 §3.3
    (Data, State.CHUNKING): r.R503_DATA_IN_BDAT,
    (Bdat, State.INITIAL): r.R503_NEED_MAIL,
    (Bdat, State.READY): r.R503_NEED_MAIL,
    (Bdat, State.MAIL): r.R554_NO_VALID_RCPT,
    (Auth, State.INITIAL): r.R503_NEED_EHLO,
    (Auth, State.MAIL): r.R503_AUTH_IN_TRANSACTION,  # RFC 4954 §4
    (Auth, State.RCPT): r.R503_AUTH_IN_TRANSACTION,
    (Auth, State.CHUNKING): r.R503_AUTH_IN_TRANSACTION,
    (StartTls, State.MAIL): r.R503_BAD_SEQUENCE,
    (StartTls, State.RCPT): r.R503_BAD_SEQUENCE,
    (StartTls, State.CHUNKING): r.R503_BAD_SEQUENCE,
}


class SmtpConnection:
    """Server side of one SMTP session. See the module docstring for the protocol."""

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        bare_line_endings: BareLineEndings = BareLineEndings.REJECT,
        tls: bool = False,
        max_errors: int = DEFAULT_MAX_ERRORS,
        chunking: bool = True,
        extensions: Extensions = Extensions(),
    ) -> None:
        self.max_message_size = max_message_size
        self.bare_line_endings = bare_line_endings
        self.max_errors = max_errors
        self.chunking = chunking
        self.extensions = (
            extensions
            if chunking or not extensions.binarymime
            else Extensions(extensions.eightbitmime, False, extensions.smtputf8, extensions.dsn)
        )
        self.tls = tls
        self.state = State.INITIAL
        self.esmtp = False
        self.authenticated = False
        self.errors = 0
        self._buf = bytearray()
        self._eof = False
        self._mode = _Mode.COMMAND
        self._discarding_line = False
        self._last_event: object = None
        self._pending_mail: MailParams | None = None
        self._mail_params: MailParams | None = None
        self._rcpts = 0
        # message accumulation (DATA text or BDAT chunks)
        self._message = bytearray()
        self._message_size = 0
        self._message_reply: Reply | None = None  # set once the message is doomed
        self._skip = 0  # octets at the front of _message that are not message (DATA's virtual CRLF)
        self._chunk_left = 0
        self._chunk: Bdat | None = None
        self._chunk_reply: Reply | None = None  # out-of-sequence BDAT: answer after the chunk

    # -- input ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means EOF."""
        if self._eof or self.state is State.CLOSED:
            return
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | _NeedData:
        """The next event, or :data:`NEED_DATA` when more input is needed."""
        if self.state is State.CLOSED:
            return ConnectionClosed()
        if self._mode is _Mode.DATA:
            event = self._read_data()
        elif self._mode is _Mode.CHUNK:
            event = self._read_chunk()
        else:
            event = self._read_line()
        if event is NEED_DATA and self._eof:
            self._close()
            event = ConnectionClosed()
        self._last_event = event
        return event

    def take_message_data(self) -> bytes:
        """The message octets (unstuffed, within limits) received since the last call, for a
        server that spools the message as it arrives: call it whenever ``next_event`` returned
        NEED_DATA or a ``Bdat``; ``MessageReceived`` then carries only the rest. A server that
        never calls it gets the whole message with ``MessageReceived``."""
        message = self._message
        if self._skip:
            drop = min(self._skip, len(message))
            del message[:drop]
            self._skip -= drop
        if not message:
            return b""
        self._message = bytearray()
        return bytes(message)

    def reject_message(self, reply: Reply) -> None:
        """The server refuses the message being received (its in-flight budget is exhausted,
        the header block is absurd...): the rest of it is read and dropped, and the end of data
        (or the LAST chunk) yields ``MessageRejected(reply)``. A message already refused by the
        connection keeps its first reason."""
        if self.state not in (State.DATA, State.CHUNKING):
            raise SmtpProtocolError("reject_message() outside DATA or BDAT")
        if self._message_reply is None:
            self._doom(reply)

    @property
    def receiving_message(self) -> bool:
        """True while DATA text or a BDAT chunk is arriving (the client is sending)."""
        return self._mode in (_Mode.DATA, _Mode.CHUNK)

    @property
    def trailing_data(self) -> bytes:
        """Bytes received but not yet turned into events."""
        return bytes(self._buf)

    # -- output -----------------------------------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """Serialise a reply. Pure: state changes go through the methods below."""
        return bytes(reply)

    def ehlo_keywords(self, *, starttls: bool = False, auth: Sequence[str] = ()) -> list[str]:
        """EHLO keywords matching what this connection accepts; the server adds policy
        (STARTTLS only when it has a certificate, AUTH mechanisms it allows now)."""
        ext = self.extensions
        words = ["PIPELINING", f"SIZE {self.max_message_size}"]
        if ext.eightbitmime:
            words.append("8BITMIME")
        if self.chunking:
            words.append("CHUNKING")
        if ext.binarymime:
            words.append("BINARYMIME")
        if ext.smtputf8:
            words.append("SMTPUTF8")
        if ext.dsn:
            words.append("DSN")
        words.append("ENHANCEDSTATUSCODES")
        if starttls and not self.tls:
            words.append("STARTTLS")
        if auth and not self.authenticated:
            words.append("AUTH " + " ".join(auth))
        return words

    # -- the server's decisions -------------------------------------------------------

    def accept_mail(self) -> None:
        """The server said 250 to the MailFrom just returned."""
        last = self._last_event
        if not isinstance(last, MailFrom) or self.state is not State.READY:
            raise SmtpProtocolError("accept_mail() must follow a MailFrom event")
        self._mail_params = last.params
        self.state = State.MAIL

    def accept_rcpt(self) -> None:
        """The server said 250 to the RcptTo just returned."""
        if not isinstance(self._last_event, RcptTo) or self.state not in (State.MAIL, State.RCPT):
            raise SmtpProtocolError("accept_rcpt() must follow a RcptTo event")
        self._rcpts += 1
        self.state = State.RCPT

    def begin_data(self) -> None:
        """The server sent 354 to the Data just returned: the message text follows."""
        if not isinstance(self._last_event, Data) or self.state is not State.RCPT:
            raise SmtpProtocolError("begin_data() must follow a Data event")
        self.state = State.DATA
        self._mode = _Mode.DATA
        self._start_message()
        # A virtual CRLF before the text makes ".CRLF" on the first line the terminator
        # and a leading "." on the first line subject to unstuffing, with one code path.
        self._buf[0:0] = b"\r\n"
        self._message_size = -2
        self._skip = 2

    def expect_auth_response(self) -> None:
        """The server sent 334: the next line is a SASL response (``AuthResponse``)."""
        if self._mode is not _Mode.COMMAND or self.state is State.CLOSED:
            raise SmtpProtocolError("expect_auth_response() outside command mode")
        self._mode = _Mode.AUTH_RESPONSE

    def auth_succeeded(self) -> None:
        """The server sent 235: later AUTH commands get 503 (RFC 4954 §4)."""
        self.authenticated = True

    def start_tls(self) -> bool:
        """Call right after writing the 220 to StartTls, before the handshake.

        Returns True when the client had pipelined data after STARTTLS: that plaintext
        is discarded (CVE-2011-0411) and the server may drop the connection.
        The session returns to the pre-EHLO state (RFC 3207 §4.2).
        """
        if not isinstance(self._last_event, StartTls):
            raise SmtpProtocolError("start_tls() must follow a StartTls event")
        injected = bool(self._buf)
        self._buf.clear()
        self.tls = True
        self.esmtp = False
        self.authenticated = False
        self.state = State.INITIAL
        self._mode = _Mode.COMMAND
        self._discarding_line = False
        self._reset_transaction()
        return injected

    def reset_transaction(self) -> None:
        """Abandon the mail transaction (e.g. after the server rejected a BDAT chunk)."""
        if self.state in (State.DATA, State.CLOSED):
            raise SmtpProtocolError("cannot reset the transaction now")
        if self.state is not State.INITIAL:
            self.state = State.READY
        self._reset_transaction()

    # -- internals: commands ----------------------------------------------------------

    def _line_limit(self) -> int:
        if self._mode is _Mode.AUTH_RESPONSE:
            return MAX_AUTH_LINE
        head = bytes(self._buf[:5]).upper()
        if head == b"AUTH ":
            return MAX_AUTH_LINE
        if head[:4] in (b"MAIL", b"RCPT"):
            return MAX_PARAMETER_LINE
        return MAX_COMMAND_LINE

    def _read_line(self) -> Event | _NeedData:
        buf = self._buf
        if self._discarding_line:
            end = buf.find(b"\r\n")
            if end < 0:
                keep = 1 if buf.endswith(b"\r") else 0
                del buf[: len(buf) - keep]
                return NEED_DATA
            del buf[: end + 2]
            self._discarding_line = False
        limit = self._line_limit()
        end = buf.find(b"\r\n", 0, limit)
        if end < 0:
            if len(buf) < limit:
                return NEED_DATA
            # RFC 5321 §4.5.3.1.4 line too long: answer now, drop the rest of the line.
            # An AUTH line or SASL response gets RFC 4954 §6's 500 5.5.6 instead.
            reply = r.R500_AUTH_LINE_TOO_LONG if limit == MAX_AUTH_LINE else r.R500_LINE_TOO_LONG
            end = buf.find(b"\r\n", limit - 1)
            if end >= 0:
                del buf[: end + 2]
            else:
                self._discarding_line = True
                keep = 1 if buf.endswith(b"\r") else 0
                del buf[: len(buf) - keep]
            if self._mode is _Mode.AUTH_RESPONSE:
                self._mode = _Mode.COMMAND  # the exchange is over; the server answers 500
            return self._error(LineTooLong(reply))
        line = bytes(buf[:end])
        del buf[: end + 2]
        if self._mode is _Mode.AUTH_RESPONSE:
            self._mode = _Mode.COMMAND
            return AuthResponse(line)
        return self._command(line)

    def _command(self, line: bytes) -> Event | _NeedData:
        params = self._mail_params
        cmd = parse_command(
            line,
            esmtp=self.esmtp,
            utf8_transaction=params is not None and params.smtputf8,
            extensions=self.extensions,
            chunking=self.chunking,
        )
        if isinstance(cmd, InvalidCommand):
            return self._error(cmd)
        reply = self._sequence_error(cmd)
        if isinstance(cmd, Bdat):
            return self._start_chunk(cmd, reply)
        if reply is not None:
            if reply is r.R552_TOO_BIG:
                return InvalidCommand(reply, line)  # policy, not a client error
            return self._error(InvalidCommand(reply, line))
        if isinstance(cmd, (Ehlo, Helo)):
            self.esmtp = isinstance(cmd, Ehlo)
            self.state = State.READY
            self._reset_transaction()
        elif isinstance(cmd, Rset):
            if self.state is not State.INITIAL:
                self.state = State.READY
            self._reset_transaction()
        elif isinstance(cmd, Quit):
            self._close()
        return cmd

    def _sequence_error(self, cmd: Command) -> Reply | None:
        reply = SEQUENCE_ERRORS.get((type(cmd), self.state))
        if reply is not None:
            return reply
        if isinstance(cmd, Auth) and self.authenticated:
            return r.R503_ALREADY_AUTH
        if isinstance(cmd, StartTls) and self.tls:
            return r.R503_TLS_ACTIVE
        if isinstance(cmd, Data) and self._mail_params and self._mail_params.body is Body.BINARY_MIME:
            return r.R503_BINARYMIME_NEEDS_BDAT  # RFC 3030 §3
        if isinstance(cmd, MailFrom) and cmd.params.size is not None:
            if cmd.params.size > self.max_message_size:
                return r.R552_TOO_BIG  # RFC 1870 §6.1
        return None

    def _error(self, event: InvalidCommand | LineTooLong) -> Event:
        self.errors += 1
        if self.errors >= self.max_errors:
            self._close()
            return TooManyErrors(r.R421_TOO_MANY_ERRORS)
        return event

    def _close(self) -> None:
        self.state = State.CLOSED
        self._buf.clear()
        self._message = bytearray()

    def _reset_transaction(self) -> None:
        self._mail_params = None
        self._rcpts = 0
        self._message = bytearray()
        self._message_reply = None

    # -- internals: message text ------------------------------------------------------

    def _start_message(self) -> None:
        self._message = bytearray()
        self._message_size = 0
        self._message_reply = None
        self._skip = 0

    def _store(self, chunk: bytes) -> None:
        """Append message octets, enforcing the size limit while streaming."""
        if self._message_reply is not None:
            return
        self._message_size += len(chunk)
        if self._message_size > self.max_message_size:
            self._doom(r.R552_TOO_BIG)
            return
        self._message += chunk

    def _doom(self, reply: Reply) -> None:
        self._message_reply = reply
        self._message = bytearray()

    def _finish_message(self) -> MessageReceived | MessageRejected:
        reply = self._message_reply
        rest = self.take_message_data() if reply is None else b""  # (drops DATA's virtual CRLF)
        self.state = State.READY
        self._mode = _Mode.COMMAND
        self._reset_transaction()
        if reply is not None:
            return MessageRejected(reply)
        return MessageReceived(rest)

    def _read_data(self) -> Event | _NeedData:
        buf = self._buf
        end = buf.find(_TERMINATOR)
        if end >= 0:
            self._absorb(bytes(buf[: end + 2]))
            del buf[: end + len(_TERMINATOR)]
            return self._finish_message()
        # Keep back the longest suffix that could start the terminator; absorb the rest.
        keep = 0
        for k in (4, 3, 2, 1):
            if buf.endswith(_TERMINATOR[:k]):
                keep = k
                break
        if len(buf) > keep:
            self._absorb(bytes(buf[: len(buf) - keep]))
            del buf[: len(buf) - keep]
        return NEED_DATA

    def _absorb(self, text: bytes) -> None:
        """Process DATA text whose CRLF pairs are never split across calls."""
        if self._message_reply is not None:
            return
        crlf = text.count(b"\r\n")
        bare = text.count(b"\n") != crlf or text.count(b"\r") != crlf
        if bare and self.bare_line_endings is BareLineEndings.REJECT:
            self._doom(r.R550_BARE_LINE_ENDING)
            return
        text = text.replace(b"\r\n.", b"\r\n")  # RFC 5321 §4.5.2 transparency
        if bare:
            text = _LINE_END.sub(b"\r\n", text)
        self._store(text)

    # -- internals: BDAT --------------------------------------------------------------

    def _start_chunk(self, cmd: Bdat, reply: Reply | None) -> Event | _NeedData:
        self._chunk = cmd
        self._chunk_left = cmd.size
        self._chunk_reply = reply
        if reply is None and self.state is not State.CHUNKING:
            self.state = State.CHUNKING
            self._start_message()
        self._mode = _Mode.CHUNK
        return self._read_chunk()

    def _read_chunk(self) -> Event | _NeedData:
        buf = self._buf
        take = min(self._chunk_left, len(buf))
        if take:
            if self._chunk_reply is None:
                self._store(bytes(buf[:take]))
            del buf[:take]
            self._chunk_left -= take
        if self._chunk_left:
            return NEED_DATA
        cmd = self._chunk
        assert cmd is not None
        self._chunk = None
        self._mode = _Mode.COMMAND
        reply = self._chunk_reply
        if reply is not None:
            self._chunk_reply = None
            line = f"BDAT {cmd.size}{' LAST' if cmd.last else ''}".encode()
            return self._error(InvalidCommand(reply, line))
        if cmd.last:
            return self._finish_message()
        return cmd
