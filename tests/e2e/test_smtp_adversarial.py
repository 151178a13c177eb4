"""Adversarial probes against the three SMTP listeners: smuggling, relaying, spoofing, AUTH
abuse, slow clients and failing storage. Each test is the regression test of a probe; the
server log must stay free of tracebacks (the ``log`` fixture)."""

from __future__ import annotations

import base64
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp, counts, messages, queue

LIMIT = 20_000
HEAD = b"From: x@outside.example\r\nSubject: test\r\n\r\n"
INJECTED = (b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"
            b"From: ceo@example.com\r\nSubject: smuggled\r\n\r\npay now\r\n")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("adversarial") / "data"
    with RunningServer(data, limits={"max_message_size": LIMIT, "max_recipients": 50}) as s:
        for name in ("alice", "bob", "mallory", "user10", "office", "ken"):
            s.add_account(f"{name}@example.com", "password1")
        yield s


@pytest.fixture(autouse=True)
def log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """No traceback and no ERROR in the server log, unless a test empties the capture."""
    caplog.set_level(logging.INFO)
    yield caplog
    bad = [rec for rec in caplog.records if rec.exc_info or rec.levelno >= logging.ERROR]
    assert not bad, [rec.getMessage() for rec in bad]


@pytest.fixture
def clean_store(srv: RunningServer) -> Iterator[None]:
    before = counts(srv)
    yield
    assert counts(srv)[:2] == before[:2], "the store changed"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def submit(srv: RunningServer, user: str = "mallory@example.com", port: str = "submission") -> RawSmtp:
    if port == "submissions":
        c = RawSmtp(srv.port(port), tls=srv.client_tls())
    else:
        c = RawSmtp(srv.port(port))
        c.cmd("EHLO client.example")
        c.starttls(srv.client_tls())
    c.cmd("EHLO client.example")
    assert c.cmd("AUTH PLAIN " + b64(f"\0{user}\0password1".encode()))[0] == 235
    return c


def bdat(c: RawSmtp, chunk: bytes, last: bool = False) -> tuple[int, str]:
    c.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
    return c.reply()


def inbound(srv: RunningServer) -> RawSmtp:
    c = RawSmtp(srv.port("smtp"))
    c.cmd("EHLO mx.outside.example")
    return c


# -- smuggling ------------------------------------------------------------------------------

TRICKS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r\n.\r", b"\n.\r", b"\r.\r\n", b"\r\n\x00.\r\n",
          b"\n", b"\r", b"\x00"]


@pytest.mark.parametrize("port", ["smtp", "submission"])
@pytest.mark.parametrize("trick", TRICKS, ids=[repr(t) for t in TRICKS])
def test_data_smuggling_on_25_and_587(srv: RunningServer, clean_store: None, port: str, trick: bytes) -> None:
    """One DATA is one rejected message (bare CR/LF: 550 5.5.2; NUL: 550 5.6.0), never two."""
    c = inbound(srv) if port == "smtp" else submit(srv)
    with c:
        sender = "x@outside.example" if port == "smtp" else "mallory@example.com"
        c.send(f"MAIL FROM:<{sender}>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n".encode())
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        head = HEAD.replace(b"x@outside.example", sender.encode())
        c.send(head + b"innocent" + trick + INJECTED + b".\r\n")
        code, text = c.reply()
        assert code == 550 and text.startswith(("5.5.2", "5.6.0"))
        assert c.cmd("NOOP") == (250, "2.0.0 OK")  # exactly one reply: nothing was run


@pytest.mark.parametrize("port", ["smtp", "submission"])
@pytest.mark.parametrize("chunk", [b"hi\n.\n" + INJECTED, b"hi\r.\r" + INJECTED, b"hi\r\n\x00.\r\n" + INJECTED,
                                   b"bare LF\nonly\r\n"], ids=["LF.LF", "CR.CR", "NUL", "LF"])
def test_bdat_smuggling(srv: RunningServer, clean_store: None, port: str, chunk: bytes) -> None:
    """BDAT text is not parsed for a terminator, but a relay would pass it on through DATA:
    bare CR/LF and NUL are refused as in DATA."""
    c = inbound(srv) if port == "smtp" else submit(srv)
    with c:
        sender = "x@outside.example" if port == "smtp" else "mallory@example.com"
        c.cmd(f"MAIL FROM:<{sender}>")
        assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
        body = f"From: {sender}\r\n\r\n".encode() + chunk
        code, text = bdat(c, body, last=True)
        assert code == 550 and text.startswith(("5.5.2", "5.6.0"))
        assert c.cmd("NOOP")[0] == 250


def test_bdat_crlf_split_across_chunks_is_fine(srv: RunningServer) -> None:
    with inbound(srv) as c:
        c.cmd("MAIL FROM:<x@outside.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        one, two = HEAD + b"line one\r", b"\nline two\r\n"
        assert bdat(c, one)[0] == 250
        assert bdat(c, two, last=True)[0] == 250
    assert messages(srv, "bob@example.com")[-1].endswith(b"line one\r\nline two\r\n")


def test_bdat_sequence_and_sizes(srv: RunningServer, clean_store: None) -> None:
    with inbound(srv) as c:
        assert bdat(c, b"abc", last=True)[0] == 503  # no MAIL; the chunk is still consumed
        for bad in ("BDAT -1", "BDAT x", "BDAT", "BDAT 1 FIRST", "BDAT 999999999999999999999"):
            assert c.cmd(bad)[0] == 501, bad
        assert c.cmd("NOOP")[0] == 250
    with inbound(srv) as c:
        c.cmd("MAIL FROM:<x@outside.example>")
        assert c.cmd("BDAT 0 LAST")[0] == 554  # no recipient
        c.cmd("RCPT TO:<bob@example.com>")
        assert bdat(c, b"abc")[0] == 250
        assert c.cmd("DATA")[0] == 503  # DATA inside a BDAT transaction
        big = b"x" * (LIMIT + 10)
        assert bdat(c, big, last=True) == (
            552, "5.3.4 Message size exceeds fixed maximum message size")
        assert c.cmd("NOOP")[0] == 250


# -- relaying and recipients ----------------------------------------------------------------

RELAY_TRICKS = ["<@a.example,@b.example:user@foreign.example>", "<user%foreign.example@example.com>",
                "<user@foreign.example@example.com>", '<"user@foreign.example"@example.com>',
                "<user@[127.0.0.1]>", "<bob@[127.0.0.1]>", "<bob@example.com.>", "<user@FOREIGN.EXAMPLE>",
                "<user@xn--bcher-kva.example>", "<user!foreign.example@example.com>", "<bob@[IPv6:::1]>",
                "<bob@localhost>", "<bob@mail.test>", "<user@foreign.example> NOTIFY=NEVER"]


def test_no_relay_syntax_gets_through_port_25(srv: RunningServer, clean_store: None) -> None:
    for rcpt in RELAY_TRICKS:
        with inbound(srv) as c:
            c.cmd("MAIL FROM:<x@outside.example>")
            code, _ = c.cmd("RCPT TO:" + rcpt)
            assert code in (501, 550, 555), rcpt
            assert c.cmd("DATA")[0] == 554, rcpt
    assert queue(srv) == []


# Issue #12: NFC + casefold delivered mail for "uſer10" into user10's mailbox. Look-alikes
# (compatibility characters) and invisible characters name no mailbox: refused at RCPT.
LOOK_ALIKE_RECIPIENTS = [
    "u\u017fer10@example.com",  # LATIN SMALL LETTER LONG S
    "\uff55ser10@example.com",  # FULLWIDTH LATIN SMALL LETTER U
    "o\ufb03ce@example.com",  # LATIN SMALL LIGATURE FFI
    "\u212aen@example.com",  # KELVIN SIGN
    "user\u200b10@example.com",  # ZERO WIDTH SPACE
    "us\u00ader10@example.com",  # SOFT HYPHEN
    "user10\u202e@example.com",  # RIGHT-TO-LEFT OVERRIDE
    "us\u0085er10@example.com",  # NEXT LINE
    '"user\u200b10"@example.com',
]


@pytest.mark.parametrize("rcpt", LOOK_ALIKE_RECIPIENTS)
def test_look_alike_recipients_reach_no_mailbox(srv: RunningServer, clean_store: None, rcpt: str) -> None:
    with inbound(srv) as c:
        assert c.cmd("MAIL FROM:<x@outside.example> SMTPUTF8")[0] == 250
        code, text = c.cmd(f"RCPT TO:<{rcpt}>".encode())
        assert code in (500, 501, 550), (rcpt, code, text)  # the grammar refuses controls already
        assert c.cmd("DATA")[0] == 554


def test_the_real_address_in_any_ascii_case_still_arrives(srv: RunningServer) -> None:
    before = len(messages(srv, "user10@example.com"))
    with inbound(srv) as c:
        c.cmd("MAIL FROM:<x@outside.example>")
        assert c.cmd("RCPT TO:<USER10@Example.COM>")[0] == 250
        c.cmd("DATA")
        assert c.cmd(HEAD + b"hello\r\n.")[0] == 250
    assert len(messages(srv, "user10@example.com")) == before + 1


def test_postmaster_is_always_accepted(srv: RunningServer) -> None:
    """RFC 5321 §4.5.1: <Postmaster> and postmaster@ every hosted domain MUST be accepted."""
    before = len(messages(srv, "alice@example.com"))
    with inbound(srv) as c:
        c.cmd("MAIL FROM:<x@outside.example>")
        assert c.cmd("RCPT TO:<Postmaster>")[0] == 250
        assert c.cmd("RCPT TO:<POSTMASTER@example.com>")[0] == 250
        c.cmd("DATA")
        assert c.cmd(HEAD + b"hello postmaster\r\n.")[0] == 250
    # the domain's first account stands in for a missing postmaster address
    assert len(messages(srv, "alice@example.com")) == before + 1


def test_recipient_flood(srv: RunningServer, clean_store: None) -> None:
    with inbound(srv) as c:
        c.cmd("MAIL FROM:<x@outside.example>")
        c.send(b"RCPT TO:<bob@example.com>\r\n" * 10_000)
        codes = [c.reply() for _ in range(10_000)]
        assert codes[49][0] == 250 and set(codes[50:]) == {(452, "4.5.3 Too many recipients")}
        c.cmd("RSET")


def test_commands_and_limits(srv: RunningServer, clean_store: None) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        assert c.cmd("RCPT TO:<bob@example.com>")[0] == 503
        assert c.cmd("HELO mx.outside.example")[0] == 250
        assert c.cmd("MAIL FROM:<x@outside.example> SIZE=10")[0] == 555  # no extensions after HELO
        code, text = c.cmd("EHLO [127.0.0.1]")
        assert code == 250 and "AUTH" not in text and "SIZE 20000" in text
        assert c.cmd("AUTH PLAIN " + b64(b"\0bob@example.com\0password1"))[0] == 503
        assert c.cmd("VRFY bob@example.com")[0] == 252 and c.cmd("EXPN staff")[0] == 252
        assert c.cmd("NOOP anything")[0] == 250 and c.cmd("HELP")[0] == 214
        assert c.cmd(b"NOOP " + b"a" * 100_000)[0] == 500
        assert c.cmd("MAIL FROM:<\u00fcser@example.com>".encode())[:1] == (553,)
        assert c.cmd("MAIL FROM:<x@outside.example> SIZE=20001") == (
            552, "5.3.4 Message size exceeds fixed maximum message size")
        assert c.cmd("MAIL FROM:<x@outside.example> SIZE=100")[0] == 250
        assert c.cmd("RCPT TO:<\u00fc@example.com>".encode())[:1] == (553,)
        c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("DATA")
        assert c.cmd(HEAD + b"y" * (LIMIT + 100) + b"\r\n.")[0] == 552  # SIZE lied
        assert c.cmd("NOOP")[0] == 250


def test_message_at_and_over_the_limit(srv: RunningServer) -> None:
    before = counts(srv)
    for size, code in ((LIMIT, 250), (LIMIT + 1, 552)):
        body = HEAD + b"a" * (size - len(HEAD) - 2) + b"\r\n"
        with inbound(srv) as c:
            c.cmd("MAIL FROM:<x@outside.example>")
            c.cmd("RCPT TO:<bob@example.com>")
            c.cmd("DATA")
            assert c.cmd(body + b".")[0] == code
    assert counts(srv)[0] == before[0] + 1


def test_mail_loop(srv: RunningServer, clean_store: None) -> None:
    with inbound(srv) as c:
        c.cmd("MAIL FROM:<x@outside.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("DATA")
        hops = b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n" * 150
        assert c.cmd(hops + HEAD + b"loop\r\n.")[0] == 554


# -- submission: AUTH and spoofing ----------------------------------------------------------

def test_starttls_and_auth_per_port(srv: RunningServer, clean_store: None) -> None:
    with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
        c.cmd("EHLO client.example")
        assert c.cmd("STARTTLS")[0] in (454, 503)
    with RawSmtp(srv.port("submission")) as c:
        c.cmd("EHLO client.example")
        assert c.cmd("AUTH PLAIN " + b64(b"\0mallory@example.com\0password1")) == (
            530, "5.7.0 Must issue a STARTTLS command first")
        assert c.cmd("MAIL FROM:<mallory@example.com>")[0] == 530
        # CVE-2011-0411: an AUTH pipelined behind STARTTLS is thrown away
        c.send(b"STARTTLS\r\nAUTH PLAIN " + b64(b"\0mallory@example.com\0password1").encode() + b"\r\n")
        assert c.reply()[0] == 220
        c.sock = srv.client_tls().wrap_socket(c.sock, server_hostname="localhost")
        c.cmd("EHLO client.example")
        assert c.cmd("MAIL FROM:<mallory@example.com>")[0] == 530


def test_auth_abuse(srv: RunningServer, clean_store: None) -> None:
    with submit(srv, port="submissions") as ok:
        assert ok.cmd("AUTH PLAIN " + b64(b"\0x\0y"))[0] == 503  # once per session
    c = RawSmtp(srv.port("submissions"), tls=srv.client_tls())
    c.cmd("EHLO client.example")
    assert c.cmd("AUTH PLAIN " + b64(b"alice@example.com\0mallory@example.com\0password1"))[0] == 535
    assert c.cmd("AUTH PLAIN !!!")[0] == 501
    assert c.cmd("AUTH PLAIN *")[0] == 501
    assert c.cmd("AUTH PLAIN " + "A" * 20_000)[0] == 500
    assert c.cmd("AUTH LOGIN") == (334, "VXNlcm5hbWU6")
    assert c.cmd(b64(b"mallory@example.com")) == (334, "UGFzc3dvcmQ6")
    assert c.cmd("*")[0] == 501
    # each failed attempt counts; the session is closed after five
    assert c.cmd("AUTH PLAIN " + b64(b"\0bob@example.com\0wrong"))[0] == 535
    assert c.cmd("AUTH PLAIN " + b64(b"\0bob@example.com\0wrong"))[0] == 535
    assert c.cmd("AUTH PLAIN " + b64(b"\0bob@example.com\0wrong"))[0] == 421
    assert c.closed()
    c.close()


def test_starttls_forgets_a_plaintext_login(tmp_path: Path) -> None:
    """RFC 3207 §4.2: an AUTH done before STARTTLS does not survive it."""
    with RunningServer(tmp_path / "data", security={"allow_plaintext_auth": True}) as srv:
        srv.add_account("alice@example.com", "password1")
        with RawSmtp(srv.port("submission")) as c:
            c.cmd("EHLO client.example")
            assert c.cmd("AUTH PLAIN " + b64(b"\0alice@example.com\0password1"))[0] == 235
            c.starttls(srv.client_tls())
            c.cmd("EHLO client.example")
            assert c.cmd("MAIL FROM:<alice@example.com>")[0] == 530


FROM_TRICKS = [
    b'From: "alice@example.com" <mallory@example.com>\r\n',
    b"From: =?utf-8?q?alice=40example=2Ecom?= <mallory@example.com>\r\n",
    b"From: mallory@example.com (alice@example.com)\r\n",
    b"From: mallory@example.com\r\nSender: alice@example.com\r\n",
    b"From: mallory@example.com\r\nFrom: alice@example.com\r\n",
    b"From: mallory@example.com, alice@example.com\r\n",
    b"From: staff: alice@example.com;\r\n",
    b"From: <@example.com:alice@example.com>\r\n",
    b"From: ALICE@EXAMPLE.COM\r\n",
    b"From: mallory@example.com <alice@example.com>\r\n",
    b"From: =?utf-8?b?YWxpY2VAZXhhbXBsZS5jb20=?=\r\n",
    b"From: ceo@bank.example\r\n",
    b"To: bob@example.com\r\n",
]


@pytest.mark.parametrize("header", FROM_TRICKS, ids=range(len(FROM_TRICKS)))
def test_from_spoofing_on_submission(srv: RunningServer, clean_store: None, header: bytes) -> None:
    with submit(srv, port="submissions") as c:
        assert c.cmd("MAIL FROM:<mallory@example.com>")[0] == 250
        c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("DATA")
        assert c.cmd(header + b"Subject: hi\r\n\r\nbody\r\n.") == (
            553, "5.7.1 From header rejected: not owned by the authenticated user")


def test_envelope_spoofing_and_honest_mail(srv: RunningServer) -> None:
    with submit(srv) as c:
        for sender in ("<alice@example.com>", "<ceo@bank.example>", "<>", '<"alice"@example.com>'):
            assert c.cmd(f"MAIL FROM:{sender}")[0] == 553, sender
        assert c.cmd("MAIL FROM:<MALLORY@example.com>")[0] == 250
        c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("DATA")
        honest = b'From: "Mallory (mallory@example.com)" <mallory@example.com>\r\nSubject: hi\r\n\r\nok\r\n.'
        assert c.cmd(honest)[0] == 250


# -- failures, timeouts, slow clients --------------------------------------------------------

def test_queue_failure_takes_back_the_local_copy(srv: RunningServer, monkeypatch: pytest.MonkeyPatch,
                                                 log: pytest.LogCaptureFixture) -> None:
    """A 451 must not leave a local copy behind (the retry would duplicate it)."""
    async def broken(*args: object, **kw: object) -> None:
        raise sqlite3.OperationalError("database is locked")
    monkeypatch.setattr(srv.store, "enqueue", broken)
    before = counts(srv)
    with submit(srv) as c:
        c.cmd("MAIL FROM:<mallory@example.com>")
        c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("RCPT TO:<someone@remote.example>")
        c.cmd("DATA")
        assert c.cmd(b"From: mallory@example.com\r\n\r\nhello\r\n.") == (451, "4.3.0 Local error in processing")
    assert counts(srv)[:2] == before[:2]
    log.clear()  # the failure is logged with its traceback, as it should be


def test_quota_at_data_time(srv: RunningServer, clean_store: None) -> None:
    srv.add_account("tiny@example.com", "password1", quota_bytes=1000)
    with inbound(srv) as c:
        c.cmd("MAIL FROM:<x@outside.example>")
        assert c.cmd("RCPT TO:<tiny@example.com>")[0] == 250
        c.cmd("DATA")
        assert c.cmd(HEAD + b"x" * 1500 + b"\r\n.")[:1] == (552,)
        c.cmd("MAIL FROM:<x@outside.example> SIZE=5000")
        assert c.cmd("RCPT TO:<tiny@example.com>")[0] == 552


def test_slowloris(tmp_path: Path) -> None:
    """The timeout counts from the last complete command, not from the last octet."""
    with RunningServer(tmp_path / "data", limits={"command_timeout": 1}) as srv:
        srv.add_account("bob@example.com", "password1")
        for prefix in (b"", b"EHLO x\r\nMAIL FROM:<x@outside.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"):
            with RawSmtp(srv.port("smtp")) as c:
                c.send(prefix)
                start = time.monotonic()
                try:
                    for byte in b"EHLO slowly.example.with.a.long.name.xxxxxxxxxxxxxxxxxxxx":
                        c.send(bytes([byte]))
                        time.sleep(0.2)
                        if time.monotonic() - start > 3.5:
                            break
                except OSError:
                    pass
                assert c.closed(2)
                assert b"421 4.4.2" in c.buf
                assert time.monotonic() - start < 3.5
        assert counts(srv)[0] == 0
