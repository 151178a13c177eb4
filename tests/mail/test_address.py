from __future__ import annotations

import pytest

from postoffice.mail.address import (
    InvalidAddress,
    base_local_part,
    is_valid_address,
    normalize_address,
    normalize_domain,
    split_address,
    split_plus,
)


@pytest.mark.parametrize(
    "src,expected",
    [
        ("User@Example.COM", "user@example.com"),
        ("<User@Example.com.>", "user@example.com"),
        ("jörg@Bücher.Example", "jörg@xn--bcher-kva.example"),
        ("STRASSE@x.org", "strasse@x.org"),
        ("Straße@x.org", "straße@x.org"),  # lower-cased, never folded: ß is not ss
        ("JOSÉ@x.org", "josé@x.org"),  # Unicode lower case (RFC 8265 §3.3.2)
        ("e\u0301@x.org", "\u00e9@x.org"),  # NFC
        ("E\u0301@x.org", "\u00e9@x.org"),
        ('"john.doe"@x.org', "john.doe@x.org"),  # needless quotes dropped
        ('"John Doe"@x.org', '"john doe"@x.org'),
        ("a+Tag@x.org", "a+tag@x.org"),
        ("u@[192.0.2.1]", "u@[192.0.2.1]"),
    ],
)
def test_normalize_address(src: str, expected: str) -> None:
    assert normalize_address(src) == expected
    assert normalize_address(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "bad", ["", "@x.org", "user@", "no-at-sign", "a..b@x.org", ".a@x.org", "a b@x.org",
            "a@-bad-.org", "a@x..org", "a@exa mple.org", "x" * 65 + "@x.org"]
)
def test_invalid(bad: str) -> None:
    assert not is_valid_address(bad)
    with pytest.raises(InvalidAddress):
        normalize_address(bad)


def test_valid_forms() -> None:
    assert is_valid_address("a.b-c+d@example.com")
    assert is_valid_address('"a b"@example.com')
    assert is_valid_address('"a@b"@example.com')
    assert is_valid_address("用户@例子.广告")
    assert not is_valid_address("用户@例子.广告", smtputf8=False)
    assert split_address('"a@b"@example.com') == ('"a@b"', "example.com")


def test_plus_addressing() -> None:
    assert base_local_part("user+tag") == "user"
    assert base_local_part("user") == "user"
    assert base_local_part("+tag") == "+tag"
    assert split_plus("user+a+b") == ("user", "a+b")
    assert split_plus("user-tag", "-") == ("user", "tag")


def test_domain() -> None:
    assert normalize_domain("EXAMPLE.com.") == "example.com"
    assert normalize_domain("xn--bcher-kva.example") == "xn--bcher-kva.example"
    with pytest.raises(InvalidAddress):
        normalize_domain("xn--zz.example")


# Issue #12: look-alikes. casefold() mapped these onto the ASCII address (mail for "uſer10"
# landed in user10's mailbox); the policy refuses them (RFC 8264 §9.17 HasCompat; Cc/Cf/Zs).
LOOK_ALIKES = {
    "u\u017fer10@x.org": "U+017F",  # LATIN SMALL LETTER LONG S
    "o\ufb03ce@x.org": "U+FB03",  # LATIN SMALL LIGATURE FFI
    "\u212aen@x.org": "U+212A",  # KELVIN SIGN (NFC alone would make it K)
    "\uff55ser@x.org": "U+FF55",  # FULLWIDTH LATIN SMALL LETTER U
    "us\u200ber@x.org": "U+200B",  # ZERO WIDTH SPACE
    "us\u00ader@x.org": "U+00AD",  # SOFT HYPHEN
    "us\u202eer@x.org": "U+202E",  # RIGHT-TO-LEFT OVERRIDE
    "us\u0085er@x.org": "U+0085",  # NEXT LINE (a C1 control)
    "us\u00a0er@x.org": "U+00A0",  # NO-BREAK SPACE
    '"us\u200ber"@x.org': "U+200B",  # quoting does not help
    '"us\ter"@x.org': "U+0009",
}


@pytest.mark.parametrize("address", sorted(LOOK_ALIKES))
def test_look_alike_local_parts_are_refused(address: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_address(address)
    assert LOOK_ALIKES[address] in caught.value.reason


def test_no_allowed_character_lowercases_onto_ascii() -> None:
    """Exhaustive over Unicode: a non-ASCII character the policy allows never becomes plain
    ASCII (or a refused character) by the case mapping."""
    import unicodedata

    from postoffice.mail.address import local_part_problem
    for cp in range(0x80, 0x110000):
        ch = chr(cp)
        if ch.lower() == ch or local_part_problem("a" + ch):
            continue
        mapped = unicodedata.normalize("NFC", ch.lower())
        assert not mapped.isascii(), hex(cp)
        assert not local_part_problem("a" + mapped), hex(cp)
