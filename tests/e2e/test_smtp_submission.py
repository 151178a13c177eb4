"""Submission on 587 (STARTTLS + AUTH) and 465 (implicit TLS), end to end with real clients."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp, body_after_trace, counts, messages, queue, queued_message

MESSAGE = (
    "From: Alice <alice@example.com>\r\n"
    "To: Bob <bob@example.com>\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    "Message-ID: <m1@example.com>\r\n"
    # A complete RFC 5322 message (Date is required): stored byte for byte. Without Date or
    # Message-ID the MSA adds them (RFC 6409 §8.2, §8.3; test_smtp_conformance.py).
    "Date: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Hallo Bob, schöne Grüße!\r\n"
    ".a line that starts with a dot\r\n"
    "\r\n"
    "-- \r\nAlice\r\n"
).encode("utf-8")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("submission") / "data"
    with RunningServer(data, limits={"max_recipients": 3, "send_rate_per_hour": 8}) as s:
        for name in ("alice", "bob", "carol", "dave", "rate", "off", "eve"):
            s.add_account(f"{name}@example.com", "password1")
        s.add_account("frank@other.org", "password1")
        s.call(s.office.accounts.add_alias("sales@example.com", ["alice@example.com", "bob@example.com"]))
        s.call(s.office.accounts.update("off@example.com", smtp=False))
        yield s


def login_587(srv: RunningServer, user: str = "alice@example.com") -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10)
    client.starttls(context=srv.client_tls())
    client.login(user, "password1")
    return client


def test_587_starttls_auth_delivers_byte_for_byte(srv: RunningServer) -> None:
    before = len(messages(srv, "bob@example.com"))
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as client:
        client.ehlo("laptop.example")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        client.starttls(context=srv.client_tls())
        client.ehlo("laptop.example")
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        client.login("alice@example.com", "password1")
        refused = client.sendmail("alice@example.com", ["bob@example.com"], MESSAGE)
        assert refused == {}
    inbox = messages(srv, "bob@example.com")
    assert len(inbox) == before + 1
    stored = inbox[-1]
    assert body_after_trace(stored) == MESSAGE
    head = stored[: len(stored) - len(MESSAGE)]
    assert head.startswith(b"Return-Path: <alice@example.com>\r\nReceived: from laptop.example ([127.0.0.1])\r\n")
    assert b"with ESMTPSA id " in head and b"for <bob@example.com>;" in head
    # the server never files a copy into the sender's Sent folder (clients do that over IMAP)
    assert messages(srv, "alice@example.com", "Sent") == []


def test_465_implicit_tls(srv: RunningServer) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=srv.client_tls(), timeout=10) as client:
        client.ehlo("phone.example")
        assert not client.has_extn("starttls")
        client.login("carol@example.com", "password1")
        message = MESSAGE.replace(b"Alice <alice@", b"Carol <carol@")
        client.sendmail("carol@example.com", ["dave@example.com"], message)
    stored = messages(srv, "dave@example.com")[-1]
    assert body_after_trace(stored) == message
    assert stored.startswith(b"Return-Path: <carol@example.com>\r\n") and b"with ESMTPSA" in stored


def test_aiosmtplib_with_auth_login(srv: RunningServer) -> None:
    message = EmailMessage()
    message["From"] = "dave@example.com"
    message["To"] = "carol@example.com"
    message["Subject"] = "via aiosmtplib"
    message.set_content("sent with aiosmtplib\n")

    async def send() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port("submission"), start_tls=True,
                                 tls_context=srv.client_tls())
        async with client:
            await client.ehlo()  # RFC 3207 §4.2: EHLO again after STARTTLS
            await client.auth_login("dave@example.com", "password1")
            errors, reply = await client.send_message(message)
            assert errors == {} and reply.startswith("2.0.0 Ok: queued as")
    asyncio.run(send())
    stored = messages(srv, "carol@example.com")[-1]
    assert b"Subject: via aiosmtplib" in stored and b"sent with aiosmtplib" in stored


def test_remote_recipients_are_queued_and_local_ones_delivered(srv: RunningServer) -> None:
    entries = len(queue(srv))
    with login_587(srv, "eve@example.com") as client:
        message = MESSAGE.replace(b"Alice <alice@", b"Eve <eve@")
        client.sendmail("eve@example.com", ["someone@remote.example", "carol@example.com",
                                            "Other@Far.Example"], message)
    assert body_after_trace(messages(srv, "carol@example.com")[-1]) == message
    now = queue(srv)
    assert len(now) == entries + 1
    entry = now[-1]
    assert entry["mail_from"] == "eve@example.com" and entry["account_id"] is not None
    assert [r["recipient"] for r in entry["recipients"]] == ["someone@remote.example", "Other@Far.Example"]
    assert [r["domain"] for r in entry["recipients"]] == ["remote.example", "far.example"]
    raw = queued_message(srv, entry)
    assert raw.endswith(message) and b"Return-Path" not in raw.split(b"\r\n\r\n")[0]
    assert b"\r\nReceived: from " in raw or raw.startswith(b"Received: from ")
    assert raw.count(b"DKIM-Signature:") == 2  # signed for example.com on its way out


def test_auth_requires_tls_on_587(srv: RunningServer) -> None:
    before = counts(srv)
    with RawSmtp(srv.port("submission")) as c:
        code, text = c.cmd("EHLO x.example")
        assert code == 250 and "STARTTLS" in text and "AUTH" not in text
        plain = base64.b64encode(b"\0alice@example.com\0password1").decode()
        assert c.cmd(f"AUTH PLAIN {plain}")[:1] == (530,)
        assert c.cmd("AUTH PLAIN")[0] == 530
        code, text = c.cmd("MAIL FROM:<alice@example.com>")
        assert (code, text) == (530, "5.7.0 Authentication required")
        assert c.cmd("RCPT TO:<bob@example.com>") == (503, "5.5.1 Need MAIL command")
    assert counts(srv) == before


def test_auth_plain_login_cancel_and_bad_password(srv: RunningServer) -> None:
    with RawSmtp(srv.port("submission")) as c:
        c.cmd("EHLO x.example")
        c.starttls(srv.client_tls())
        assert "AUTH PLAIN LOGIN" in c.cmd("EHLO x.example")[1]
        assert c.cmd("AUTH CRAM-MD5")[0] == 504
        assert c.cmd("AUTH PLAIN") == (334, "")
        assert c.cmd("*") == (501, "5.0.0 Authentication cancelled")
        bad = base64.b64encode(b"\0alice@example.com\0wrong-password").decode()
        assert c.cmd(f"AUTH PLAIN {bad}") == (535, "5.7.8 Authentication credentials invalid")
        assert c.cmd("AUTH LOGIN") == (334, base64.b64encode(b"Username:").decode())
        assert c.cmd(base64.b64encode(b"alice@example.com")) == (334, base64.b64encode(b"Password:").decode())
        assert c.cmd(base64.b64encode(b"password1")) == (235, "2.7.0 Authentication successful")
        assert c.cmd("AUTH PLAIN")[0] == 503  # already authenticated
        assert c.cmd("QUIT")[0] == 221


def test_account_with_smtp_switched_off_cannot_submit(srv: RunningServer) -> None:
    before = counts(srv)
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as client:
        client.starttls(context=srv.client_tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            client.login("off@example.com", "password1")
        assert exc.value.smtp_code == 535
        assert exc.value.smtp_error.decode() == "5.7.1 SMTP is disabled for this address by its administrator"
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("off@example.com", ["bob@example.com"], MESSAGE)
        assert refused.value.smtp_code == 530
    assert counts(srv) == before


def test_switching_smtp_off_ends_the_open_session(srv: RunningServer) -> None:
    with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
        c.cmd("EHLO x.example")
        plain = base64.b64encode(b"\0bob@example.com\0password1").decode()
        assert c.cmd(f"AUTH PLAIN {plain}")[0] == 235
        sessions = [s for s in srv.office.sessions.all() if s.protocol == "smtp"]
        assert [(s.address, s.tls) for s in sessions] == [("bob@example.com", True)]
        try:
            srv.call(srv.office.accounts.update("bob@example.com", smtp=False))
            assert c.reply() == (421, "4.7.0 SMTP is disabled for this address by its administrator")
            assert c.closed()
        finally:
            srv.call(srv.office.accounts.update("bob@example.com", smtp=True))
    deadline = time.monotonic() + 2
    while [s for s in srv.office.sessions.all() if s.protocol == "smtp"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [s for s in srv.office.sessions.all() if s.protocol == "smtp"] == []


def test_sender_and_from_must_be_the_account_or_its_aliases(srv: RunningServer) -> None:
    before = counts(srv)
    with login_587(srv) as client:
        for sender in ("bob@example.com", "alice@other.org", "frank@other.org", "<>"):
            code, text = client.mail(sender)
            assert (code, text) == (553, b"5.7.1 Sender address rejected: not owned by the authenticated user")
        forged = MESSAGE.replace(b"From: Alice <alice@example.com>", b"From: Bob <bob@example.com>")
        with pytest.raises(smtplib.SMTPDataError) as exc:
            client.sendmail("alice@example.com", ["carol@example.com"], forged)
        assert (exc.value.smtp_code, exc.value.smtp_error) == (
            553, b"5.7.1 From header rejected: not owned by the authenticated user")
        no_from = b"Subject: anonymous\r\n\r\nhi\r\n"
        with pytest.raises(smtplib.SMTPDataError):
            client.sendmail("alice@example.com", ["carol@example.com"], no_from)
        assert counts(srv) == before
        # an alias that includes alice, and a plus-address of hers, are hers
        via_alias = MESSAGE.replace(b"From: Alice <alice@example.com>", b"From: Sales <sales@example.com>")
        client.sendmail("sales@example.com", ["carol@example.com"], via_alias)
        client.sendmail("alice+lists@example.com", ["carol@example.com"], MESSAGE)
    assert messages(srv, "carol@example.com")[-2].startswith(b"Return-Path: <sales@example.com>")


def test_recipient_limit(srv: RunningServer) -> None:
    with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
        c.cmd("EHLO x.example")
        c.cmd("AUTH PLAIN " + base64.b64encode(b"\0dave@example.com\0password1").decode())
        assert c.cmd("MAIL FROM:<dave@example.com>")[0] == 250
        for i in range(3):
            assert c.cmd(f"RCPT TO:<r{i}@remote.example>")[0] == 250
        assert c.cmd("RCPT TO:<r9@remote.example>") == (452, "4.5.3 Too many recipients")
        assert c.cmd("RSET")[0] == 250


def test_send_rate_limit(srv: RunningServer) -> None:
    message = b"From: rate@example.com\r\nSubject: x\r\n\r\nx\r\n"
    with login_587(srv, "rate@example.com") as client:
        for _ in range(2):
            client.sendmail("rate@example.com", ["a@remote.example", "b@remote.example", "c@remote.example"], message)
        # 6 of 8 used: the 3rd recipient of the next message is over the limit
        code, _ = client.mail("rate@example.com")
        assert code == 250
        assert client.rcpt("a@remote.example")[0] == 250
        assert client.rcpt("b@remote.example")[0] == 250
        assert client.rcpt("c@remote.example") == (450, b"4.7.1 Sending rate limit exceeded for this address; "
                                                        b"try again later")
        client.data(message)
        assert client.mail("rate@example.com")[0] == 450  # all 8 used
        client.rset()


def test_plaintext_auth_allowed_on_loopback_when_configured(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data", security={"allow_plaintext_auth_loopback": True}) as srv:
        srv.add_account("alice@example.com", "password1")
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as client:
            client.login("alice@example.com", "password1")  # no STARTTLS
            client.sendmail("alice@example.com", ["alice@example.com"], MESSAGE)
        [stored] = messages(srv, "alice@example.com")
        assert b"with ESMTPA id" in stored and body_after_trace(stored) == MESSAGE
        # port 25 never offers AUTH, whatever the settings
        with RawSmtp(srv.port("smtp")) as c:
            assert "AUTH" not in c.cmd("EHLO x.example")[1]
            assert c.cmd("AUTH PLAIN")[0] == 503


def test_failed_logins_are_throttled(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data", security={"throttle_block_after": 3, "throttle_delay_after": 100}) as srv:
        srv.add_account("alice@example.com", "password1")
        with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
            c.cmd("EHLO x.example")
            bad = "AUTH PLAIN " + base64.b64encode(b"\0alice@example.com\0nope-nope").decode()
            for _ in range(3):
                assert c.cmd(bad)[0] == 535
            good = "AUTH PLAIN " + base64.b64encode(b"\0alice@example.com\0password1").decode()
            assert c.cmd(good) == (454, "4.7.0 Too many failed logins; try again later")
