"""SASL mechanisms (RFC 4616 PLAIN, LOGIN) and the RFC 4954 base64 conventions."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.protocols import sasl
from postoffice.protocols.sasl import (
    CANCELLED,
    INVALID,
    Challenge,
    Credentials,
    SaslFailure,
    decode_response,
    encode_challenge,
    server_mechanism,
)


def test_unknown_mechanism_is_none() -> None:
    assert server_mechanism("CRAM-MD5") is None
    assert server_mechanism("") is None


def test_mechanism_names_case_insensitive() -> None:
    mech = server_mechanism("plain")
    assert mech is not None and mech.name == "PLAIN"
    assert sasl.MECHANISMS == ("PLAIN", "LOGIN")


# -- PLAIN ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"\x00alice\x00secret", Credentials("", "alice", "secret")),
        (b"admin\x00alice\x00secret", Credentials("admin", "alice", "secret")),
        ("\x00jörg\x00pässword".encode(), Credentials("", "jörg", "pässword")),
        (b"\x00a@example.org\x00p w d", Credentials("", "a@example.org", "p w d")),
    ],
    ids=["no-authzid", "authzid", "utf8", "spaces"],
)
def test_plain_initial_response(message: bytes, expected: Credentials) -> None:
    mech = server_mechanism("PLAIN")
    assert mech is not None
    assert mech.start(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"alice",
        b"\x00alice",
        b"\x00alice\x00",  # empty password
        b"\x00\x00secret",  # empty authcid
        b"\x00al\x00ice\x00secret",  # NUL inside authcid
        b"\x00alice\x00sec\x00ret",  # NUL inside password
        b"\x00\x00\x00",
        b"\x00alice\x00\xff\xfe",  # not UTF-8
        b"\x00" + b"a" * 256 + b"\x00secret",  # authcid over 255
        b"\x00alice\x00" + b"p" * 256,  # password over 255
        b"x" * 256 + b"\x00alice\x00secret",  # authzid over 255
        b"\x00" * 5000,
    ],
    ids=[
        "empty", "no-nul", "one-nul", "empty-password", "empty-authcid", "nul-in-authcid",
        "nul-in-password", "only-nuls", "not-utf8", "authcid-long", "password-long",
        "authzid-long", "oversize",
    ],
)
def test_plain_rejects(message: bytes) -> None:
    mech = server_mechanism("PLAIN")
    assert mech is not None
    assert isinstance(mech.start(message), SaslFailure)


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    mech = server_mechanism("PLAIN")
    assert mech is not None
    assert mech.start(None) == Challenge(b"")
    assert mech.step(b"\x00bob\x00pw") == Credentials("", "bob", "pw")
    assert isinstance(mech.step(b"\x00bob\x00pw"), SaslFailure)  # already finished


def test_plain_misuse() -> None:
    mech = server_mechanism("PLAIN")
    assert mech is not None
    assert isinstance(mech.step(b"\x00a\x00b"), SaslFailure)  # step before start
    mech.start(None)
    assert isinstance(mech.start(None), SaslFailure)  # start twice


def test_plain_max_lengths_accepted() -> None:
    mech = server_mechanism("PLAIN")
    assert mech is not None
    msg = b"z" * 255 + b"\x00" + b"a" * 255 + b"\x00" + "é".encode() * 255
    assert mech.start(msg) == Credentials("z" * 255, "a" * 255, "é" * 255)


# -- LOGIN ---------------------------------------------------------------------------


def test_login_exchange() -> None:
    mech = server_mechanism("LOGIN")
    assert mech is not None
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.step(b"alice") == Challenge(b"Password:")
    assert mech.step(b"secret") == Credentials("", "alice", "secret")
    assert isinstance(mech.step(b"more"), SaslFailure)


def test_login_initial_response_is_username() -> None:
    mech = server_mechanism("LOGIN")
    assert mech is not None
    assert mech.start(b"alice") == Challenge(b"Password:")
    assert mech.step(b"pw") == Credentials("", "alice", "pw")


@pytest.mark.parametrize(
    ("username", "password"),
    [(b"", b"pw"), (b"alice", b""), (b"al\x00ice", b"pw"), (b"alice", b"p\x00w"),
     (b"\xff", b"pw"), (b"alice", b"p" * 256)],
    ids=["empty-user", "empty-password", "nul-user", "nul-password", "bad-utf8", "long"],
)
def test_login_rejects(username: bytes, password: bytes) -> None:
    mech = server_mechanism("LOGIN")
    assert mech is not None
    mech.start(None)
    step = mech.step(username)
    if isinstance(step, Challenge):
        step = mech.step(password)
    assert isinstance(step, SaslFailure)


# -- base64 helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"*", CANCELLED),
        (b"*\r\n", CANCELLED),
        (b"=", b""),
        (b"", b""),
        (b"AGFsaWNlAHNlY3JldA==", b"\x00alice\x00secret"),
        (b"AGFsaWNlAHNlY3JldA==\r\n", b"\x00alice\x00secret"),
        (b"YWxpY2U=", b"alice"),
        (b"YWxpY2U", INVALID),  # missing padding
        (b"YWxp Y2U=", INVALID),
        (b"!!!!", INVALID),
        (b"YWxpY2U=YQ==", INVALID),  # data after padding
        (b"**", INVALID),
        (b"A" * 20000, INVALID),
    ],
    ids=["cancel", "cancel-crlf", "equals", "empty", "plain", "plain-crlf", "simple",
         "no-padding", "space", "garbage", "after-padding", "double-star", "oversize"],
)
def test_decode_response(line: bytes, expected: object) -> None:
    assert decode_response(line) == expected


def test_encode_challenge() -> None:
    assert encode_challenge(b"") == b""
    assert encode_challenge(b"Username:") == b"VXNlcm5hbWU6"


@given(st.binary(max_size=300))
def test_challenge_round_trip(data: bytes) -> None:
    assert decode_response(encode_challenge(data) or b"=") == data


@given(st.binary(max_size=200))
def test_decode_never_raises(line: bytes) -> None:
    result = decode_response(line)
    assert result in (CANCELLED, INVALID) or isinstance(result, bytes)


@given(st.sampled_from(["PLAIN", "LOGIN"]), st.lists(st.binary(max_size=80), max_size=4),
       st.one_of(st.none(), st.binary(max_size=80)))
def test_mechanisms_never_raise(name: str, responses: list[bytes], initial: bytes | None) -> None:
    mech = server_mechanism(name)
    assert mech is not None
    step = mech.start(initial)
    for response in responses:
        assert isinstance(step, (Challenge, Credentials, SaslFailure))
        step = mech.step(response)


def test_plain_via_base64_as_a_client_sends_it() -> None:
    line = base64.b64encode(b"\x00user@example.org\x00hunter2")
    decoded = decode_response(line)
    assert isinstance(decoded, bytes)
    mech = server_mechanism("PLAIN")
    assert mech is not None
    assert mech.start(decoded) == Credentials("", "user@example.org", "hunter2")
