"""Port 25: mail from other servers for hosted addresses, never an open relay."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from postoffice.servers.smtp import SmtpServer
from tests.support.pg import BACKENDS, backend_overrides
from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp, body_after_trace, counts, messages, queue, queued_message

MESSAGE = (b"From: Sender <sender@outside.example>\r\nTo: alice@example.com\r\nSubject: hello\r\n"
           b"Message-ID: <x1@outside.example>\r\n\r\nHi Alice,\r\n..leading dot\r\nbye\r\n")


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("inbound") / "data"
    with RunningServer(data, hostname="mail.example.com", limits={"max_message_size": 200_000},
                       **backend_overrides(request.param, request)) as s:
        for address in ("alice@example.com", "bob@example.com", "carol@example.com", "dan@example.com",
                        "jörg@example.com", "hugo@catchall.example", "fwd@example.com", "junk@example.com"):
            s.add_account(address, "password1")
        accounts = s.office.accounts
        s.call(accounts.add_alias("team@example.com", ["alice@example.com", "crew@example.com"]))
        s.call(accounts.add_alias("crew@example.com", ["bob@example.com", "partner@remote.example"]))
        s.call(accounts.add_alias("postmaster@example.com", ["carol@example.com"]))
        s.call(accounts.set_catch_all("catchall.example", "hugo@catchall.example"))
        s.call(accounts.update("fwd@example.com", forward_to="dan@example.com, fwd-copy@remote.example"))
        yield s


def test_mail_from_outside_is_delivered(srv: RunningServer) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
        code, text = client.ehlo("mx.outside.example")
        features = text.decode().split("\n")
        assert code == 250 and features[0] == "mail.example.com"
        for word in ("PIPELINING", "SIZE 200000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING",
                     "STARTTLS"):
            assert word in features
        assert not any(f.startswith("AUTH") for f in features)
        assert client.sendmail("sender@outside.example", ["alice@example.com"], MESSAGE) == {}
    stored = messages(srv, "alice@example.com")[-1]
    assert body_after_trace(stored) == MESSAGE
    assert stored.startswith(b"Return-Path: <sender@outside.example>\r\n"
                             b"Received: from mx.outside.example ([127.0.0.1])\r\n"
                             b"\tby mail.example.com (postoffice) with ESMTP id ")
    assert b"\tfor <alice@example.com>;\r\n" in stored


def test_starttls_on_port_25_and_no_auth_even_then(srv: RunningServer) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
        client.starttls(context=srv.client_tls())
        client.ehlo("mx.outside.example")
        assert not client.has_extn("auth") and not client.has_extn("starttls")
        assert client.docmd("AUTH", "PLAIN")[0] == 503
        client.sendmail("", ["bob@example.com"], MESSAGE)  # a bounce (null sender) is welcome
    stored = messages(srv, "bob@example.com")[-1]
    assert stored.startswith(b"Return-Path: <>\r\n") and b" with ESMTPS id " in stored


def test_relaying_is_refused(srv: RunningServer) -> None:
    before = counts(srv)
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        for sender in ("spammer@outside.example", "alice@example.com", ""):
            assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
            for rcpt in ("victim@gmail.example", "alice@example.com.evil.example", "alice@[127.0.0.1]",
                         "\"alice@example.com\"@remote.example", "@example.com:victim@remote.example"):
                assert c.cmd(f"RCPT TO:<{rcpt}>") == (550, "5.7.1 Relaying denied"), rcpt
            assert c.cmd("DATA") == (554, "5.5.1 No valid recipients")
            assert c.cmd("RSET")[0] == 250
    assert counts(srv) == before


def test_unknown_users_all_get_the_same_reply(srv: RunningServer) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<x@outside.example>")
        replies = {c.cmd(f"RCPT TO:<{name}@example.com>") for name in ("nobody", "admin", "root")}
        assert replies == {(550, "5.1.1 Recipient address rejected: user unknown")}
        # VRFY and EXPN never tell whether an address exists
        for arg in ("alice", "alice@example.com", "nobody@example.com", "team@example.com"):
            assert c.cmd(f"VRFY {arg}")[0] == 252
            assert c.cmd(f"EXPN {arg}")[0] == 252


def test_aliases_plus_addressing_catch_all_and_forwarding(srv: RunningServer) -> None:
    queued_before = len(queue(srv))
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
        client.sendmail("sender@outside.example", ["team@example.com"], MESSAGE)
        client.sendmail("sender@outside.example", ["Alice+Newsletters@Example.com"], MESSAGE)
        client.sendmail("sender@outside.example", ["anything@catchall.example"], MESSAGE)
        client.sendmail("sender@outside.example", ["fwd@example.com"], MESSAGE)
        client.sendmail("sender@outside.example", ["postmaster@example.com"], MESSAGE)
        # <Postmaster> without a domain: the host name's domain
        client.ehlo("mx.outside.example")
        client.mail("sender@outside.example")
        assert client.docmd("RCPT TO:<Postmaster>")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    assert [body_after_trace(m) for m in messages(srv, "alice@example.com")[-2:]] == [MESSAGE] * 2
    assert b"for <Alice+Newsletters@Example.com>" in messages(srv, "alice@example.com")[-1]
    assert body_after_trace(messages(srv, "bob@example.com")[-1]) == MESSAGE
    assert len(messages(srv, "hugo@catchall.example")) == 1
    assert len(messages(srv, "fwd@example.com")) == 1 and len(messages(srv, "dan@example.com")) == 1
    assert len(messages(srv, "carol@example.com")) == 2
    new = queue(srv)[queued_before:]
    assert [[r["recipient"] for r in e["recipients"]] for e in new] == [["partner@remote.example"],
                                                                       ["fwd-copy@remote.example"]]
    assert all(e["mail_from"] == "sender@outside.example" and e["account_id"] is None for e in new)
    forwarded = queued_message(srv, new[1])
    assert forwarded.startswith(b"Received: ") and forwarded.endswith(MESSAGE)


def test_one_copy_per_mailbox_for_duplicate_recipients(srv: RunningServer) -> None:
    before = len(messages(srv, "dan@example.com"))
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
        client.sendmail("s@outside.example", ["dan@example.com", "DAN@example.com", "dan+x@example.com"], MESSAGE)
    assert len(messages(srv, "dan@example.com")) == before + 1
    assert b"for <" not in messages(srv, "dan@example.com")[-1]  # several recipients: no "for"


def test_smtputf8_recipient(srv: RunningServer) -> None:
    message = "From: Zoë <zoe@outside.example>\r\nSubject: Grüße\r\n\r\nHallo Jörg\r\n".encode()
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        assert c.cmd("MAIL FROM:<zoë@outside.example> SMTPUTF8")[0] == 250
        assert c.cmd("RCPT TO:<JÖRG@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        assert c.cmd(message + b".")[0] == 250
    stored = messages(srv, "jörg@example.com")[-1]
    assert body_after_trace(stored) == message and " with UTF8SMTP id ".encode() in stored


def test_chunking_bdat(srv: RunningServer) -> None:
    before = len(messages(srv, "carol@example.com"))
    first, second = MESSAGE[:50], MESSAGE[50:]
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.send(b"MAIL FROM:<s@outside.example>\r\nRCPT TO:<carol@example.com>\r\n"
               + f"BDAT {len(first)}\r\n".encode() + first + f"BDAT {len(second)} LAST\r\n".encode() + second)
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 250]
    inbox = messages(srv, "carol@example.com")
    assert len(inbox) == before + 1 and body_after_trace(inbox[-1]) == MESSAGE


def test_mail_loops_are_stopped(srv: RunningServer) -> None:
    before = counts(srv)
    looping = b"Received: from a by b; now\r\n" * 100 + MESSAGE
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            client.sendmail("s@outside.example", ["alice@example.com"], looping)
        assert exc.value.smtp_code == 554 and exc.value.smtp_error.startswith(b"5.4.6")
    assert counts(srv) == before


@dataclass
class FakeVerdict:
    header: bytes
    action: str
    reject_reply: str = ""


def test_inbound_checker_hook(srv: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, str, bytes]] = []

    async def checker(ip: str, helo: str, mail_from: str, message: bytes) -> FakeVerdict:
        seen.append((ip, helo, mail_from, message))
        header = b"Authentication-Results: mail.example.com; spf=pass smtp.mailfrom=outside.example\r\n"
        if b"Subject: reject" in message:
            return FakeVerdict(header, "reject", "5.7.1 Email rejected per DMARC policy for outside.example")
        if b"Subject: spam" in message:
            return FakeVerdict(header, "quarantine")
        if b"Subject: later" in message:
            return FakeVerdict(header, "defer")
        return FakeVerdict(header, "accept")

    monkeypatch.setattr(SmtpServer, "inbound_checker", staticmethod(checker))
    before = counts(srv)
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
        client.ehlo("mx.outside.example")
        with pytest.raises(smtplib.SMTPDataError) as exc:
            client.sendmail("s@outside.example", ["junk@example.com"], b"Subject: reject\r\n\r\nx\r\n")
        assert (exc.value.smtp_code, exc.value.smtp_error) == (
            550, b"5.7.1 Email rejected per DMARC policy for outside.example")
        with pytest.raises(smtplib.SMTPDataError) as exc:
            client.sendmail("s@outside.example", ["junk@example.com"], b"Subject: later\r\n\r\nx\r\n")
        assert exc.value.smtp_code == 451
        assert counts(srv) == before
        client.sendmail("s@outside.example", ["junk@example.com"], b"Subject: spam\r\n\r\nx\r\n")
        client.sendmail("s@outside.example", ["junk@example.com"], b"Subject: fine\r\n\r\nx\r\n")
    assert seen[0] == ("127.0.0.1", "mx.outside.example", "s@outside.example", b"Subject: reject\r\n\r\nx\r\n")
    [spam] = messages(srv, "junk@example.com", "Junk")
    [fine] = messages(srv, "junk@example.com")
    for stored in (spam, fine):
        assert stored.startswith(b"Return-Path: <s@outside.example>\r\nAuthentication-Results: mail.example.com; "
                                 b"spf=pass smtp.mailfrom=outside.example\r\nReceived: from mx.outside.example")
    assert spam.endswith(b"Subject: spam\r\n\r\nx\r\n") and fine.endswith(b"Subject: fine\r\n\r\nx\r\n")


def test_forged_authentication_results_are_removed(srv: RunningServer) -> None:
    forged = b"Authentication-Results: mail.example.com; dmarc=pass\r\n" + MESSAGE
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
        client.sendmail("s@outside.example", ["carol@example.com"], forged)
    stored = messages(srv, "carol@example.com")[-1]
    assert b"dmarc=pass" not in stored and body_after_trace(stored) == MESSAGE


def test_quota_and_disk_full(srv: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    srv.add_account("small@example.com", "password1", quota_bytes=2000)
    before = counts(srv)
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        assert c.cmd("MAIL FROM:<s@outside.example> SIZE=5000")[0] == 250
        assert c.cmd("RCPT TO:<small@example.com>") == (
            552, "5.2.2 Mailbox full: the message exceeds the mailbox quota")
        c.cmd("RSET")
        c.cmd("MAIL FROM:<s@outside.example>")
        assert c.cmd("RCPT TO:<small@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        assert c.cmd(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n.")[0] == 552
        assert counts(srv) == before
        # fill it up, then the next one is a temporary failure at RCPT
        c.cmd("MAIL FROM:<s@outside.example>")
        c.cmd("RCPT TO:<small@example.com>")
        c.cmd("DATA")
        assert c.cmd(b"Subject: fits\r\n\r\n" + b"x" * 1500 + b"\r\n.")[0] == 250
        c.cmd("MAIL FROM:<s@outside.example> SIZE=600")
        assert c.cmd("RCPT TO:<small@example.com>") == (452, "4.2.2 Mailbox full; try again later")
        c.cmd("RSET")

    async def disk_full(*args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(srv.store, "deliver", disk_full)
    before = counts(srv)
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            client.sendmail("s@outside.example", ["alice@example.com"], MESSAGE)
        assert (exc.value.smtp_code, exc.value.smtp_error) == (452, b"4.3.1 Insufficient system storage")
    assert counts(srv) == before


def test_a_failing_lookup_is_a_temporary_error(srv: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    srv.add_account("lookup@example.com", "password1")  # never looked up (nor cached) before
    calls = []

    async def broken(address: str) -> None:
        calls.append(address)
        raise RuntimeError("database unavailable")
    monkeypatch.setattr(srv.store, "get_account", broken)
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<s@outside.example>")
        assert c.cmd("RCPT TO:<lookup@example.com>") == (451, "4.3.0 Local error in processing")
        monkeypatch.undo()
        assert c.cmd("RCPT TO:<lookup@example.com>")[0] == 250  # the session goes on
        assert c.cmd("QUIT")[0] == 221
    assert calls == ["lookup@example.com"]
