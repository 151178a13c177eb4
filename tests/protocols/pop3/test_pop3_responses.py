from __future__ import annotations

import time

import pytest

from postoffice.protocols.pop3 import Continuation, Err, MultiLine, Ok, ResponseCode, dot_stuff, top
from postoffice.protocols.pop3.responses import listing

STUFF = [
    (b"", b".\r\n"),
    (b"a", b"a\r\n.\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"a\n", b"a\r\n.\r\n"),
    (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
    (b"a\r\nb\nc", b"a\r\nb\r\nc\r\n.\r\n"),
    (b".", b"..\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b".hidden\r\n", b"..hidden\r\n.\r\n"),
    (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r\n..\r\n", b"a\r\n...\r\n.\r\n"),
    (b"a.b\r\n", b"a.b\r\n.\r\n"),
    (b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),
    (b"bare\rcr\r\n", b"bare\rcr\r\n.\r\n"),
    (b"\n", b"\r\n.\r\n"),
]


@pytest.mark.parametrize(("raw", "stuffed"), STUFF, ids=[repr(s[0]) for s in STUFF])
def test_dot_stuff(raw: bytes, stuffed: bytes) -> None:
    assert dot_stuff(raw) == stuffed


def unstuff(body: bytes) -> bytes:
    """What a client does (RFC 1939 §3), to check round trips."""
    assert body.endswith(b"\r\n.\r\n") or body == b".\r\n"
    lines = body[:-3].split(b"\r\n")[:-1] if body != b".\r\n" else []
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


@pytest.mark.parametrize("raw", [s[0] for s in STUFF if b"\n" not in s[0].replace(b"\r\n", b"")])
def test_round_trip(raw: bytes) -> None:
    expected = raw if raw.endswith(b"\r\n") or not raw else raw + b"\r\n"
    assert unstuff(dot_stuff(raw)) == expected


def test_dot_stuff_is_fast_on_large_messages() -> None:
    # CPU time of this process, not wall-clock time: the bound is about the work done (about
    # 0.1 s here), which a busy shared machine does not change.
    message = (b"Subject: big\r\n\r\n" + b".a line starting with a dot\r\n" * 400_000)  # ~11 MB
    start = time.process_time()
    body = dot_stuff(message)
    assert time.process_time() - start < 0.5
    assert body.count(b"\r\n..a line") == 400_000
    bare = message.replace(b"\r\n", b"\n")
    start = time.process_time()
    assert dot_stuff(bare) == body
    assert time.process_time() - start < 0.5


MESSAGE = b"From: a\r\nSubject: b\r\n\r\nl1\r\nl2\r\nl3\r\n"


@pytest.mark.parametrize(
    ("message", "lines", "expected"),
    [
        (MESSAGE, 0, b"From: a\r\nSubject: b\r\n\r\n"),
        (MESSAGE, 1, b"From: a\r\nSubject: b\r\n\r\nl1\r\n"),
        (MESSAGE, 2, b"From: a\r\nSubject: b\r\n\r\nl1\r\nl2\r\n"),
        (MESSAGE, 3, MESSAGE),
        (MESSAGE, 10**9, MESSAGE),
        (b"From: a\r\n\r\nno final newline", 5, b"From: a\r\n\r\nno final newline"),
        (b"From: a\r\n\r\nl1\r\nl2", 1, b"From: a\r\n\r\nl1\r\n"),
        (b"From: a\r\nSubject: only headers\r\n", 3, b"From: a\r\nSubject: only headers\r\n"),
        (b"From: a\r\n\r\n", 3, b"From: a\r\n\r\n"),
        (b"\r\nbody only\r\nsecond\r\n", 1, b"\r\nbody only\r\n"),
        (b"\r\nbody only\r\n", 0, b"\r\n"),
        (b"From: a\n\nl1\nl2\n", 1, b"From: a\r\n\r\nl1\r\n"),
        (b"", 2, b""),
    ],
)
def test_top(message: bytes, lines: int, expected: bytes) -> None:
    assert top(message, lines) == expected


def test_replies() -> None:
    assert bytes(Ok()) == b"+OK\r\n"
    assert bytes(Ok("fine")) == b"+OK fine\r\n"
    assert bytes(Err("nope")) == b"-ERR nope\r\n"
    assert bytes(Err("bad", ResponseCode.AUTH)) == b"-ERR [AUTH] bad\r\n"
    assert bytes(Err("later", ResponseCode.SYS_TEMP)) == b"-ERR [SYS/TEMP] later\r\n"
    assert bytes(Err("locked", ResponseCode.IN_USE)) == b"-ERR [IN-USE] locked\r\n"
    assert bytes(Continuation(b"")) == b"+ \r\n"
    assert bytes(Continuation(b"Username:")) == b"+ VXNlcm5hbWU6\r\n"
    assert bytes(MultiLine(Ok("x"), b".\r\n")) == b"+OK x\r\n.\r\n"


def test_reply_text_cannot_inject_lines() -> None:
    assert bytes(Err("evil\r\n+OK fake", ResponseCode.AUTH)) == b"-ERR [AUTH] evil  +OK fake\r\n"
    assert len(bytes(Ok("x" * 10_000))) < 512


def test_listing_is_one_body() -> None:
    reply = listing(Ok("2 messages"), ["1 10", "2 20"])
    assert bytes(reply) == b"+OK 2 messages\r\n1 10\r\n2 20\r\n.\r\n"
    assert bytes(listing(Ok("none"), [])) == b"+OK none\r\n.\r\n"
