"""SmtpConnection.take_message_data: the server takes the message as it arrives (to spool it)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.protocols.smtp import replies as r
from postoffice.protocols.smtp.commands import Bdat, Data, MailFrom, RcptTo
from postoffice.protocols.smtp.connection import NEED_DATA, MessageReceived, MessageRejected, SmtpConnection, State

R452 = r.Reply(452, "4.3.1", "no room")


def transaction(conn: SmtpConnection) -> None:
    conn.receive_data(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n")
    conn.next_event()
    assert isinstance(conn.next_event(), MailFrom)
    conn.accept_mail()
    conn.receive_data(b"RCPT TO:<c@d.example>\r\n")
    assert isinstance(conn.next_event(), RcptTo)
    conn.accept_rcpt()


def data(conn: SmtpConnection, pieces: list[bytes]) -> tuple[list[bytes], object]:
    """Feed DATA text in ``pieces``, taking the message after each read as a server does;
    returns what was taken and the end-of-data event (None if it has not come)."""
    transaction(conn)
    conn.receive_data(b"DATA\r\n")
    assert isinstance(conn.next_event(), Data)
    conn.begin_data()
    taken: list[bytes] = []
    for piece in pieces:
        conn.receive_data(piece)
        event = conn.next_event()
        if event is not NEED_DATA:
            return taken, event
        taken.append(conn.take_message_data())
    return taken, None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n")),
       st.lists(st.integers(1, 50), max_size=20))
def test_taken_pieces_and_the_rest_make_the_message(body: bytes, cuts: list[int]) -> None:
    message = b"Subject: x\r\n\r\n" + body + (b"" if body.endswith(b"\r\n") or not body else b"\r\n")
    wire = message.replace(b"\r\n.", b"\r\n..")
    if wire.startswith(b"."):
        wire = b"." + wire
    wire += b".\r\n"
    pieces, at = [], 0
    for cut in cuts:
        pieces.append(wire[at:at + cut])
        at += cut
    pieces.append(wire[at:])
    whole = SmtpConnection()
    assert data(whole, [wire])[1] == MessageReceived(message)
    streamed = SmtpConnection()
    taken, end = data(streamed, pieces)
    assert isinstance(end, MessageReceived)
    assert b"".join(taken) + end.data == message
    assert streamed.state is State.READY


def test_a_rejected_message_is_read_to_its_end_and_refused_there() -> None:
    conn = SmtpConnection()
    taken, event = data(conn, [b"Subject: x\r\n\r\nfirst part\r\n"])
    assert event is None and b"".join(taken) == b"Subject: x\r\n\r\nfirst part"  # (CRLF kept back)
    conn.reject_message(R452)
    conn.reject_message(r.R550_BARE_LINE_ENDING)  # the first reason stays
    conn.receive_data(b"more text\r\n.\r\n")
    assert conn.next_event() == MessageRejected(R452)
    assert conn.take_message_data() == b""
    conn.receive_data(b"NOOP\r\n")
    assert conn.next_event().__class__.__name__ == "Noop"


def test_bdat_chunks_are_taken_and_can_be_rejected() -> None:
    conn = SmtpConnection()
    transaction(conn)
    conn.receive_data(b"BDAT 5\r\nhello")
    assert isinstance(conn.next_event(), Bdat)
    assert conn.take_message_data() == b"hello"
    conn.reject_message(R452)
    conn.receive_data(b"BDAT 6 LAST\r\n world")
    assert conn.next_event() == MessageRejected(R452)
