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
        ("Straße@x.org", "strasse@x.org"),  # casefold: ß -> ss (same mailbox, by policy)
        ("\u212aelvin@x.org", "kelvin@x.org"),  # Kelvin sign folds to k
        ("e\u0301@x.org", "\u00e9@x.org"),  # NFC
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
