"""Sequence sets, mailbox name encodings and other grammar pieces."""

from __future__ import annotations

import pytest

from postoffice.protocols.imap import (
    InvalidMailboxName, SequenceSet, compress_uids, decode_mailbox_name, encode_mailbox_name,
    utf7_decode, utf7_encode,
)
from postoffice.protocols.imap.grammar import ParseError


# -- sequence sets ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "star", "ranges"),
    [
        (b"1", 10, [(1, 1)]),
        (b"1:*", 10, [(1, 10)]),
        (b"*", 10, [(10, 10)]),
        (b"*:4", 10, [(4, 10)]),
        (b"4:2", 10, [(2, 4)]),
        (b"2,4:7,9,12:*", 15, [(2, 2), (4, 7), (9, 9), (12, 15)]),
        (b"1:3,2:5,7,6", 10, [(1, 7)]),
        (b"5:*", 3, [(3, 5)]),
        (b"1:*", 0, []),
    ],
)
def test_sequence_set_ranges(text: bytes, star: int, ranges: list[tuple[int, int]]) -> None:
    s = SequenceSet.parse(text)
    assert s.ranges(star) == ranges
    assert bytes(s) == text
    members = {n for lo, hi in ranges for n in range(lo, hi + 1)}
    assert list(s.iter(star)) == sorted(members)
    for n in range(0, 20):
        assert s.contains(n, star) == (n in members)
    assert s.count(star) == len(members)


def test_sequence_set_huge_is_lazy() -> None:
    s = SequenceSet.parse(b"1:*")
    assert s.ranges(10**9) == [(1, 10**9)]
    assert s.contains(999_999_999, 10**9)
    assert s.count(10**9) == 10**9
    it = s.iter(10**9)
    assert [next(it) for _ in range(3)] == [1, 2, 3]
    assert list(s.iter(10**9, limit=3)) == [1, 2, 3]
    assert s.max_value(10**9) == 10**9


def test_saved_sequence_set() -> None:
    s = SequenceSet.parse(b"$")
    assert s.saved and bytes(s) == b"$"
    with pytest.raises(ValueError):
        s.ranges(5)
    saved = SequenceSet.from_ints([3, 4, 9])
    assert s.resolve_saved(saved).ranges(10) == [(3, 4), (9, 9)]
    plain = SequenceSet.parse(b"1")
    assert plain.resolve_saved(saved) is plain


@pytest.mark.parametrize("bad", [b"", b"0", b"1:0", b"a", b"1,", b",1", b"1::2", b"4294967296", b"1 2", b"$1"])
def test_sequence_set_bad(bad: bytes) -> None:
    with pytest.raises(ParseError):
        SequenceSet.parse(bad)


def test_compress_uids() -> None:
    assert compress_uids([1, 2, 3, 4, 5, 7, 9, 10, 11, 12]) == b"1:5,7,9:12"
    assert compress_uids([12, 3, 3, 1, 2]) == b"1:3,12"
    assert compress_uids([]) == b""
    assert compress_uids(range(1, 100_001)) == b"1:100000"
    assert SequenceSet.from_ints([5, 1, 2]) == SequenceSet(((1, 2), (5, 5)))


# -- modified UTF-7 ---------------------------------------------------------------
UTF7_VECTORS = [
    ("☺!", b"&Jjo-!"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("a&b", b"a&-b"),
    ("&", b"&-"),
    ("Entwürfe", b"Entw&APw-rfe"),
    ("😀", b"&2D3eAA-"),
    ("", b""),
    ("plain ASCII ~!@#$%^*()", b"plain ASCII ~!@#$%^*()"),
    ("Отправленные", b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
]


@pytest.mark.parametrize(("text", "wire"), UTF7_VECTORS)
def test_utf7_vectors(text: str, wire: bytes) -> None:
    assert utf7_encode(text) == wire
    assert utf7_decode(wire) == text


@pytest.mark.parametrize(
    "bad",
    [
        b"&Jjo",  # unterminated
        b"&Jjo!-",  # bad base64 char
        b"&AGE-",  # encodes printable ASCII "a": not canonical
        b"&Jjo-&Jjo-",  # adjacent shifts must be merged
        b"&2D0-",  # lone surrogate
        b"&AA-",  # odd number of bytes
        b"caf\xc3\xa9",  # 8-bit is not modified UTF-7
        b"a\tb",
        b"&Jjp-",  # non-zero padding bits
    ],
)
def test_utf7_rejects(bad: bytes) -> None:
    with pytest.raises(InvalidMailboxName):
        utf7_decode(bad)


def test_mailbox_name_helpers() -> None:
    assert decode_mailbox_name(b"inbox", False) == "INBOX"
    assert decode_mailbox_name(b"InBoX", True) == "INBOX"
    assert decode_mailbox_name(b"&Jjo-!", False) == "☺!"
    assert decode_mailbox_name("☺!".encode(), True) == "☺!"
    assert decode_mailbox_name(b"&Jjo-!", True) == "&Jjo-!"  # UTF-8 mode: verbatim
    assert encode_mailbox_name("☺!", False) == b"&Jjo-!"
    assert encode_mailbox_name("☺!", True) == "☺!".encode()
    assert encode_mailbox_name("inbox", False) == b"INBOX"
    with pytest.raises(InvalidMailboxName):
        decode_mailbox_name(b"\xff", True)
    with pytest.raises(InvalidMailboxName):
        decode_mailbox_name("a\u0085b".encode(), True)  # C1 control
    with pytest.raises(InvalidMailboxName):
        decode_mailbox_name(b"&AAE-", False)  # U+0001 encoded
