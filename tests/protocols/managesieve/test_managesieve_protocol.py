"""ManageSieve wire format and session state machine, without sockets (RFC 5804)."""

from __future__ import annotations

import base64

from postoffice.protocols.managesieve import (
    NEED_DATA,
    Authenticate,
    Close,
    Command,
    ConnectionClosed,
    InvalidCommand,
    ManageSieveConnection,
    ManageSieveSession,
    Policy,
    SaslResponse,
    ScriptOp,
    StartTls,
    State,
)

POLICY = Policy(implementation="postoffice", sieve_extensions=("fileinto", "vacation"), tls_available=True,
                allow_plaintext_auth=False)


def events(data: bytes, sasl: bool = False) -> list[object]:
    conn = ManageSieveConnection()
    conn.expect_sasl_response(sasl)
    out = []
    for i in range(len(data)):  # byte by byte: the parser must wait for whole commands
        conn.receive_data(data[i:i + 1])
        while (event := conn.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def test_commands_strings_literals_and_numbers() -> None:
    got = events(b'capability\r\nPUTSCRIPT "a \\"b\\"" {12+}\r\nkeep;\r\nstop;\r\nHAVESPACE "x" 1024\r\n'
                 b'GETSCRIPT {3}\r\nabc\r\n')
    assert got == [Command("CAPABILITY", ()), Command("PUTSCRIPT", ('a "b"', "keep;\r\nstop;")),
                   Command("HAVESPACE", ("x", 1024)), Command("GETSCRIPT", ("abc",))]


def test_bad_syntax_is_a_value_and_the_next_command_still_works() -> None:
    got = events(b'GETSCRIPT "unterminated\r\nGETSCRIPT "x"junk\r\n123\r\nNOOP\r\n')
    assert [type(e) for e in got] == [InvalidCommand, InvalidCommand, InvalidCommand, Command]
    conn = ManageSieveConnection()
    conn.receive_data(b"PUTSCRIPT \"x\" {99999999+}\r\n")
    bad = conn.next_event()
    assert isinstance(bad, InvalidCommand) and bad.fatal
    conn = ManageSieveConnection()
    conn.receive_data(b"A" * 9000)
    bad = conn.next_event()
    assert isinstance(bad, InvalidCommand) and bad.fatal
    conn = ManageSieveConnection()
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_sasl_response_lines() -> None:
    assert events(b'"AGFiYwB4"\r\n', sasl=True) == [SaslResponse("AGFiYwB4")]
    assert events(b'{4+}\r\nabcd\r\n', sasl=True) == [SaslResponse("abcd")]


def test_greeting_capabilities_and_starttls_before_login() -> None:
    s = ManageSieveSession(POLICY, tls_active=False)
    greeting = s.greeting()
    assert b'"SASL" ""\r\n' in greeting  # no mechanism offered before TLS
    assert b'"STARTTLS"\r\n' in greeting and b'"SIEVE" "fileinto vacation"' in greeting
    assert greeting.endswith(b"\r\n") and b"\r\nOK " in greeting
    out = s.handle(Command("AUTHENTICATE", ("PLAIN", base64.b64encode(b"\0a@b.c\0pw").decode())))
    assert out.data.startswith(b"NO (ENCRYPT-NEEDED)") and out.action is None
    assert s.handle(Command("LISTSCRIPTS", ())).data.startswith(b"NO ")
    out = s.handle(Command("STARTTLS", ()))
    assert out.data.startswith(b"OK") and isinstance(out.action, StartTls)
    again = s.tls_done(True)
    assert b'"SASL" "PLAIN LOGIN"' in again.data and b"STARTTLS" not in again.data  # §2.2


def test_authenticate_plain_with_and_without_initial_response() -> None:
    s = ManageSieveSession(POLICY, tls_active=True)
    out = s.handle(Command("AUTHENTICATE", ("PLAIN", base64.b64encode(b"\0alice@x.test\0pw").decode())))
    assert out.action == Authenticate("alice@x.test", "pw", "")
    assert s.auth_done(True, user="alice@x.test").data.startswith(b"OK")
    assert s.state is State.AUTH
    s = ManageSieveSession(POLICY, tls_active=True)
    out = s.handle(Command("AUTHENTICATE", ("PLAIN",)))
    assert out.data == b'""\r\n' and s.in_sasl
    out = s.handle(SaslResponse(base64.b64encode(b"\0bob@x.test\0pw2").decode()))
    assert out.action == Authenticate("bob@x.test", "pw2", "")
    s = ManageSieveSession(POLICY, tls_active=True)
    s.handle(Command("AUTHENTICATE", ("LOGIN",)))
    assert s.handle(SaslResponse("*")).data.startswith(b"NO") and not s.in_sasl


def test_three_failures_end_the_session() -> None:
    s = ManageSieveSession(POLICY, tls_active=True)
    for _ in range(2):
        assert s.auth_done(False, reason="nope").action is None
    last = s.auth_done(False, reason="nope")
    assert isinstance(last.action, Close) and b"BYE" in last.data


def test_script_commands_in_auth_state() -> None:
    s = ManageSieveSession(POLICY, tls_active=True)
    s.auth_done(True, user="a@b.c")
    out = s.handle(Command("PUTSCRIPT", ("main", "keep;")))
    assert out.action == ScriptOp("putscript", ("main", "keep;"))
    assert s.handle(Command("PUTSCRIPT", ("main",))).data.startswith(b"NO")
    assert s.handle(Command("HAVESPACE", ("main", "x"))).data.startswith(b"NO")
    listing = s.script_done(ScriptOp("listscripts"), [("a", False), ("main", True)])
    assert listing.data == b'"a"\r\n"main" ACTIVE\r\nOK "Listscripts completed"\r\n'
    got = s.script_done(ScriptOp("getscript", ("main",)), "keep;\r\n")
    assert got.data == b'{7}\r\nkeep;\r\n\r\nOK "Getscript completed"\r\n'
    no = s.script_done(ScriptOp("deletescript", ("main",)), error="active", code="ACTIVE")
    assert no.data == b'NO (ACTIVE) "active"\r\n'
    assert s.handle(Command("NOOP", ("t1",))).data == b'OK (TAG "t1") "Done"\r\n'
    out = s.handle(Command("LOGOUT", ()))
    assert isinstance(out.action, Close)
