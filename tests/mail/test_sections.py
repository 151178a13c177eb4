"""BODY[section] / BINARY[section] per RFC 9051 6.4.5 and RFC 3516."""

from __future__ import annotations

import pytest

from postoffice.mail import (
    UnknownCTE,
    binary_bytes,
    binary_size,
    parse,
    partial,
    resolve_part,
    section_bytes,
)

from .test_structure import load

NESTED = load("nested")
PLAIN = load("plain")
ATT = load("attachment")

INNER_MSG = NESTED[NESTED.index(b"From: grace@") : NESTED.index(b"--inner--\r\n") + 11]
INNER_HDR = INNER_MSG[: INNER_MSG.index(b"\r\n\r\n") + 4]

TABLE = [
    # (raw, parts, text, fields, expected)
    (PLAIN, [], None, (), PLAIN),
    (PLAIN, [], "HEADER", (), PLAIN[: PLAIN.index(b"\r\n\r\n") + 4]),
    (PLAIN, [], "TEXT", (), b"Hi Bob,\r\n\r\nLunch tomorrow at noon?\r\nAlice\r\n"),
    # BODY[1] of a non-multipart message is its body
    (PLAIN, [1], None, (), b"Hi Bob,\r\n\r\nLunch tomorrow at noon?\r\nAlice\r\n"),
    (PLAIN, [2], None, (), None),
    (PLAIN, [1, 1], None, (), None),
    # HEADER on a part number is only for message/rfc822 parts
    (PLAIN, [1], "HEADER", (), None),
    (PLAIN, [], "MIME", (), None),
    # HEADER.FIELDS: case-insensitive, message order, then the blank line; folding kept
    (PLAIN, [], "HEADER.FIELDS", ("SUBJECT", "from", "X-Absent"),
     b"From: Alice Example <alice@example.org>\r\nSubject: Lunch\r\n tomorrow?\r\n\r\n"),
    (PLAIN, [], "header.fields.not", (b"Return-Path", "date", "SUBJECT", "message-id"),
     b"From: Alice Example <alice@example.org>\r\nTo: bob@example.com\r\n\r\n"),
    (PLAIN, [], "HEADER.FIELDS", ("x-none",), b"\r\n"),
    (NESTED, [1], None, (), b"Forwarding."),
    (NESTED, [1], "MIME", (), b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"),
    (NESTED, [1], "HEADER", (), None),
    (NESTED, [1], "TEXT", (), None),
    (NESTED, [2], None, (), INNER_MSG),
    (NESTED, [2], "MIME", (), b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"),
    (NESTED, [2], "HEADER", (), INNER_HDR),
    (NESTED, [2], "TEXT", (), INNER_MSG[len(INNER_HDR) :]),
    (NESTED, [2], "HEADER.FIELDS", ("message-id",), b"Message-ID: <att-1@example.com>\r\n\r\n"),
    (NESTED, [2, 1], None, (), b"Inner text."),
    (NESTED, [2, 1], "MIME", (), b"Content-Type: text/plain\r\n\r\n"),
    (NESTED, [2, 2], None, (), b"iVBORw0KGgo="),
    (NESTED, [2, 3], None, (), None),
    (NESTED, [3], None, (), None),
    (NESTED, [0], None, (), None),
    (NESTED, [2], "BOGUS", (), None),
]


@pytest.mark.parametrize("raw,parts,text,fields,expected", TABLE)
def test_section_table(raw, parts, text, fields, expected) -> None:
    assert section_bytes(raw, parse(raw), parts, text, fields) == expected


def test_rfc822_part_with_single_part_body() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n"
           b"Subject: s\r\n\r\ninner\r\n--x--\r\n")
    tree = parse(raw)
    assert section_bytes(raw, tree, [1, 1]) == b"inner"
    assert section_bytes(raw, tree, [1, 1], "MIME") == b"Subject: s\r\n\r\n"
    assert section_bytes(raw, tree, [1, 2]) is None
    assert resolve_part(tree, [1]) is tree.children[0]


def test_top_level_message_rfc822() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nx\r\n"
    tree = parse(raw)
    assert section_bytes(raw, tree, [1]) == b"Subject: in\r\n\r\nx\r\n"
    assert section_bytes(raw, tree, [1], "HEADER") == b"Subject: in\r\n\r\n"
    assert section_bytes(raw, tree, [1, 1]) == b"x\r\n"


def test_header_fields_without_trailing_newline() -> None:
    raw = load("nobody")
    assert section_bytes(raw, parse(raw), [], "HEADER.FIELDS", ["x-note"]) == (
        b"X-Note: header only, no blank line\r\n\r\n"
    )


def test_partial() -> None:
    assert partial(b"0123456789", 2, 3) == b"234"
    assert partial(b"0123456789", 8, 10) == b"89"
    assert partial(b"0123456789", 10, 1) == b""
    assert partial(b"0123456789", 3) == b"3456789"


def test_binary_base64_and_qp() -> None:
    tree = parse(ATT)
    pdf = binary_bytes(ATT, tree, [2])
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"Hello World!\nendstream\n")
    assert binary_size(ATT, tree, [2]) == len(pdf)
    assert binary_bytes(ATT, tree, [1]) == b"See attached."
    assert binary_size(ATT, tree, [1]) == 13
    alt = load("alternative")
    assert binary_bytes(alt, parse(alt), [1]) == "Café at 10.".encode()
    assert binary_bytes(ATT, tree, []) == ATT
    assert binary_bytes(ATT, tree, [9]) is None
    assert binary_size(ATT, tree, [9]) is None


def test_binary_unknown_cte() -> None:
    raw = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\n"
    tree = parse(raw)
    with pytest.raises(UnknownCTE) as exc:
        binary_bytes(raw, tree, [1])
    assert exc.value.encoding == "x-uuencode"
    with pytest.raises(UnknownCTE):
        binary_size(raw, tree, [1])


def test_binary_tolerates_broken_base64() -> None:
    raw = b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8*gd29y\r\nbGQ\r\n"
    assert binary_bytes(raw, parse(raw), [1]) == b"hello world"


@pytest.mark.parametrize("encoded,decoded", [
    # RFC 2045 6.7 rule 3: trailing white space of an encoded line is not data
    (b"one  \r\ntwo\t\r\n", b"one\r\ntwo\r\n"),
    # rule 5: "=" at the end of a line (after removing trailing white space) is a soft break
    (b"soft= \r\nbreak=\t \r\nhere\r\n", b"softbreakhere\r\n"),
    (b"ends softly=\r\n", b"ends softly"),
    (b"no final break", b"no final break"),
    # rule 1: =XX octets, white space inside a line kept; malformed "=" kept
    (b"a =3D b=20\r\n=E2=82=ac = z\r\n", b"a = b \r\n\xe2\x82\xac = z\r\n"),
])
def test_quoted_printable_decoding_follows_rfc2045(encoded: bytes, decoded: bytes) -> None:
    from postoffice.mail.sections import decode_qp
    assert decode_qp(encoded) == decoded
    raw = (b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded)
    tree = parse(raw)
    assert binary_bytes(raw, tree, [1]) == decoded
    assert binary_size(raw, tree, [1]) == len(decoded)
