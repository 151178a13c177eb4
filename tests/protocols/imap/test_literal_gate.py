"""ImapConnection's literal gate: a literal the server has no room for now is refused, and the
session goes on (the server's in-flight budget, servers/inflight.py)."""

from __future__ import annotations

from postoffice.protocols.imap import (
    NEED_DATA, CommandReceived, ContinuationNeeded, ImapConnection, LiteralRejected,
)


class Gate:
    def __init__(self, room: int) -> None:
        self.room = room
        self.asked: list[int] = []

    def __call__(self, size: int) -> bool:
        self.asked.append(size)
        if size > self.room:
            return False
        self.room -= size
        return True


def events(conn: ImapConnection, data: bytes) -> list[object]:
    conn.receive_data(data)
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def test_a_synchronizing_literal_without_room_is_not_asked_for() -> None:
    gate = Gate(10)
    conn = ImapConnection(literal_gate=gate)
    [refused] = events(conn, b"a APPEND INBOX {20}\r\n")
    assert refused == LiteralRejected(b"a", 20, refused.limit, True, busy=True) and not refused.must_close
    [ok] = events(conn, b"b APPEND INBOX {5}\r\n")
    assert ok == ContinuationNeeded(b"b", 5)
    [done] = events(conn, b"hello\r\nc NOOP\r\n")[:1]
    assert isinstance(done, CommandReceived) and done.command.messages[0].data == b"hello"
    assert gate.asked == [20, 5]


def test_a_literal_plus_without_room_is_read_and_dropped_with_its_command() -> None:
    gate = Gate(6)
    conn = ImapConnection(literal_gate=gate)
    message = b"x" * 30
    # MULTIAPPEND: the first literal does not fit; the second and the rest go with it.
    got = events(conn, b"a APPEND INBOX {30+}\r\n" + message + b" (\\Seen) {4+}\r\nabcd\r\nb NOOP\r\n")
    assert got[0] == LiteralRejected(b"a", 30, 0, False, busy=True) and not got[0].must_close
    assert isinstance(got[1], CommandReceived) and got[1].tag == b"b"
    assert gate.asked == [30] and not conn.closed


def test_a_refused_literal_plus_arriving_in_pieces() -> None:
    conn = ImapConnection(literal_gate=Gate(0))
    assert events(conn, b"a APPEND INBOX {10+}\r\n01234") == []
    assert conn.mid_command
    got = events(conn, b"56789\r\nb NOOP\r\n")
    assert isinstance(got[0], LiteralRejected) and got[0].busy
    assert isinstance(got[1], CommandReceived) and got[1].tag == b"b"
    assert not conn.mid_command


def test_a_synchronizing_literal_after_a_refused_one_ends_the_command_at_once() -> None:
    conn = ImapConnection(literal_gate=Gate(0))
    got = events(conn, b"a APPEND INBOX {3+}\r\nabc {4}\r\n")
    assert got == [LiteralRejected(b"a", 3, 0, False, busy=True)]  # no "+": the client gives up
    got = events(conn, b"b NOOP\r\n")
    assert isinstance(got[0], CommandReceived)


def test_large_append_literals_are_collected_apart_and_never_joined() -> None:
    from postoffice.protocols.imap.connection import OUT_OF_LINE

    big = bytes(range(256)).replace(b"\x00", b"\x01") * (OUT_OF_LINE // 256 + 7)
    small = b"From: a\r\n\r\nsmall\r\n"
    conn = ImapConnection(max_literal_size=10 * OUT_OF_LINE)
    wire = (b"a APPEND INBOX (\\Seen) {%d+}\r\n" % len(big) + big + b" {%d+}\r\n" % len(small) + small
            + b" ~{%d+}\r\n" % (len(big) + 1) + big + b"\x00" + b"\r\n")
    got = []
    for at in range(0, len(wire), 65536):  # as it arrives from the socket
        got += events(conn, wire[at:at + 65536])
    [command] = got
    first, second, third = command.command.messages
    assert isinstance(first.data, bytearray) and first.data == big and first.flags == ("\\Seen",)
    assert second.data == small and isinstance(second.data, bytes)
    assert third.binary and third.data == big + b"\x00"
    conn = ImapConnection(max_literal_size=10 * OUT_OF_LINE)
    [bad] = events(conn, b"b APPEND INBOX {%d+}\r\n" % (len(big) + 1) + big + b"\x00\r\n")
    assert bad.message == "APPEND: NUL in a literal (use literal8)"  # the rule holds outside the command too
