from __future__ import annotations

from postoffice.protocols.pop3 import (
    NEED_DATA, ConnectionClosed, Continuation, InvalidCommand, Noop, Ok, Pass, Pop3Connection,
    Quit, SaslResponse, Stat, Stls, User,
)
from postoffice.protocols.pop3.commands import MAX_AUTH_LINE, MAX_SASL_LINE


def events(conn: Pop3Connection) -> list[object]:
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return out


def test_pipelined_commands_and_partial_lines() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"USER alice\r\nPASS se")
    assert events(conn) == [User("alice")]
    conn.receive_data(b"cret\r\nST")
    assert events(conn) == [Pass("secret")]
    conn.receive_data(b"AT\nQUIT\r\n")
    assert events(conn) == [Stat(), Quit()]


def test_eof_drops_unterminated_line() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"NOOP\r\nQUIT")
    conn.receive_data(b"")
    assert events(conn) == [Noop(), ConnectionClosed()]
    assert conn.next_event() == ConnectionClosed()
    conn.receive_data(b"STAT\r\n")  # ignored after EOF
    assert conn.next_event() == ConnectionClosed()


def test_over_long_line_reported_once_and_session_goes_on() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"X" * 3000)
    assert events(conn) == [InvalidCommand("line too long")]
    assert conn.buffered == 0
    for _ in range(100):  # the rest of the line keeps coming: never buffered
        conn.receive_data(b"Y" * 10_000)
        assert conn.buffered == 0
        assert conn.next_event() is NEED_DATA
    conn.receive_data(b"still the long line\r\nNOOP\r\n")
    assert events(conn) == [Noop()]


def test_over_long_line_followed_by_commands_in_one_chunk() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"Y" * 2000 + b"\r\nNOOP\r\n")
    assert events(conn) == [InvalidCommand("line too long"), Noop()]


def test_line_just_within_read_limit_reaches_parser() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"AUTH PLAIN " + b"A" * (MAX_AUTH_LINE - 13) + b"\r\n")
    (event,) = events(conn)
    assert not isinstance(event, InvalidCommand)
    conn.receive_data(b"USER " + b"a" * 300 + b"\r\nNOOP\r\n")
    assert events(conn) == [InvalidCommand("line too long", "USER"), Noop()]


def test_sasl_response_mode_after_continuation() -> None:
    conn = Pop3Connection()
    assert conn.send(Continuation(b"")) == b"+ \r\n"
    conn.receive_data(b"STAT\r\nSTAT\r\n")
    assert events(conn) == [SaslResponse(b"STAT"), Stat()]
    conn.send(Continuation(b""))
    conn.receive_data(b"*\r\n")
    assert events(conn) == [SaslResponse(b"*")]
    conn.send(Continuation(b""))
    long = b"A" * 4000
    conn.receive_data(long + b"\r\n")
    assert events(conn) == [SaslResponse(long)]
    conn.send(Continuation(b""))
    conn.receive_data(b"A" * (MAX_SASL_LINE + 10))
    assert events(conn) == [InvalidCommand("line too long")]
    conn.receive_data(b"\r\nNOOP\r\n")
    assert events(conn) == [Noop()]  # back in command mode


def test_send_other_reply_returns_to_command_mode() -> None:
    conn = Pop3Connection()
    conn.send(Continuation(b"x"))
    conn.send(Ok())
    conn.receive_data(b"NOOP\r\n")
    assert events(conn) == [Noop()]


def test_start_tls_discards_pipelined_plaintext() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"STLS\r\nUSER mallory\r\nPASS x\r\n")
    assert conn.next_event() == Stls()
    assert conn.start_tls() == b"USER mallory\r\nPASS x\r\n"
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"CAPA\r\n")
    assert len(events(conn)) == 1


def test_start_tls_forgets_discard_state() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"STLS\r\n" + b"Z" * 5000)
    assert conn.next_event() == Stls()
    assert conn.start_tls() == b"Z" * 5000
    conn.receive_data(b"NOOP\r\n")
    assert events(conn) == [Noop()]
