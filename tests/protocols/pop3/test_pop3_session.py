from __future__ import annotations

import base64

import pytest

from pop3_harness import MESSAGES, FakeServer, login, transcript
from postoffice.protocols.pop3 import (
    ALLOWED, Apop, Err, Auth, AuthRefused, AuthTemporaryFailure, Capa, Dele, List, Maildrop,
    MaildropInUse, MaildropUnavailable, Noop, Pass, Pop3Connection, Pop3Policy, Pop3Session,
    Pop3SessionError, Quit, Retr, Rset, SendMessage, Stat, State, Stls, Top, Uidl, User,
    dot_stuff,
)
from postoffice.protocols.pop3.commands import ALL_COMMANDS


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- greeting, USER/PASS ------------------------------------------------------------------


def test_login_and_quit_without_changes() -> None:
    server = FakeServer()
    transcript(server, """
        S: +OK postoffice POP3 server ready
        C: USER alice
        S: +OK send PASS
        C: PASS secret
        S: +OK alice's maildrop has 3 messages (210 octets)
        C: STAT
        S: +OK 3 210
        C: QUIT
        S: +OK postoffice POP3 server signing off (0 messages deleted)
    """)
    assert server.committed == [()]
    assert server.closed


def test_wrong_password_then_retry() -> None:
    server = FakeServer()
    transcript(server, """
        C: USER alice
        C: PASS wrong
        S: +OK send PASS
        S: -ERR [AUTH] invalid user name or password
        C: PASS secret
        S: -ERR send USER first
        C: USER alice
        C: PASS secret
        S: +OK send PASS
        S: +OK alice's maildrop has 3 messages (210 octets)
    """)
    assert server.session.state is State.TRANSACTION


def test_pass_without_user() -> None:
    transcript(FakeServer(), """
        C: PASS secret
        S: -ERR send USER first
    """)


@pytest.mark.parametrize(
    ("override", "reply"),
    [
        (AuthRefused("POP3 is disabled for this address by its administrator"),
         "-ERR [AUTH] POP3 is disabled for this address by its administrator"),
        (AuthTemporaryFailure(), "-ERR [SYS/TEMP] temporary failure, please try again later"),
        (MaildropInUse(), "-ERR [IN-USE] maildrop is locked by another session"),
    ],
)
def test_auth_outcomes(override: object, reply: str) -> None:
    server = FakeServer(auth_override=override)  # type: ignore[arg-type]
    transcript(server, f"""
        C: USER alice
        C: PASS secret
        S: +OK send PASS
        S: {reply}
    """)
    assert server.session.state is State.AUTHORIZATION
    assert server.session.username is None


@pytest.mark.parametrize(
    ("override", "reply"),
    [
        (MaildropInUse(), "-ERR [IN-USE] maildrop is locked by another session"),
        (MaildropUnavailable(), "-ERR [SYS/TEMP] the maildrop cannot be opened right now, please try again later"),
    ],
)
def test_maildrop_outcomes(override: object, reply: str) -> None:
    server = FakeServer(maildrop_override=override)  # type: ignore[arg-type]
    transcript(server, f"""
        C: USER alice
        C: PASS secret
        S: +OK send PASS
        S: {reply}
        C: STAT
        S: -ERR STAT is only valid after logging in
    """)


def test_apop_is_refused() -> None:
    transcript(FakeServer(), """
        C: APOP alice 0123456789abcdef0123456789abcdef
        S: -ERR [AUTH] APOP is not supported; use USER/PASS or AUTH
    """)


def test_quit_in_authorization_signs_off_without_update() -> None:
    server = FakeServer()
    transcript(server, """
        C: QUIT
        S: +OK postoffice POP3 server signing off
    """)
    assert server.closed and server.committed == []


# -- plaintext policy and STLS ------------------------------------------------------------


def test_plaintext_refused_without_tls() -> None:
    server = FakeServer(policy=Pop3Policy())
    transcript(server, """
        C: USER alice
        S: -ERR [AUTH] plaintext authentication is not allowed without TLS; use STLS first
        C: PASS secret
        S: -ERR [AUTH] plaintext authentication is not allowed without TLS; use STLS first
        C: AUTH PLAIN
        S: -ERR [AUTH] plaintext authentication is not allowed without TLS; use STLS first
        C: AUTH
        S: -ERR [AUTH] plaintext authentication is not allowed without TLS; use STLS first
    """)
    assert server.authenticated == []


def test_plaintext_refused_without_tls_available() -> None:
    transcript(FakeServer(policy=Pop3Policy(tls_available=False)), """
        C: USER alice
        S: -ERR [AUTH] plaintext authentication is not allowed here; connect with TLS
        C: STLS
        S: -ERR STLS is not available
    """)


def test_capa_before_and_after_stls() -> None:
    server = FakeServer(policy=Pop3Policy())
    transcript(server, """
        C: CAPA
        S: +OK capability list follows
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: STLS
        S: EXPIRE NEVER
        S: IMPLEMENTATION postoffice
        S: .
        C: STLS
        S: +OK begin TLS negotiation
        C: CAPA
        S: +OK capability list follows
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: USER
        S: SASL PLAIN LOGIN
        S: EXPIRE NEVER
        S: IMPLEMENTATION postoffice
        S: .
        C: STLS
        S: -ERR already using TLS
        C: USER alice
        C: PASS secret
        S: +OK send PASS
        S: +OK alice's maildrop has 3 messages (210 octets)
    """)


def test_stls_discards_pipelined_commands() -> None:
    # CVE-2011-0411 class: plaintext pipelined after STLS must not run inside TLS.
    server = FakeServer(policy=Pop3Policy())
    out = server.feed(b"STLS\r\nUSER alice\r\nPASS secret\r\n")
    assert out == b"+OK begin TLS negotiation\r\n"
    assert server.discarded == [b"USER alice\r\nPASS secret\r\n"]
    assert server.session.state is State.AUTHORIZATION
    assert server.authenticated == []


def test_stls_forgets_user() -> None:
    server = FakeServer()  # plaintext allowed: USER is accepted before TLS
    transcript(server, """
        C: USER alice
        S: +OK send PASS
        C: STLS
        S: +OK begin TLS negotiation
        C: PASS secret
        S: -ERR send USER first
    """)


def test_capa_expire_and_login_delay_per_user() -> None:
    policy = Pop3Policy(tls_available=False, allow_plaintext_auth=True, expire_days=30,
                        expire_per_user=True, login_delay=900, login_delay_per_user=True,
                        sasl_mechanisms=())
    server = FakeServer(policy=policy, maildrop_override=Maildrop(
        [("u1", 10)], expire_days=None, login_delay=300))
    transcript(server, """
        C: CAPA
        S: +OK capability list follows
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: USER
        S: EXPIRE 30 USER
        S: LOGIN-DELAY 900 USER
        S: IMPLEMENTATION postoffice
        S: .
    """)
    login(server)
    caps = server.session.capabilities()
    assert "EXPIRE NEVER" in caps and "LOGIN-DELAY 300" in caps


def test_capa_fixed_expire_after_login() -> None:
    server = FakeServer(policy=Pop3Policy(allow_plaintext_auth=True, expire_days=0))
    login(server)
    assert "EXPIRE 0" in server.session.capabilities()


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        Pop3Policy(expire_per_user=True)
    with pytest.raises(ValueError):
        Pop3Policy(login_delay_per_user=True)


# -- TRANSACTION --------------------------------------------------------------------------


def test_list_uidl_stat() -> None:
    server = FakeServer()
    login(server)
    transcript(server, """
        C: LIST
        S: +OK 3 messages (210 octets)
        S: 1 28
        S: 2 62
        S: 3 120
        S: .
        C: LIST 2
        S: +OK 2 62
        C: UIDL
        S: +OK unique-id listing follows
        S: 1 uid-a
        S: 2 uid-b
        S: 3 uid-c
        S: .
        C: UIDL 3
        S: +OK 3 uid-c
        C: LIST 4
        S: -ERR no such message, only 3 messages in maildrop
        C: UIDL 99999
        S: -ERR no such message, only 3 messages in maildrop
        C: NOOP
        S: +OK
    """)


def test_retr_and_top() -> None:
    server = FakeServer()
    login(server)
    out = server.feed(b"RETR 2\r\n")
    assert out == b"+OK 62 octets\r\n" + dot_stuff(MESSAGES["uid-b"])
    assert b"\r\n..dotted\r\n" in out
    transcript(server, """
        C: TOP 2 0
        S: +OK top of message follows
        S: Subject: two
        S: From: b@example.org
        S:
        S: .
        C: TOP 2 2
        S: +OK top of message follows
        S: Subject: two
        S: From: b@example.org
        S:
        S: line 1
        S: ..dotted
        S: .
        C: TOP 1 50
        S: +OK top of message follows
        S: Subject: one
        S:
        S: first body
        S: .
        C: RETR 0
        S: -ERR message numbers start at 1
        C: TOP 1 -1
        S: -ERR the number of lines must be a non-negative integer
        C: RETR 99999
        S: -ERR no such message, only 3 messages in maildrop
        C: RETR x
        S: -ERR RETR needs a message number, not "x"
    """)


def test_top_of_message_without_body() -> None:
    server = FakeServer(messages={"h": b"Subject: headers only\r\n"})
    login(server)
    transcript(server, """
        C: TOP 1 5
        S: +OK top of message follows
        S: Subject: headers only
        S: .
    """)


def test_unreadable_message_is_temporary_failure() -> None:
    server = FakeServer(unreadable={"uid-a"})
    login(server)
    transcript(server, """
        C: RETR 1
        S: -ERR [SYS/TEMP] message 1 cannot be read right now
        C: STAT
        S: +OK 3 210
    """)


def test_deletion_semantics_and_rset() -> None:
    server = FakeServer()
    login(server)
    transcript(server, """
        C: DELE 2
        S: +OK message 2 deleted
        C: DELE 2
        S: -ERR message 2 already deleted
        C: RETR 2
        S: -ERR message 2 already deleted
        C: TOP 2 1
        S: -ERR message 2 already deleted
        C: LIST 2
        S: -ERR message 2 already deleted
        C: UIDL 2
        S: -ERR message 2 already deleted
        C: STAT
        S: +OK 2 148
        C: LIST
        S: +OK 2 messages (148 octets)
        S: 1 28
        S: 3 120
        S: .
        C: UIDL
        S: +OK unique-id listing follows
        S: 1 uid-a
        S: 3 uid-c
        S: .
        C: RSET
        S: +OK maildrop has 3 messages (210 octets)
        C: LIST 2
        S: +OK 2 62
    """)
    assert server.committed == []


def test_quit_commits_deletions_in_order() -> None:
    server = FakeServer()
    login(server)
    transcript(server, """
        C: DELE 3
        C: DELE 1
        C: QUIT
        S: +OK message 3 deleted
        S: +OK message 1 deleted
        S: +OK postoffice POP3 server signing off (2 messages deleted)
    """)
    assert server.committed == [("uid-a", "uid-c")]
    assert server.session.state is State.UPDATE
    assert server.closed


def test_failed_commit() -> None:
    server = FakeServer(commit_ok=False)
    login(server)
    transcript(server, """
        C: DELE 1
        C: QUIT
        S: +OK message 1 deleted
        S: -ERR [SYS/TEMP] some deleted messages not removed
    """)
    assert server.closed


def test_dropped_connection_deletes_nothing() -> None:
    server = FakeServer()
    login(server)
    server.feed(b"DELE 1\r\nDELE 2\r\nQUI")
    server.feed(b"")
    assert server.closed
    assert server.committed == []


def test_empty_maildrop() -> None:
    server = FakeServer(messages={})
    transcript(server, """
        C: USER alice
        C: PASS secret
        C: LIST
        C: UIDL
        C: RETR 1
        S: +OK send PASS
        S: +OK alice's maildrop has 0 messages (0 octets)
        S: +OK 0 messages (0 octets)
        S: .
        S: +OK unique-id listing follows
        S: .
        S: -ERR no such message, only 0 messages in maildrop
    """)


def test_line_too_long_in_session() -> None:
    server = FakeServer()
    assert server.feed(b"USER " + b"a" * 1000 + b"\r\nNOOP\r\n") == (
        b"-ERR line too long\r\n-ERR NOOP is only valid after logging in\r\n"
    )


def test_large_listing_is_fast() -> None:
    import time

    server = FakeServer(messages={f"uid{i:06d}": b"S: x\r\n\r\nbody\r\n" for i in range(10_000)})
    login(server)
    start = time.perf_counter()
    out = server.feed(b"LIST\r\nUIDL\r\n")
    assert time.perf_counter() - start < 0.2
    assert out.count(b"\r\n") == 2 * 10_002


# -- state table --------------------------------------------------------------------------

SAMPLES = {
    User: User("alice"), Pass: Pass("secret"), Apop: Apop("alice", "d" * 32), Auth: Auth(),
    Capa: Capa(), Stls: Stls(), Quit: Quit(), Stat: Stat(), List: List(), Uidl: Uidl(),
    Retr: Retr(1), Top: Top(1, 0), Dele: Dele(1), Noop: Noop(), Rset: Rset(),
}


def session_in(state: State) -> tuple[Pop3Session, FakeServer]:
    server = FakeServer(tls_active=True)
    if state is not State.AUTHORIZATION:
        login(server)
    if state is State.UPDATE:
        server.session._waiting = server.session._waiting.NOTHING  # noqa: SLF001
        server.session.state = State.UPDATE
    return server.session, server


def test_samples_cover_all_commands() -> None:
    assert set(SAMPLES) == set(ALL_COMMANDS)
    session = Pop3Session()
    assert set(session._handlers) == set(ALL_COMMANDS)  # noqa: SLF001


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("command", list(SAMPLES), ids=lambda c: c.__name__)
def test_state_table(state: State, command: type) -> None:
    session, server = session_in(state)
    outputs = session.handle(SAMPLES[command])
    if command in ALLOWED[state]:
        assert not (len(outputs) == 1 and isinstance(outputs[0], Err) and "valid" in outputs[0].text)
        server.run(outputs)  # performing the actions works
    else:
        assert len(outputs) == 1
        text = bytes(outputs[0]).decode()  # type: ignore[arg-type]
        assert text.startswith("-ERR ") and "valid" in text
        assert session.state is state


def test_state_words() -> None:
    assert [s.name for s in State] == ["AUTHORIZATION", "TRANSACTION", "UPDATE"]


# -- API misuse ---------------------------------------------------------------------------


def test_event_while_waiting_is_misuse() -> None:
    session = Pop3Session(Pop3Policy(allow_plaintext_auth=True))
    session.handle(User("alice"))
    session.handle(Pass("x"))
    with pytest.raises(Pop3SessionError):
        session.handle(Noop())
    with pytest.raises(Pop3SessionError):
        session.on_maildrop(Maildrop([]))


def test_on_message_must_match_request() -> None:
    server = FakeServer()
    login(server)
    (action,) = server.session.handle(Retr(1))
    assert isinstance(action, SendMessage)
    with pytest.raises(Pop3SessionError):
        server.session.on_message(SendMessage(2, "uid-b"), b"x")


def test_closed_session_ignores_events() -> None:
    server = FakeServer()
    server.feed(b"QUIT\r\n")
    assert server.session.handle(Noop()) == []


def test_connection_and_session_compose() -> None:
    # the thin-shell shape in the module docstring
    conn, session = Pop3Connection(), Pop3Session(tls_active=True)
    assert conn.send(session.greeting()) == b"+OK postoffice POP3 server ready\r\n"


def test_package_does_no_io() -> None:
    import ast
    import pathlib

    import postoffice.protocols.pop3 as pkg

    forbidden = {"asyncio", "socket", "ssl", "sqlite3", "selectors", "postoffice.store",
                 "postoffice.servers", "postoffice.services"}
    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in forbidden), (path, name)
