"""ImapConnection: framing, literals, limits and modes, without sockets."""

from __future__ import annotations

import base64

from postoffice.protocols.imap import (
    NEED_DATA, Append, AppendMessage, CommandReceived, ConnectionClosed, ContinuationNeeded,
    IdleDone, ImapConnection, InvalidCommand, LineTooLong, LiteralRejected, Login, Noop,
    SaslCancelled, SaslInvalid, SaslResponse,
)
from postoffice.protocols.imap.events import Event, NeedData


def drain(conn: ImapConnection) -> list[Event]:
    out: list[Event] = []
    while True:
        ev = conn.next_event()
        if isinstance(ev, NeedData):
            return out
        out.append(ev)
        if isinstance(ev, ConnectionClosed):
            return out


def feed(conn: ImapConnection, data: bytes) -> list[Event]:
    conn.receive_data(data)
    return drain(conn)


def test_pipelined_commands() -> None:
    conn = ImapConnection()
    events = feed(conn, b"a1 NOOP\r\na2 LOGIN alice secret\r\na3 NO")
    assert events == [CommandReceived(b"a1", Noop()), CommandReceived(b"a2", Login(b"alice", b"secret"))]
    assert feed(conn, b"OP\r\n") == [CommandReceived(b"a3", Noop())]
    assert conn.next_event() is NEED_DATA


def test_synchronizing_literal() -> None:
    conn = ImapConnection()
    assert feed(conn, b"a1 LOGIN {5}\r\n") == [ContinuationNeeded(b"a1", 5)]
    assert feed(conn, b"ali") == []
    assert feed(conn, b"ce {6}\r\n") == [ContinuationNeeded(b"a1", 6)]
    assert feed(conn, b"secret\r\n") == [CommandReceived(b"a1", Login(b"alice", b"secret"))]


def test_non_synchronizing_literal_needs_no_continuation() -> None:
    conn = ImapConnection()
    events = feed(conn, b"a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n")
    assert events == [CommandReceived(b"a1", Login(b"alice", b"secret"))]


def test_literal_containing_crlf_and_braces() -> None:
    msg = b"Subject: x {3}\r\n\r\nbody {9}\r\n"
    conn = ImapConnection()
    events = feed(conn, b"a1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg))
    assert events == [CommandReceived(b"a1", Append(b"INBOX", (AppendMessage(msg),)))]


def test_byte_by_byte() -> None:
    msg = b"From: a\r\n\r\nhi\r\n"
    wire = b"a1 APPEND x (\\Seen) {%d}\r\n%s ~{2+}\r\n\0\1\r\na2 NOOP\r\n" % (len(msg), msg)
    conn = ImapConnection()
    events: list[Event] = []
    for i in range(len(wire)):
        events += feed(conn, wire[i : i + 1])
    assert events == [
        ContinuationNeeded(b"a1", len(msg)),
        CommandReceived(b"a1", Append(b"x", (AppendMessage(msg, ("\\Seen",)), AppendMessage(b"\0\1", binary=True)))),
        CommandReceived(b"a2", Noop()),
    ]


def test_sync_literal_over_limit_is_rejected_and_connection_continues() -> None:
    conn = ImapConnection(max_literal_size=100)
    events = feed(conn, b"a1 APPEND INBOX {101}\r\n")
    assert events == [LiteralRejected(b"a1", 101, 100, True)]
    assert not events[0].must_close  # type: ignore[union-attr]
    # the client does not send the literal; the next command works
    assert feed(conn, b"a2 NOOP\r\n") == [CommandReceived(b"a2", Noop())]


def test_other_commands_have_a_smaller_literal_limit() -> None:
    conn = ImapConnection(max_literal_size=10_000, max_other_literal_size=10)
    assert feed(conn, b"a1 LOGIN {11}\r\n") == [LiteralRejected(b"a1", 11, 10, True)]
    assert feed(conn, b"a2 APPEND x {11}\r\n") == [ContinuationNeeded(b"a2", 11)]


def test_nonsync_literal_over_limit_must_close() -> None:
    conn = ImapConnection(max_literal_size=100)
    events = feed(conn, b"a1 APPEND INBOX {101+}\r\n" + b"x" * 101 + b"\r\na2 NOOP\r\n")
    assert events[0] == LiteralRejected(b"a1", 101, 100, False)
    assert events[0].must_close  # type: ignore[union-attr]
    assert events[1:] == [ConnectionClosed()]
    assert conn.closed


def test_literal_minus_limit() -> None:
    conn = ImapConnection(max_nonsync_literal_size=4096)
    assert feed(conn, b"a1 APPEND x {4096+}\r\n" + b"x" * 4096 + b"\r\n")[0].__class__ is CommandReceived
    events = feed(conn, b"a2 APPEND x {4097+}\r\n")
    assert events[0] == LiteralRejected(b"a2", 4097, 4096, False)


def test_absurd_literal_size() -> None:
    conn = ImapConnection()
    events = feed(conn, b"a1 APPEND x {99999999999999999999999999}\r\n")
    assert isinstance(events[0], LiteralRejected) and events[0].synchronizing


def test_line_too_long_without_newline() -> None:
    conn = ImapConnection(max_line_length=100)
    events = feed(conn, b"a1 LOGIN " + b"x" * 200)
    assert events == [LineTooLong(b"a1", 100)]
    # the rest of that line is dropped, then commands work again
    assert feed(conn, b"y" * 50) == []
    assert feed(conn, b"yy\r\na2 NOOP\r\n") == [CommandReceived(b"a2", Noop())]


def test_line_too_long_with_newline() -> None:
    conn = ImapConnection(max_line_length=100)
    events = feed(conn, b"a1 LOGIN " + b"x" * 200 + b"\r\na2 NOOP\r\n")
    assert events == [LineTooLong(b"a1", 100), CommandReceived(b"a2", Noop())]


def test_line_limit_excludes_literals() -> None:
    conn = ImapConnection(max_line_length=40, max_literal_size=1000)
    msg = b"x" * 500
    events = feed(conn, b"a1 APPEND x {500+}\r\n" + msg + b"\r\n")
    assert events == [CommandReceived(b"a1", Append(b"x", (AppendMessage(msg),)))]


def test_total_command_size() -> None:
    conn = ImapConnection(max_line_length=100, max_literal_size=1000, max_command_size=150)
    events = feed(conn, b"a1 APPEND x {100}\r\n")
    assert events == [ContinuationNeeded(b"a1", 100)]
    events = feed(conn, b"x" * 100 + b" {100}\r\n")
    assert isinstance(events[0], LiteralRejected) and events[0].tag == b"a1"


def test_invalid_command_keeps_connection() -> None:
    conn = ImapConnection()
    events = feed(conn, b"a1 FETCH\r\n\r\n* NOOP\r\na2 NOOP\r\n")
    assert isinstance(events[0], InvalidCommand) and events[0].tag == b"a1"
    assert events[1] == InvalidCommand(None, "empty command line")
    assert isinstance(events[2], InvalidCommand) and events[2].tag is None
    assert events[3] == CommandReceived(b"a2", Noop())


def test_idle_done() -> None:
    conn = ImapConnection()
    assert feed(conn, b"a1 IDLE\r\n")[0].command.__class__.__name__ == "Idle"  # type: ignore[union-attr]
    conn.expect_idle_done()
    assert feed(conn, b"done\r\n") == [IdleDone()]
    conn.expect_idle_done()
    events = feed(conn, b"a2 NOOP\r\na3 NOOP\r\n")
    assert isinstance(events[0], InvalidCommand) and "DONE" in events[0].message
    assert events[1] == CommandReceived(b"a3", Noop())


def test_idle_done_pipelined_before_mode_switch() -> None:
    conn = ImapConnection()
    conn.receive_data(b"a1 IDLE\r\nDONE\r\n")
    assert isinstance(conn.next_event(), CommandReceived)
    conn.expect_idle_done()
    assert conn.next_event() == IdleDone()


def test_sasl_mode() -> None:
    conn = ImapConnection()
    feed(conn, b"a1 AUTHENTICATE PLAIN\r\n")
    conn.expect_sasl_response()
    assert feed(conn, base64.b64encode(b"\0alice\0secret") + b"\r\n") == [SaslResponse(b"\0alice\0secret")]
    conn.expect_sasl_response()
    assert feed(conn, b"\r\n") == [SaslResponse(b"")]
    conn.expect_sasl_response()
    assert feed(conn, b"*\r\n") == [SaslCancelled()]
    conn.expect_sasl_response()
    assert isinstance(feed(conn, b"not base64!\r\n")[0], SaslInvalid)
    conn.expect_sasl_response()
    assert isinstance(feed(conn, b"QUJD=\r\n")[0], SaslInvalid)
    # back to commands
    assert feed(conn, b"a2 NOOP\r\n") == [CommandReceived(b"a2", Noop())]


def test_sasl_response_is_hidden_in_repr() -> None:
    assert "secret" not in repr(SaslResponse(b"secret"))


def test_starttls_buffer_check() -> None:
    conn = ImapConnection()
    feed(conn, b"a1 STARTTLS\r\n")
    assert conn.start_tls() is True
    conn2 = ImapConnection()
    conn2.receive_data(b"a1 STARTTLS\r\na2 LOGIN evil injected\r\n")
    assert isinstance(conn2.next_event(), CommandReceived)
    assert conn2.start_tls() is False
    assert conn2.buffered == 0
    assert conn2.next_event() is NEED_DATA


def test_eof() -> None:
    conn = ImapConnection()
    conn.receive_data(b"a1 NOOP\r\na2 NO")
    conn.receive_data(b"")
    assert drain(conn) == [CommandReceived(b"a1", Noop()), ConnectionClosed()]
    conn = ImapConnection()
    feed(conn, b"a1 LOGIN {5}\r\nab")
    assert feed(conn, b"") == [ConnectionClosed()]


def test_large_literal_is_linear() -> None:
    size = 20 * 1024 * 1024
    conn = ImapConnection()
    assert feed(conn, b"a1 APPEND x {%d}\r\n" % size) == [ContinuationNeeded(b"a1", size)]
    chunk = b"x" * 65536
    for _ in range(size // len(chunk)):
        conn.receive_data(chunk)
        assert conn.next_event() is NEED_DATA
    events = feed(conn, b"\r\n")
    assert isinstance(events[0], CommandReceived)
    assert len(events[0].command.messages[0].data) == size  # type: ignore[union-attr]


def test_many_small_receives_of_a_long_line_are_linear() -> None:
    conn = ImapConnection(max_line_length=1 << 20)
    line = b"a1 SEARCH " + b"SEEN " * 100_000 + b"ALL\r\n"
    for i in range(0, len(line), 7):
        conn.receive_data(line[i : i + 7])
        conn.next_event()
    # reached the end: the command parsed in a single pass
    assert conn.buffered == 0


# -- issue #12: pre-login literals, literals added up, invalid commands ------------------------

def test_a_literal_over_the_prelogin_limit_closes_even_when_synchronizing() -> None:
    conn = ImapConnection(max_preauth_literal_size=8192)
    events = feed(conn, b"a1 LOGIN {8193}\r\n")
    assert events[0] == LiteralRejected(b"a1", 8193, 8192, True, before_login=True)
    assert events[0].must_close and conn.closed  # type: ignore[union-attr]
    conn = ImapConnection(max_preauth_literal_size=8192)
    events = feed(conn, b"a1 ID (\"x\" {5000+}\r\n" + b"v" * 5000 + b" \"y\" {4000}\r\n")
    assert events == [LiteralRejected(b"a1", 4000, 3192, True, before_login=True), ConnectionClosed()]
    conn = ImapConnection(max_preauth_literal_size=8192)
    assert feed(conn, b"a1 LOGIN {8192}\r\n") == [ContinuationNeeded(b"a1", 8192)]
    conn = ImapConnection(max_preauth_literal_size=8192)
    conn.logged_in()
    assert feed(conn, b"a1 LOGIN {9000}\r\n") == [ContinuationNeeded(b"a1", 9000)]


def test_the_literals_of_one_command_count_together() -> None:
    conn = ImapConnection(max_other_literal_size=3000)
    events = feed(conn, b"a1 SEARCH TEXT {1000+}\r\n" + b"q" * 1000 + b" TEXT {1000+}\r\n" + b"q" * 1000
                  + b" TEXT {1001+}\r\n")
    assert events == [LiteralRejected(b"a1", 1001, 1000, False), ConnectionClosed()]
    # APPEND literals have their own (message size) limit, and a new command starts afresh
    conn = ImapConnection(max_other_literal_size=3000, max_literal_size=10_000)
    assert feed(conn, b"a1 APPEND INBOX {5000}\r\n") == [ContinuationNeeded(b"a1", 5000)]
    conn = ImapConnection(max_other_literal_size=3000)
    feed(conn, b"a1 LOGIN {2000+}\r\n" + b"u" * 2000 + b" x\r\n")
    assert feed(conn, b"a2 LOGIN {2000}\r\n") == [ContinuationNeeded(b"a2", 2000)]


def test_invalid_commands_are_counted() -> None:
    conn = ImapConnection(max_bad_before_login=3, max_bad_in_a_row=20)
    assert [conn.note_command(v) for v in (False, True, False, False)] == [False, False, False, True]
    conn = ImapConnection(max_bad_before_login=3, max_bad_in_a_row=20)
    conn.note_command(False)
    conn.logged_in()
    assert not any(conn.note_command(False) for _ in range(19))
    assert not conn.note_command(True)  # the run is broken
    assert not any(conn.note_command(False) for _ in range(19))
    assert conn.note_command(False)
    assert not ImapConnection().note_command(False)  # no limits configured
