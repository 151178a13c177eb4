"""RFC 2047 decoding, dates, analyze() fields, JSON round trip, search_text, header_value."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from postoffice.mail import MessageInfo, analyze, header_value, search_text
from postoffice.mail.headers import decode_words, parse_date
from postoffice.mail.imapfmt import address_text, parse_address_list

from .test_structure import ALL, load


@pytest.mark.parametrize(
    "src,expected",
    [
        ("plain text", "plain text"),
        ("=?UTF-8?Q?Caf=C3=A9?=", "Café"),
        ("=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "éé"),  # whitespace between words dropped
        ("a =?utf-8?q?b?= c", "a b c"),
        ("=?utf-8?b?4p?= =?utf-8?b?gqw=?=", "€"),  # multi-byte char split across words
        ("=?x-unknown-charset?q?abc?=", "abc"),
        ("=?iso-8859-1*fr?q?=E9t=E9?=", "été"),  # RFC 2231 language suffix
        ("=?utf-8?q?bad=ZZhex?=", "bad=ZZhex"),
        ("=?utf-8?b?!!!?=", ""),
        ("=?rot13?q?x?=", "x"),
    ],
)
def test_decode_words(src: str, expected: str) -> None:
    assert decode_words(src) == expected


UTC = timezone.utc


@pytest.mark.parametrize(
    "src,expected",
    [
        ("Wed, 17 Jan 2024 09:30:00 -0500", datetime(2024, 1, 17, 9, 30, tzinfo=timezone(timedelta(hours=-5)))),
        ("17 Jan 2024 09:30 +0000 (UTC)", datetime(2024, 1, 17, 9, 30, tzinfo=UTC)),
        ("Wed, 17 Jan 24 09:30:00 GMT", datetime(2024, 1, 17, 9, 30, tzinfo=UTC)),
        ("Wed, 17 Jan 2024 09:30:00", datetime(2024, 1, 17, 9, 30, tzinfo=UTC)),
        ("Wed, 17 Jan 2024 09:30:00 -0000", datetime(2024, 1, 17, 9, 30, tzinfo=UTC)),
        ("  Wed,   17   Jan   2024   09:30:60  +0100 ", datetime(2024, 1, 17, 9, 30, 59, tzinfo=timezone(timedelta(hours=1)))),
        ("garbage", None),
        ("", None),
        ("Wed, 45 Foo 2024 99:99:99 +9999", None),
        (None, None),
    ],
)
def test_parse_date(src, expected) -> None:
    assert parse_date(src) == expected


def test_analyze_search_fields() -> None:
    info = analyze(load("encoded"))
    assert info.subject == "Café olé and à la carte"
    assert info.from_ == "山田 <yamada@example.jp>"
    assert info.to == 'Zoë <zoe@example.com>'  # envelope form: the phrase unquoted
    assert info.date == datetime(2024, 1, 22, 23, 59, 59, tzinfo=UTC)
    alt = analyze(load("alternative"))
    assert alt.in_reply_to == "<plain-1@example.org>"
    assert alt.references == "<root@example.org> <plain-1@example.org>"
    assert alt.message_id == "<alt-1@example.net>"
    assert alt.cc == "frank@example.com"
    assert alt.bcc is None
    eight = analyze(load("eightbit"))
    assert eight.subject == "Grüße aus Köln"
    assert eight.from_ == "André Pirard <pirard@example.be>"


@pytest.mark.parametrize("name", ALL)
def test_json_round_trip(name: str) -> None:
    info = analyze(load(name))
    text = info.to_json()
    assert text.isascii()
    assert MessageInfo.from_json(text) == info
    assert type(info.tree).from_json(info.tree.to_json()) == info.tree


def test_search_text() -> None:
    assert search_text(load("alternative"), analyze(load("alternative")).tree) == (
        "Café at 10.\n<p>Cafe at 10.</p>"
    )
    raw = load("barelf")
    assert search_text(raw, analyze(raw).tree) == "One été\nTwo\n"
    raw = load("encoded")
    assert search_text(raw, analyze(raw).tree) == "éclair"
    raw = load("nested")
    assert search_text(raw, analyze(raw).tree) == "Forwarding.\nInner text."


def test_header_value() -> None:
    raw = b"Received: a\r\nSubject: =?utf-8?q?x=C3=A9?=\r\nReceived: b\r\n c\r\n\r\nbody"
    tree = analyze(raw).tree
    assert header_value(raw, tree, "RECEIVED") == ["a", "b c"]
    assert header_value(raw, tree, "subject") == ["xé"]
    assert header_value(raw, tree, "x-none") == []


@pytest.mark.parametrize(
    "src,expected",
    [
        (b"a@b", [(None, None, b"a", b"b")]),
        (b"John Q. Public <jqp@x.org>", [(b"John Q. Public", None, b"jqp", b"x.org")]),
        (b'"a\\"b" <x@y>', [(b'a"b', None, b"x", b"y")]),
        # the legacy "user@domain (Real Name)" form: the comment is the personal name
        (b"x@y (Comment (nested))", [(b"Comment (nested)", None, b"x", b"y")]),
        (b"u@h (Real Name), v@h", [(b"Real Name", None, b"u", b"h"), (None, None, b"v", b"h")]),
        (b"u@h (Real\\) Name)", [(b"Real) Name", None, b"u", b"h")]),
        (b"Phrase (note) <u@h> (after)", [(b"Phrase", None, b"u", b"h")]),
        (b'"quoted local"@y', [(None, None, b'"quoted local"', b"y")]),
        (b"<>", []),
        (b"", []),
        (b"g:;", [(None, None, b"g", None), (None, None, None, None)]),
        (b"g: a@b", [(None, None, b"g", None), (None, None, b"a", b"b"), (None, None, None, None)]),
        (b"<@r:u@h>", [(None, b"@r", b"u", b"h")]),
        (b"Name <user>", [(b"Name", None, b"user", b"MISSING_DOMAIN")]),
        (b"a@[1.2.3.4]", [(None, None, b"a", b"[1.2.3.4]")]),
        (b',,a@b,,', [(None, None, b"a", b"b")]),
        (b'"unterminated <a@b>', [(None, None, b'"unterminated <a@b>', b"MISSING_DOMAIN")]),
    ],
)
def test_parse_address_list(src: bytes, expected) -> None:
    assert parse_address_list(src) == expected


@pytest.mark.parametrize(
    "src,expected",
    [
        (b"Alice <alice@example.org>", "Alice <alice@example.org>"),
        (b"alice@example.org (Alice Liddell)", "Alice Liddell <alice@example.org>"),
        (b'"Bob (not a comment)" <bob(hidden)@example.com>', "Bob (not a comment) <bob@example.com>"),
        (b"<@route.example:carol@example.net>", "carol@example.net"),
        (b"=?UTF-8?Q?J=C3=BCrgen?= <j@example.de>, d@e", "J\u00fcrgen <j@example.de>, d@e"),
        (b"team: a@b, c@d;", "team, a@b, c@d"),
    ],
)
def test_address_text_is_the_envelope_form(src: bytes, expected: str) -> None:
    """SEARCH FROM/TO/CC/BCC text: comments and routes gone (RFC 9051 6.4.4)."""
    assert address_text(src) == expected
