"""Binary parts of a literal8 APPEND are stored base64-encoded (RFC 3516 4.4)."""

from __future__ import annotations

from postoffice.mail import analyze, canonicalize_crlf, parse
from postoffice.mail.binary import encode_binary_parts
from postoffice.mail.sections import binary_bytes, section_bytes

BLOB = bytes(range(256)) * 3 + b"bare\nLF and bare\rCR and NUL\x00\r\n"


def multipart(cte: bytes = b"Content-Transfer-Encoding: binary\r\n") -> bytes:
    return (b"From: a@example.org\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=xx\r\n\r\n"
            b"--xx\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            b"--xx\r\nContent-Type: application/octet-stream\r\n" + cte + b"\r\n" + BLOB + b"\r\n--xx--\r\n")


def test_binary_part_round_trips_through_the_stored_form() -> None:
    stored = canonicalize_crlf(encode_binary_parts(multipart()))  # what the store keeps
    tree = parse(stored)
    assert b"\x00" not in stored
    assert binary_bytes(stored, tree, [2]) == BLOB  # exactly the appended octets
    assert section_bytes(stored, tree, [1]) == b"hello"  # the rest untouched
    assert b'"APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64"' in analyze(stored).bodystructure
    assert stored.count(b"Content-Transfer-Encoding") == 1


def test_nul_without_a_cte_header_and_a_single_part_message() -> None:
    for raw in (multipart(b""), b"Subject: x\r\n\r\nab\x00cd\r\n"):
        stored = canonicalize_crlf(encode_binary_parts(raw))
        assert b"\x00" not in stored
        tree = parse(stored)
        leaf = [p for p in tree.walk() if not p.children][-1]
        assert leaf.encoding == "base64"
    assert binary_bytes(stored, tree, [1]) == b"ab\x00cd\r\n"


def test_text_without_binary_is_left_alone() -> None:
    raw = multipart(b"Content-Transfer-Encoding: 8bit\r\n").replace(b"\x00", b"0")
    assert encode_binary_parts(raw) == raw
