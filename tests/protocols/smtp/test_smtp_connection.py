"""SmtpConnection: sequencing, DATA/BDAT framing, smuggling, limits, STARTTLS, AUTH."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.protocols.smtp import replies as r
from postoffice.protocols.smtp.commands import (
    Auth,
    Bdat,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    InvalidCommand,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from postoffice.protocols.smtp.connection import (
    MAX_AUTH_LINE,
    MAX_COMMAND_LINE,
    MAX_PARAMETER_LINE,
    NEED_DATA,
    SEQUENCE_ERRORS,
    AuthResponse,
    BareLineEndings,
    ConnectionClosed,
    LineTooLong,
    MessageReceived,
    MessageRejected,
    SmtpConnection,
    SmtpProtocolError,
    State,
    TooManyErrors,
)
from postoffice.protocols.smtp.grammar import Mailbox
from postoffice.protocols.smtp.replies import Reply


class Server:
    """A tiny accept-almost-everything server policy driving a connection.

    Recipients whose local part starts with "nobody" are refused; AUTH succeeds after
    the mechanism's responses; STARTTLS is accepted and start_tls()'s result recorded.
    """

    def __init__(self, conn: SmtpConnection) -> None:
        self.conn = conn
        self.events: list[object] = []
        self.auth_left = 0

    def handle(self, event: object) -> None:
        conn = self.conn
        self.events.append(event)
        if isinstance(event, MailFrom):
            conn.accept_mail()
        elif isinstance(event, RcptTo):
            if not event.address.local_part.startswith("nobody"):
                conn.accept_rcpt()
        elif isinstance(event, Data):
            conn.begin_data()
        elif isinstance(event, Auth):
            self.auth_left = {"LOGIN": 2, "PLAIN": 1}.get(event.mechanism, 0)
            if event.initial_response is not None:
                self.auth_left -= 1
            if self.auth_left > 0:
                conn.expect_auth_response()
            elif event.mechanism in ("LOGIN", "PLAIN"):
                conn.auth_succeeded()
        elif isinstance(event, AuthResponse):
            self.auth_left -= 1
            if event.line == b"*":
                self.auth_left = 0
            elif self.auth_left > 0:
                conn.expect_auth_response()
            else:
                conn.auth_succeeded()
        elif isinstance(event, StartTls):
            self.events.append(("start_tls", conn.start_tls()))

    def drain(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                return
            self.handle(event)
            if isinstance(event, (ConnectionClosed, TooManyErrors, Quit)):
                return

    def feed(self, *chunks: bytes, eof: bool = False) -> list[object]:
        """Feed each non-empty chunk and drain events; then EOF if asked."""
        start = len(self.events)
        for chunk in [c for c in chunks if c] + ([b""] if eof else []):
            self.conn.receive_data(chunk)
            self.drain()
        return self.events[start:]


def run(data: bytes | Iterable[bytes], eof: bool = True, **kwargs: object) -> list[object]:
    conn = SmtpConnection(**kwargs)  # type: ignore[arg-type]
    server = Server(conn)
    chunks = [data] if isinstance(data, bytes) else list(data)
    return server.feed(*chunks, eof=eof)


def without_closed(events: list[object]) -> list[object]:
    return [e for e in events if not isinstance(e, ConnectionClosed)]


HELLO = b"EHLO client.example\r\n"
ENVELOPE = HELLO + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
A = Mailbox("a", "example.org")
B = Mailbox("b", "example.org")


# -- basic flow and sequencing -----------------------------------------------------------


def test_full_transaction() -> None:
    events = run(ENVELOPE + b"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert events == [
        Ehlo("client.example"),
        MailFrom(A),
        RcptTo(B),
        Data(),
        MessageReceived(b"Subject: hi\r\n\r\nbody\r\n"),
        Quit(),
        ConnectionClosed(),
    ]


def test_two_transactions_and_state_returns_to_ready() -> None:
    conn = SmtpConnection()
    server = Server(conn)
    msg = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\r\n"
    events = server.feed(HELLO + msg + msg)
    assert [type(e) for e in events].count(MessageReceived) == 2
    assert conn.state is State.READY


@pytest.mark.parametrize(
    ("script", "reply"),
    [
        (HELLO + b"RCPT TO:<b@example.org>\r\n", r.R503_NEED_MAIL),
        (HELLO + b"DATA\r\n", r.R503_NEED_MAIL),
        (b"MAIL FROM:<a@example.org>\r\n", r.R503_NEED_EHLO),
        (HELLO + b"MAIL FROM:<a@example.org>\r\nMAIL FROM:<a@example.org>\r\n", r.R503_NESTED_MAIL),
        (HELLO + b"MAIL FROM:<a@example.org>\r\nDATA\r\n", r.R554_NO_VALID_RCPT),
        (HELLO + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n",
         r.R554_NO_VALID_RCPT),
        (ENVELOPE + b"AUTH PLAIN\r\n", r.R503_AUTH_IN_TRANSACTION),
        (ENVELOPE + b"STARTTLS\r\n", r.R503_BAD_SEQUENCE),
        (b"AUTH PLAIN\r\n", r.R503_NEED_EHLO),
    ],
    ids=["rcpt-before-mail", "data-before-mail", "mail-before-ehlo", "nested-mail",
         "data-no-rcpt", "data-all-rcpt-refused", "auth-in-transaction", "starttls-in-transaction",
         "auth-before-ehlo"],
)
def test_sequence_errors(script: bytes, reply: Reply) -> None:
    events = without_closed(run(script))
    last = events[-1]
    assert isinstance(last, InvalidCommand) and last.reply == reply
    assert reply.enhanced == "5.5.1"


def test_rejected_mail_makes_pipelined_rcpt_and_data_fail() -> None:
    conn = SmtpConnection()
    conn.receive_data(HELLO + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    assert conn.next_event() == Ehlo("client.example")
    assert isinstance(conn.next_event(), MailFrom)  # server refuses: no accept_mail()
    assert conn.next_event() == InvalidCommand(r.R503_NEED_MAIL, b"RCPT TO:<b@example.org>")
    assert conn.next_event() == InvalidCommand(r.R503_NEED_MAIL, b"DATA")


def test_rset_and_ehlo_reset_transaction() -> None:
    for reset in (b"RSET\r\n", b"EHLO again\r\n", b"HELO again\r\n"):
        events = without_closed(run(ENVELOPE + reset + b"RCPT TO:<b@example.org>\r\n"))
        assert events[-1] == InvalidCommand(r.R503_NEED_MAIL, b"RCPT TO:<b@example.org>")


def test_data_refused_by_server_keeps_text_as_commands() -> None:
    conn = SmtpConnection()
    server = Server(conn)
    server.feed(ENVELOPE)
    conn.receive_data(b"DATA\r\n")
    assert conn.next_event() == Data()  # server answers 451 and does not call begin_data()
    conn.receive_data(b"RSET\r\n")
    assert conn.next_event() == Rset()


def test_helo_disables_esmtp_params() -> None:
    events = run(b"HELO x\r\nMAIL FROM:<a@example.org> SIZE=10\r\n")
    assert events[1] == InvalidCommand(r.R555_UNKNOWN_PARAM, b"MAIL FROM:<a@example.org> SIZE=10")


def test_utf8_rcpt_needs_smtputf8_on_mail() -> None:
    rcpt = "RCPT TO:<ü@example.org>\r\n".encode()
    events = run(HELLO + b"MAIL FROM:<a@example.org>\r\n" + rcpt)
    assert isinstance(events[2], InvalidCommand) and events[2].reply == r.R553_NEED_SMTPUTF8
    events = run(HELLO + b"MAIL FROM:<a@example.org> SMTPUTF8\r\n" + rcpt)
    assert events[2] == RcptTo(Mailbox("ü", "example.org"))


def test_vrfy_expn_help_noop_parse_only() -> None:
    events = run(b"VRFY alice\r\nEXPN staff\r\nHELP\r\nNOOP\r\n")
    assert events[:4] == [Vrfy("alice"), Expn("staff"), Help(""), Noop("")]


# -- the state table ------------------------------------------------------------------

COMMAND_LINES: dict[type, bytes] = {
    Ehlo: b"EHLO x",
    Helo: b"HELO x",
    MailFrom: b"MAIL FROM:<a@example.org>",
    RcptTo: b"RCPT TO:<b@example.org>",
    Data: b"DATA",
    Bdat: b"BDAT 1\r\nX",  # chunk octet follows the line
    Rset: b"RSET",
    Noop: b"NOOP",
    Quit: b"QUIT",
    StartTls: b"STARTTLS",
    Auth: b"AUTH XOAUTH9",
    Vrfy: b"VRFY x",
    Expn: b"EXPN x",
    Help: b"HELP",
}

STATE_SETUP: dict[State, bytes] = {
    State.INITIAL: b"",
    State.READY: HELLO,
    State.MAIL: HELLO + b"MAIL FROM:<a@example.org>\r\n",
    State.RCPT: ENVELOPE,
    State.CHUNKING: ENVELOPE + b"BDAT 1\r\nX",
}


@pytest.mark.parametrize("state", list(STATE_SETUP), ids=lambda s: s.name)
@pytest.mark.parametrize("command", list(COMMAND_LINES), ids=lambda c: c.__name__)
def test_state_gate(state: State, command: type) -> None:
    conn = SmtpConnection()
    server = Server(conn)
    server.feed(STATE_SETUP[state])
    assert conn.state is state
    events = server.feed(COMMAND_LINES[command] + b"\r\n")
    assert events, "no event"
    reply = SEQUENCE_ERRORS.get((command, state))
    if reply is None:
        assert isinstance(events[0], command)
    else:
        assert isinstance(events[0], InvalidCommand) and events[0].reply == reply


def test_sequence_table_covers_only_known_states() -> None:
    for (command, state), reply in SEQUENCE_ERRORS.items():
        assert command in COMMAND_LINES and state in STATE_SETUP
        assert reply.code in (503, 554) and reply.enhanced == "5.5.1"


# -- DATA: dot-unstuffing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b".\r\n", b""),
        (b"hello\r\n.\r\n", b"hello\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"..hidden\r\n.\r\n", b".hidden\r\n"),
        (b".single\r\n.\r\n", b"single\r\n"),  # RFC 5321 4.5.2: drop the first period
        (b"a\r\n...\r\nb\r\n.\r\n", b"a\r\n..\r\nb\r\n"),
        (b"a.b\r\n x.\r\n.\r\n", b"a.b\r\n x.\r\n"),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
    ],
    ids=["empty", "simple", "dot-line", "stuffed", "unstuffed-single", "triple", "inner-dots",
         "blank-lines", "stuffed-terminator-lookalike"],
)
def test_dot_unstuffing(text: bytes, message: bytes) -> None:
    events = run(ENVELOPE + b"DATA\r\n" + text + b"NOOP\r\n")
    assert events[4] == MessageReceived(message)
    assert events[5] == Noop("")


# -- DATA: SMTP smuggling ------------------------------------------------------------------

SMUGGLE = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r", b"\r\n.\r",
           b"\r\n\x00.\r\n", b"\n", b"\r"]


@pytest.mark.parametrize("variant", SMUGGLE, ids=[repr(v) for v in SMUGGLE])
def test_smuggling_rejected(variant: bytes) -> None:
    injected = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nforged\r\n"
    text = b"Subject: a\r\n\r\nbody" + variant + injected + b".\r\nNOOP\r\n"
    events = run(ENVELOPE + b"DATA\r\n" + text)
    if b"\x00" in variant:  # no bare endings at all: an ordinary message
        assert isinstance(events[4], MessageReceived)
        return
    assert events[4] == MessageRejected(r.R550_BARE_LINE_ENDING)
    assert events[5] == Noop("")  # nothing from the injected text became a command
    assert not any(isinstance(e, MailFrom) and e.address and e.address.local_part == "evil"
                   for e in events)


@pytest.mark.parametrize("variant", SMUGGLE[:7], ids=[repr(v) for v in SMUGGLE[:7]])
def test_smuggling_normalised(variant: bytes) -> None:
    text = b"body" + variant + b"MAIL FROM:<evil@example.net>\r\n.\r\n"
    events = run(ENVELOPE + b"DATA\r\n" + text + b"NOOP\r\n",
                 bare_line_endings=BareLineEndings.NORMALISE)
    received = events[4]
    assert isinstance(received, MessageReceived)
    assert b"MAIL FROM:<evil@example.net>\r\n" in received.data
    data = received.data
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    assert events[5] == Noop("")


def test_bare_lf_rejection_stores_nothing_and_session_continues() -> None:
    events = run(ENVELOPE + b"DATA\r\nline\nline\r\n.\r\n" + b"MAIL FROM:<a@example.org>\r\n")
    assert events[4] == MessageRejected(r.R550_BARE_LINE_ENDING)
    assert events[5] == MailFrom(A)


# -- size limits ------------------------------------------------------------------------------


def test_message_size_limit_data() -> None:
    body = b"x" * 98 + b"\r\n"  # exactly 100 octets
    events = run(ENVELOPE + b"DATA\r\n" + body + b".\r\n", max_message_size=100)
    assert events[4] == MessageReceived(body)
    events = run(ENVELOPE + b"DATA\r\n" + body * 50 + b".\r\nNOOP\r\n", max_message_size=100)
    assert events[4] == MessageRejected(r.R552_TOO_BIG)
    assert events[5] == Noop("")


def test_size_counted_after_unstuffing() -> None:
    body = b"..x\r\n"  # 4 octets once unstuffed
    events = run(ENVELOPE + b"DATA\r\n" + body + b".\r\n", max_message_size=4)
    assert events[4] == MessageReceived(b".x\r\n")


def test_oversize_stream_is_not_buffered() -> None:
    conn = SmtpConnection(max_message_size=1000)
    server = Server(conn)
    server.feed(ENVELOPE + b"DATA\r\n")
    for _ in range(200):
        server.feed(b"y" * 10_000 + b"\r\n")
        assert len(conn._message) == 0 and len(conn._buf) <= 4
    assert server.feed(b".\r\n") == [MessageRejected(r.R552_TOO_BIG)]


def test_mail_size_param_over_limit() -> None:
    events = run(HELLO + b"MAIL FROM:<a@example.org> SIZE=1001\r\n", max_message_size=1000)
    assert events[1] == InvalidCommand(r.R552_TOO_BIG, b"MAIL FROM:<a@example.org> SIZE=1001")
    events = run(HELLO + b"MAIL FROM:<a@example.org> SIZE=1000\r\n", max_message_size=1000)
    assert isinstance(events[1], MailFrom)


def test_long_data_lines_are_accepted() -> None:
    line = b"z" * 5000 + b"\r\n"
    events = run(ENVELOPE + b"DATA\r\n" + line + b".\r\n")
    assert events[4] == MessageReceived(line)


# -- BDAT -------------------------------------------------------------------------------------


def test_bdat_chunks() -> None:
    events = run(ENVELOPE + b"BDAT 5\r\nHello" + b"BDAT 8 LAST\r\n, world!" + b"NOOP\r\n")
    assert events[3:] == [Bdat(5, False), MessageReceived(b"Hello, world!"), Noop(""),
                          ConnectionClosed()]


def test_bdat_zero_last_and_binary_content() -> None:
    blob = b"\x00\r\n.\r\n\n.\n\xff"
    events = run(ENVELOPE + b"BDAT %d\r\n" % len(blob) + blob + b"BDAT 0 LAST\r\n")
    assert events[3:5] == [Bdat(len(blob), False), MessageReceived(blob)]


def test_bdat_then_data_is_503() -> None:
    events = run(ENVELOPE + b"BDAT 1\r\nxDATA\r\n")
    assert events[4] == InvalidCommand(r.R503_DATA_IN_BDAT, b"DATA")


def test_binarymime_requires_bdat() -> None:
    script = HELLO + b"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\nRCPT TO:<b@example.org>\r\n"
    events = run(script + b"DATA\r\n")
    assert events[3] == InvalidCommand(r.R503_BINARYMIME_NEEDS_BDAT, b"DATA")
    events = run(script + b"BDAT 3 LAST\r\n\x00\x01\x02")
    assert events[3] == MessageReceived(b"\x00\x01\x02")


def test_bdat_out_of_sequence_still_consumes_chunk() -> None:
    events = run(HELLO + b"BDAT 14\r\nQUIT\r\nRSET\r\nxx" + b"NOOP\r\n")
    assert events[1] == InvalidCommand(r.R503_NEED_MAIL, b"BDAT 14")
    assert events[2] == Noop("")


def test_bdat_size_limit_across_chunks() -> None:
    script = ENVELOPE + b"BDAT 60\r\n" + b"a" * 60 + b"BDAT 60 LAST\r\n" + b"b" * 60 + b"NOOP\r\n"
    events = run(script, max_message_size=100)
    assert events[3] == Bdat(60, False)
    assert events[4] == MessageRejected(r.R552_TOO_BIG)
    assert events[5] == Noop("")


def test_bdat_huge_chunk_streams() -> None:
    conn = SmtpConnection(max_message_size=1000)
    server = Server(conn)
    server.feed(ENVELOPE + b"BDAT 1000000 LAST\r\n")
    for _ in range(99):
        assert server.feed(b"q" * 10_000) == []
        assert len(conn._buf) == 0 and len(conn._message) == 0
    assert server.feed(b"q" * 10_000 + b"NOOP\r\n") == [MessageRejected(r.R552_TOO_BIG), Noop("")]


def test_server_rejecting_a_chunk_resets() -> None:
    conn = SmtpConnection()
    Server(conn).feed(ENVELOPE)
    conn.receive_data(b"BDAT 2\r\nab")
    assert conn.next_event() == Bdat(2, False)
    conn.reset_transaction()  # server said 452
    conn.receive_data(b"BDAT 2 LAST\r\ncd")
    assert conn.next_event() == InvalidCommand(r.R503_NEED_MAIL, b"BDAT 2 LAST")


def test_bdat_disabled() -> None:
    events = run(ENVELOPE + b"BDAT 1 LAST\r\n", chunking=False)
    assert events[3] == InvalidCommand(r.R502_NOT_IMPLEMENTED, b"BDAT 1 LAST")
    conn = SmtpConnection(chunking=False)
    assert "CHUNKING" not in conn.ehlo_keywords() and "BINARYMIME" not in conn.ehlo_keywords()


# -- line limits, NULs, garbage ----------------------------------------------------------------


def test_command_line_limit_boundary() -> None:
    ok = b"NOOP " + b"a" * (MAX_COMMAND_LINE - 7)  # 512 octets with CRLF
    events = run(ok + b"\r\n")
    assert events[0] == Noop("a" * (MAX_COMMAND_LINE - 7))
    events = run(ok + b"a\r\nNOOP\r\n")
    assert events[:2] == [LineTooLong(r.R500_LINE_TOO_LONG), Noop("")]


def test_long_line_fed_slowly_is_discarded_without_buffering() -> None:
    conn = SmtpConnection()
    server = Server(conn)
    events = server.feed(*[b"x" * 100] * 1000)
    assert events == [LineTooLong(r.R500_LINE_TOO_LONG)]
    assert len(conn._buf) <= 1
    assert server.feed(b"\r", b"\nNOOP\r\n") == [Noop("")]


def test_long_line_with_pipelined_followers() -> None:
    events = run(b"NOOP " + b"x" * 600 + b"\r\nHELP\r\nNOOP\r\n")
    assert events[:3] == [LineTooLong(r.R500_LINE_TOO_LONG), Help(""), Noop("")]


def test_extended_limits_for_mail_and_auth() -> None:
    mail = b"MAIL FROM:<a@example.org> ENVID=" + b"e" * 100 + b" AUTH=" + b"a" * 600
    assert len(mail) < MAX_PARAMETER_LINE
    events = run(HELLO + mail + b"\r\n")
    assert isinstance(events[1], MailFrom)
    import base64

    auth = b"AUTH PLAIN " + base64.b64encode(b"\x00user\x00" + b"p" * 200)
    events = run(HELLO + auth + b"\r\n")
    assert isinstance(events[1], Auth)
    big = b"AUTH XTOKEN " + b"A" * (MAX_AUTH_LINE - 20) + b"\r\n"
    events = run(HELLO + big)
    assert isinstance(events[1], Auth)
    events = run(HELLO + b"AUTH XTOKEN " + b"A" * MAX_AUTH_LINE + b"\r\nNOOP\r\n")
    assert events[1:3] == [LineTooLong(r.R500_AUTH_LINE_TOO_LONG), Noop("")]


@pytest.mark.parametrize(
    "line",
    [b"\x00", b"EHLO \x00x", b"\x00\x00\x00\x00", b"\xff\xfe\xfd", b"MAIL\x00FROM:<a@b.c>",
     b"\x1b[31mHELO", b"GET / HTTP/1.1"],
)
def test_garbage_is_a_reply_not_an_exception(line: bytes) -> None:
    events = run(line + b"\r\nNOOP\r\n")
    assert isinstance(events[0], InvalidCommand)
    assert events[0].reply.code in (500, 501) and events[0].reply.enhanced is not None
    assert events[1] == Noop("")


def test_too_many_errors() -> None:
    events = run(b"BOGUS\r\n" * 20)
    assert len(events) == 11
    assert all(isinstance(e, InvalidCommand) for e in events[:9])
    assert events[9] == TooManyErrors(r.R421_TOO_MANY_ERRORS)
    assert bytes(events[9].reply).startswith(b"421 4.7.0 ")  # type: ignore[attr-defined]
    assert events[10] == ConnectionClosed()


def test_error_limit_configurable() -> None:
    events = run(b"BOGUS\r\n" * 3, max_errors=3)
    assert events[2] == TooManyErrors(r.R421_TOO_MANY_ERRORS)


def test_bare_lf_in_command_line() -> None:
    events = run(b"NOOP\nQUIT\r\nNOOP\r\n")
    assert events[0] == InvalidCommand(r.R500_SYNTAX, b"NOOP\nQUIT")
    assert events[1] == Noop("")


# -- pipelining ---------------------------------------------------------------------------------


def test_pipelining_in_one_read() -> None:
    script = (HELLO + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
              b"RCPT TO:<nobody@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n"
              b"text\r\n.\r\nRSET\r\nQUIT\r\n")
    events = run(script, eof=False)
    assert [type(e).__name__ for e in events] == [
        "Ehlo", "MailFrom", "RcptTo", "RcptTo", "RcptTo", "Data", "MessageReceived", "Rset", "Quit"]


# -- STARTTLS -----------------------------------------------------------------------------------


def test_starttls_clean() -> None:
    conn = SmtpConnection()
    server = Server(conn)
    events = server.feed(HELLO + b"STARTTLS\r\n")
    assert events[-1] == ("start_tls", False)
    assert conn.tls and conn.state is State.INITIAL
    assert "STARTTLS" not in conn.ehlo_keywords(starttls=True)
    assert server.feed(b"MAIL FROM:<a@example.org>\r\n") == [
        InvalidCommand(r.R503_NEED_EHLO, b"MAIL FROM:<a@example.org>")]
    assert server.feed(HELLO + b"STARTTLS\r\n")[-1] == InvalidCommand(r.R503_TLS_ACTIVE, b"STARTTLS")


def test_starttls_pipelined_injection_discarded() -> None:
    """CVE-2011-0411: plaintext after STARTTLS must not be processed after the handshake."""
    conn = SmtpConnection()
    server = Server(conn)
    events = server.feed(HELLO + b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\n")
    assert events[-1] == ("start_tls", True)
    assert not any(isinstance(e, MailFrom) for e in events)
    assert conn.trailing_data == b""
    assert server.feed(HELLO) == [Ehlo("client.example")]


def test_starttls_resets_authentication() -> None:
    conn = SmtpConnection()
    conn.auth_succeeded()
    Server(conn).feed(HELLO + b"STARTTLS\r\n")
    assert not conn.authenticated


def test_implicit_tls() -> None:
    events = run(HELLO + b"STARTTLS\r\n", tls=True)
    assert events[1] == InvalidCommand(r.R503_TLS_ACTIVE, b"STARTTLS")


# -- AUTH ---------------------------------------------------------------------------------------


def test_auth_login_exchange() -> None:
    conn = SmtpConnection()
    server = Server(conn)
    events = server.feed(HELLO + b"AUTH LOGIN\r\n", b"YWxpY2U=\r\n", b"c2VjcmV0\r\n")
    assert events[1:] == [Auth("LOGIN", None), AuthResponse(b"YWxpY2U="), AuthResponse(b"c2VjcmV0")]
    assert conn.authenticated
    assert server.feed(b"AUTH PLAIN\r\n") == [InvalidCommand(r.R503_ALREADY_AUTH, b"AUTH PLAIN")]


def test_auth_response_may_look_like_a_command() -> None:
    events = run(HELLO + b"AUTH PLAIN\r\nQUIT\r\nNOOP\r\n")
    assert events[1:3] == [Auth("PLAIN", None), AuthResponse(b"QUIT")]
    assert events[3] == Noop("")


def test_auth_cancel_and_long_response() -> None:
    events = run(HELLO + b"AUTH PLAIN\r\n*\r\nNOOP\r\n")
    assert events[2:4] == [AuthResponse(b"*"), Noop("")]
    events = run(HELLO + b"AUTH PLAIN\r\n" + b"A" * (MAX_AUTH_LINE + 10) + b"\r\nNOOP\r\n")
    assert events[2:4] == [LineTooLong(r.R500_AUTH_LINE_TOO_LONG), Noop("")]
    events = run(HELLO + b"AUTH PLAIN\r\n" + b"A" * (MAX_AUTH_LINE - 2) + b"\r\n")
    assert events[2] == AuthResponse(b"A" * (MAX_AUTH_LINE - 2))


def test_ehlo_keywords() -> None:
    conn = SmtpConnection(max_message_size=1234)
    words = conn.ehlo_keywords(starttls=True, auth=["PLAIN", "LOGIN"])
    assert words[:2] == ["PIPELINING", "SIZE 1234"]
    assert {"8BITMIME", "CHUNKING", "BINARYMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES",
            "STARTTLS", "AUTH PLAIN LOGIN"} <= set(words)
    conn.auth_succeeded()
    assert not any(w.startswith("AUTH") for w in conn.ehlo_keywords(auth=["PLAIN"]))


# -- EOF and API misuse -------------------------------------------------------------------------


def test_eof_mid_data_and_mid_line() -> None:
    assert run(ENVELOPE + b"DATA\r\npartial message")[-1] == ConnectionClosed()
    assert run(b"NOOP")[-1:] == [ConnectionClosed()]
    conn = SmtpConnection()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    conn.receive_data(b"NOOP\r\n")  # ignored after EOF
    assert conn.next_event() == ConnectionClosed()


def test_quit_closes() -> None:
    conn = SmtpConnection()
    conn.receive_data(b"QUIT\r\nNOOP\r\n")
    assert conn.next_event() == Quit()
    assert conn.next_event() == ConnectionClosed()


def test_api_misuse_raises_local_error() -> None:
    conn = SmtpConnection()
    with pytest.raises(SmtpProtocolError):
        conn.accept_mail()
    with pytest.raises(SmtpProtocolError):
        conn.accept_rcpt()
    with pytest.raises(SmtpProtocolError):
        conn.begin_data()
    with pytest.raises(SmtpProtocolError):
        conn.start_tls()


def test_send_serialises() -> None:
    assert SmtpConnection().send(r.R250_OK) == b"250 2.0.0 OK\r\n"


# -- efficiency ---------------------------------------------------------------------------------


def test_large_message_is_linear() -> None:
    line = b"The quick brown fox jumps over the lazy dog, again and again and again..\r\n"
    body = line * (20 * 1024 * 1024 // len(line))  # ~20 MiB
    conn = SmtpConnection(max_message_size=64 * 1024 * 1024)
    server = Server(conn)
    server.feed(ENVELOPE + b"DATA\r\n")
    start = time.perf_counter()
    view = memoryview(body)
    for i in range(0, len(body), 65536):
        conn.receive_data(bytes(view[i : i + 65536]))
        assert conn.next_event() is NEED_DATA
    events = server.feed(b".\r\n")
    elapsed = time.perf_counter() - start
    assert events == [MessageReceived(body)]
    assert elapsed < 5, elapsed


def test_tiny_reads_are_not_quadratic() -> None:
    body = (b"..dots and text\r\n" * 4000)
    conn = SmtpConnection()
    server = Server(conn)
    server.feed(ENVELOPE + b"DATA\r\n")
    start = time.perf_counter()
    events = server.feed(*[body[i : i + 3] for i in range(0, len(body), 3)], b".\r\n")
    assert time.perf_counter() - start < 5
    assert events == [MessageReceived(body.replace(b"\r\n..", b"\r\n.")[1:])]


# -- chunking independence and fuzzing ----------------------------------------------------------

TRANSCRIPT = (
    HELLO
    + b"NOOP " + b"n" * 700 + b"\r\n"
    + b"BOGUS\x00\r\n"
    + b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n"
    + b"MAIL FROM:<a@example.org> BODY=8BITMIME SIZE=100\r\n"
    + b"RCPT TO:<nobody@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    + b"Subject: test\r\n\r\n..stuffed\r\n..\r\nbody\r\n.\r\n"
    + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    + b"smuggle\n.\nMAIL FROM:<evil@example.net>\r\n.\r\n"
    + b"MAIL FROM:<> \r\nRCPT TO:<b@example.org>\r\n"
    + b"BDAT 7\r\n\r\n.\r\n\x00\n" + b"BDAT 3 LAST\r\nend"
    + b"VRFY x\r\nRSET\r\nQUIT\r\n"
)


def test_transcript_whole() -> None:
    events = run(TRANSCRIPT)
    names = [type(e).__name__ for e in events]
    assert names == [
        "Ehlo", "LineTooLong", "InvalidCommand", "Auth", "AuthResponse", "AuthResponse",
        "MailFrom", "RcptTo", "RcptTo", "Data", "MessageReceived",
        "MailFrom", "RcptTo", "Data", "MessageRejected",
        "MailFrom", "RcptTo", "Bdat", "MessageReceived", "Vrfy", "Rset", "Quit", "ConnectionClosed",
    ]
    assert events[10] == MessageReceived(b"Subject: test\r\n\r\n.stuffed\r\n.\r\nbody\r\n")
    assert events[18] == MessageReceived(b"\r\n.\r\n\x00\nend")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(TRANSCRIPT)), max_size=40),
       st.sampled_from(list(BareLineEndings)))
def test_chunking_does_not_change_events(cuts: list[int], policy: BareLineEndings) -> None:
    points = sorted(set(cuts))
    chunks = [TRANSCRIPT[a:b] for a, b in zip([0, *points], [*points, len(TRANSCRIPT)])]
    assert run(chunks, bare_line_endings=policy) == run(TRANSCRIPT, bare_line_endings=policy)


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_one_byte_reads(data: st.DataObject) -> None:
    policy = data.draw(st.sampled_from(list(BareLineEndings)))
    assert run([bytes([b]) for b in TRANSCRIPT], bare_line_endings=policy) == run(
        TRANSCRIPT, bare_line_endings=policy)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    events = run(chunks)
    assert events[-1] in (ConnectionClosed(),) or isinstance(events[-1], TooManyErrors)


_TOKENS = [b"EHLO x\r\n", b"HELO y\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n",
           b"RCPT TO:<nobody@example.org>\r\n", b"DATA\r\n", b"BDAT 3\r\n", b"BDAT 2 LAST\r\n",
           b"RSET\r\n", b"STARTTLS\r\n", b"AUTH LOGIN\r\n", b"AUTH PLAIN AGEAYg==\r\n", b".\r\n",
           b"\r\n", b"\n", b"\r", b".", b"..", b"x", b"\x00", b"NOOP\r\n", b"\xff",
           b"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=40), st.sampled_from(list(BareLineEndings)))
def test_random_protocol_soup_never_raises(tokens: list[bytes], policy: BareLineEndings) -> None:
    events = run(b"".join(tokens), bare_line_endings=policy, max_message_size=50)
    for event in events:
        reply = getattr(event, "reply", None)
        if reply is not None:
            assert reply.enhanced is not None  # RFC 2034 on every reply we produce
