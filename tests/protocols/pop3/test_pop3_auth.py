"""AUTH (RFC 5034) over the shared SASL mechanisms."""

from __future__ import annotations

import base64

from pop3_harness import FakeServer, transcript
from postoffice.protocols.pop3 import Authenticate, Pop3Policy, State


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PLAIN = b64(b"\0alice\0secret")


def test_auth_list() -> None:
    transcript(FakeServer(tls_active=True), """
        C: AUTH
        S: +OK SASL mechanisms follow
        S: PLAIN
        S: LOGIN
        S: .
    """)


def test_plain_with_initial_response() -> None:
    server = FakeServer(tls_active=True, policy=Pop3Policy())
    transcript(server, f"""
        C: AUTH PLAIN {PLAIN}
        S: +OK alice's maildrop has 3 messages (210 octets)
    """)
    assert server.authenticated == [Authenticate("alice", "secret", "PLAIN", "")]
    assert server.session.state is State.TRANSACTION


def test_plain_with_continuation() -> None:
    server = FakeServer(tls_active=True)
    transcript(server, f"""
        C: auth plain
        S: +
        C: {PLAIN}
        S: +OK alice's maildrop has 3 messages (210 octets)
    """)


def test_plain_wrong_password() -> None:
    transcript(FakeServer(tls_active=True), f"""
        C: AUTH PLAIN {b64(b"alice" + bytes(1) + b"alice" + bytes(1) + b"nope")}
        S: -ERR [AUTH] invalid user name or password
    """)


def test_plain_authzid_is_passed_to_the_server() -> None:
    # The server decides (services.auth.authzid_permitted, shared with IMAP and SMTP).
    server = FakeServer(tls_active=True)
    transcript(server, f"""
        C: AUTH PLAIN {b64(b"bob" + bytes(1) + b"alice" + bytes(1) + b"secret")}
        S: +OK alice's maildrop has 3 messages (210 octets)
    """)
    assert server.authenticated == [Authenticate("alice", "secret", "PLAIN", "bob")]


def test_plain_malformed() -> None:
    transcript(FakeServer(tls_active=True), f"""
        C: AUTH PLAIN {b64(b"no nuls here")}
        S: -ERR [AUTH] malformed PLAIN message
        C: AUTH PLAIN =
        S: -ERR [AUTH] malformed PLAIN message
    """)


def test_login_mechanism() -> None:
    server = FakeServer(tls_active=True)
    transcript(server, f"""
        C: AUTH LOGIN
        S: + {b64(b"Username:")}
        C: {b64(b"alice")}
        S: + {b64(b"Password:")}
        C: {b64(b"secret")}
        S: +OK alice's maildrop has 3 messages (210 octets)
    """)
    assert server.authenticated[0].mechanism == "LOGIN"


def test_login_with_initial_response() -> None:
    transcript(FakeServer(tls_active=True), f"""
        C: AUTH LOGIN {b64(b"alice")}
        S: + {b64(b"Password:")}
        C: {b64(b"secret")}
        S: +OK alice's maildrop has 3 messages (210 octets)
    """)


def test_cancelled_auth() -> None:
    server = FakeServer(tls_active=True)
    transcript(server, f"""
        C: AUTH LOGIN
        S: + {b64(b"Username:")}
        C: *
        S: -ERR authentication cancelled
        C: AUTH PLAIN
        S: +
        C: *
        S: -ERR authentication cancelled
        C: USER alice
        S: +OK send PASS
    """)
    assert server.authenticated == []


def test_invalid_base64() -> None:
    transcript(FakeServer(tls_active=True), """
        C: AUTH PLAIN
        S: +
        C: !!!not base64
        S: -ERR the response is not valid base64; authentication aborted
        C: AUTH PLAIN abc
        S: -ERR the initial response is not valid base64
    """)


def test_command_words_during_exchange_are_responses() -> None:
    # "QUIT" on a continuation line is a (bad) SASL response, not a command
    server = FakeServer(tls_active=True)
    transcript(server, """
        C: AUTH PLAIN
        S: +
        C: QUIT
        S: -ERR [AUTH] malformed PLAIN message
    """)
    assert not server.closed


def test_unknown_mechanism() -> None:
    transcript(FakeServer(tls_active=True, policy=Pop3Policy(sasl_mechanisms=("PLAIN",))), """
        C: AUTH CRAM-MD5
        S: -ERR unsupported SASL mechanism CRAM-MD5
        C: AUTH LOGIN
        S: -ERR unsupported SASL mechanism LOGIN
    """)


def test_over_long_sasl_response_aborts() -> None:
    server = FakeServer(tls_active=True)
    server.feed(b"AUTH PLAIN\r\n")
    out = server.feed(b"A" * 20_000 + b"\r\nNOOP\r\n")
    assert out == (b"-ERR authentication aborted: line too long\r\n"
                   b"-ERR NOOP is only valid after logging in\r\n")


def test_drop_during_exchange() -> None:
    server = FakeServer(tls_active=True)
    server.feed(b"AUTH LOGIN\r\n")
    server.feed(b"")
    assert server.closed and server.authenticated == []


def test_auth_after_login_not_allowed() -> None:
    server = FakeServer(tls_active=True)
    server.feed(f"AUTH PLAIN {PLAIN}\r\n".encode())
    transcript(server, """
        C: AUTH PLAIN
        S: -ERR AUTH is not valid after logging in
    """)
