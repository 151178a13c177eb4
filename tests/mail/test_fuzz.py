"""Property tests: analyze() never raises, offsets stay inside the message, wire forms parse."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.mail import (
    MessageInfo,
    UnknownCTE,
    analyze,
    binary_bytes,
    search_text,
    section_bytes,
)
from postoffice.mail.address import is_valid_address, normalize_address, InvalidAddress

from . import imapcheck

FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\n\n", b" ", b"\t", b":", b";", b"\"", b"\\",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/digest; boundary=\"b\"\n", b"Content-Type: text/plain; charset=x\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename=\"a\"\r\n", b"Content-Language: en, fr\r\n",
    b"--b\r\n", b"--b--\r\n", b"--b", b"From: a@b, g: c@d;\r\n", b"To: <@x:y@z>\r\n",
    b"Subject: =?utf-8?q?=C3=A9?=\r\n", b"\xff\xfe", b"\x00", b"(", b")", b"<", b">", b"@",
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n", b"Content-Type: message/global\n",
]

messages = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=20), max_size=60).map(b"".join),
)


def _check_offsets(info: MessageInfo, n: int) -> None:
    for p in info.tree.walk():
        assert 0 <= p.header_start <= p.header_end == p.body_start <= p.body_end <= n
        for c in p.children:
            assert p.body_start <= c.header_start and c.body_end <= p.body_end
        if p.message is not None:
            assert p.message.header_start == p.body_start and p.message.body_end == p.body_end


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_analyze_never_raises(raw: bytes) -> None:
    info = analyze(raw)
    assert info.size == len(raw)
    _check_offsets(info, len(raw))
    imapcheck.check_envelope(imapcheck.parse(info.envelope))
    imapcheck.check_body(imapcheck.parse(info.bodystructure), ext=True)
    imapcheck.check_body(imapcheck.parse(info.body), ext=False)
    assert MessageInfo.from_json(info.to_json()) == info
    search_text(raw, info.tree)
    for parts in ([], [1], [1, 1], [2, 1, 1]):
        for text in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS"):
            out = section_bytes(raw, info.tree, parts, text, ["subject"])
            assert out is None or isinstance(out, bytes)
        try:
            binary_bytes(raw, info.tree, parts)
        except UnknownCTE:
            pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_address_functions_never_crash(s: str) -> None:
    valid = is_valid_address(s)
    try:
        norm = normalize_address(s)
    except InvalidAddress:
        return
    assert normalize_address(norm) == norm
    del valid
