"""Property tests: arbitrary bytes never make the connection or the session raise."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from pop3_harness import FakeServer
from postoffice.protocols.pop3 import Pop3Connection, Pop3Policy, dot_stuff, parse_command, top

WORDS = [b"USER alice", b"PASS secret", b"STAT", b"LIST", b"LIST 1", b"RETR 1", b"RETR 2",
         b"DELE 1", b"DELE 3", b"RSET", b"TOP 2 1", b"UIDL", b"UIDL 9", b"NOOP", b"CAPA", b"STLS",
         b"AUTH PLAIN", b"AUTH LOGIN", b"*", base64.b64encode(b"\0alice\0secret"), b"QUIT",
         b"APOP a b", b"TOP 1 -1", b"RETR 0"]

chunks = st.lists(
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from(WORDS).map(lambda w: w + b"\r\n"),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(chunks, st.booleans(), st.booleans(), st.booleans())
def test_random_input_never_raises(data: list[bytes], tls: bool, plaintext: bool, eof: bool) -> None:
    server = FakeServer(tls_active=tls, policy=Pop3Policy(allow_plaintext_auth=plaintext))
    for chunk in data:
        if chunk:
            server.feed(chunk)
    if eof:
        server.feed(b"")
        assert server.closed
    assert server.conn.buffered <= 12_290 + 300
    for line in bytes(server.out).split(b"\r\n")[:-1]:
        assert len(line) + 2 <= 512 or not line.startswith((b"+OK", b"-ERR"))
    if not (server.committed and server.closed):
        assert server.committed == []  # deletions only via QUIT


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parse_command_total(line: bytes) -> None:
    parse_command(line)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_connection_single_chunk(data: bytes) -> None:
    conn = Pop3Connection()
    conn.receive_data(data)
    conn.receive_data(b"")
    for _ in range(len(data) + 2):
        if type(conn.next_event()).__name__ == "ConnectionClosed":
            break
    else:
        raise AssertionError("no ConnectionClosed")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500), st.integers(min_value=0, max_value=50))
def test_dot_stuff_and_top_invariants(message: bytes, lines: int) -> None:
    body = dot_stuff(message)
    assert body.endswith(b".\r\n")
    inner = body[:-3]
    assert b"\r\n.\r\n" not in b"\r\n" + inner  # terminator cannot appear early
    assert inner == b"" or inner.endswith(b"\r\n")
    normalised = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert normalised.startswith(top(message, lines))
