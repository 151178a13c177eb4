"""Per-recipient spam settings with a real rspamd (issue 15): the Junk threshold, allow and
block lists of senders (services/spampolicy.py), and filtering of submitted mail."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_rspamd import message, rspamd, send, serve, verdicts  # noqa: F401 - rspamd: the fixture
from tests.support.rspamd import GREYLIST_MARKER, GTUBE, JUNK_MARKER, LOW_MARKER, Rspamd
from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp, counts, messages


@pytest.fixture(scope="module")
def srv(rspamd: Rspamd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    s = serve(tmp_path_factory.mktemp("settings") / "data", rspamd=rspamd.url)
    yield s
    s.__exit__(None, None, None)


@pytest.fixture
def settings(srv: RunningServer) -> Iterator[dict[str, Any]]:
    """The ids to hang settings on; every threshold and list entry is removed afterwards."""
    store = srv.store
    ids = {"domain_id": srv.call(store.get_domain("example.com")).id,
           "alice": srv.call(store.get_account("alice@example.com")).id,
           "bob": srv.call(store.get_account("bob@example.com")).id}
    yield ids
    targets = [{"domain_id": ids["domain_id"]}, {"account_id": ids["alice"]}, {"account_id": ids["bob"]}]
    for target in targets:
        srv.call(store.set_spam_threshold(None, **target))
        srv.call(store.set_spam_filter(None, **target)) if "account_id" in target else None
        for kind, entries in srv.call(store.sender_lists(**target)).items():
            for entry in entries:
                srv.call(store.remove_sender_entry(kind, entry, **target))
    srv.call(store.set_spam_filter(True, domain_id=ids["domain_id"]))


def header(stored: bytes) -> bytes:
    return stored.split(b"\r\n\r\n", 1)[0]


def unique(subject: str) -> str:
    return f"{subject} {uuid.uuid4().hex[:8]}"


def test_junk_threshold_moves_mail_between_inbox_and_junk(srv: RunningServer, settings: dict[str, Any]) -> None:
    store = srv.store
    # Without a threshold rspamd decides: score 3 is "no action" -> INBOX.
    assert send(srv.port("smtp"), message(unique(f"low {LOW_MARKER}")))[0] == 250
    assert b"X-Spam-Status: No, score=3.00" in header(messages(srv, "alice@example.com")[-1])
    # The domain's threshold 2.5: the same score now goes to Junk, flagged.
    srv.call(store.set_spam_threshold(2.5, domain_id=settings["domain_id"]))
    junk = len(messages(srv, "alice@example.com", "Junk"))
    assert send(srv.port("smtp"), message(unique(f"low {LOW_MARKER}")))[0] == 250
    assert len(messages(srv, "alice@example.com", "Junk")) == junk + 1
    stored = header(messages(srv, "alice@example.com", "Junk")[-1])
    assert b"X-Spam-Status: Yes, score=3.00" in stored and b"X-Spam-Flag: YES\r\n" in stored
    assert b"X-Spam-Action: no action\r\n" in stored  # rspamd's own action is still shown
    assert verdicts(srv, "alice@example.com")[-1] == "junk by threshold"
    # A clean message (score 0) stays below it.
    assert send(srv.port("smtp"), message(unique("clean")), rcpt="bob@example.com")[0] == 250
    assert b"X-Spam-Status: No, score=0.00" in header(messages(srv, "bob@example.com")[-1])
    # alice's own threshold (10) overrides the domain's: "add header" at 8 goes to her INBOX,
    # while bob (the domain's 2.5) gets it in Junk.
    srv.call(store.set_spam_threshold(10, account_id=settings["alice"]))
    inbox = {a: len(messages(srv, f"{a}@example.com")) for a in ("alice", "bob")}
    junk_count = {a: len(messages(srv, f"{a}@example.com", "Junk")) for a in ("alice", "bob")}
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<sender@outside.example>")
        assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
        c.cmd("DATA")
        assert c.cmd(message(unique(f"pills {JUNK_MARKER}")).decode() + ".")[0] == 250
    assert len(messages(srv, "alice@example.com")) == inbox["alice"] + 1
    assert len(messages(srv, "alice@example.com", "Junk")) == junk_count["alice"]
    assert len(messages(srv, "bob@example.com")) == inbox["bob"]
    assert len(messages(srv, "bob@example.com", "Junk")) == junk_count["bob"] + 1
    assert verdicts(srv, "alice@example.com")[-1] == "inbox by threshold"
    assert verdicts(srv, "bob@example.com")[-1] == "add header"
    # Alone, alice's copy says it was not treated as spam.
    assert send(srv.port("smtp"), message(unique(f"pills {JUNK_MARKER}")))[0] == 250
    assert b"X-Spam-Status: No, score=8.00" in header(messages(srv, "alice@example.com")[-1])
    # A threshold never lets rspamd's reject in.
    assert send(srv.port("smtp"), message(unique("gtube"), GTUBE + b"\r\n"))[0] == 550


def test_allow_list_keeps_spam_out_of_junk_and_unrefused(srv: RunningServer, settings: dict[str, Any]) -> None:
    store = srv.store
    srv.call(store.add_sender_entry("allow", "outside.example", limit=10, account_id=settings["alice"]))
    inbox = len(messages(srv, "alice@example.com"))
    # GTUBE (rspamd: reject) and an "add header" message reach alice's INBOX ...
    assert send(srv.port("smtp"), message(unique("gtube"), GTUBE + b"\r\n"))[0] == 250
    assert send(srv.port("smtp"), message(unique(f"pills {JUNK_MARKER}")))[0] == 250
    assert len(messages(srv, "alice@example.com")) == inbox + 2
    assert b"X-Spam-Action: add header" in header(messages(srv, "alice@example.com")[-1])
    assert verdicts(srv, "alice@example.com")[-2:] == ["allowed", "allowed"]
    # ... while bob, without the entry, still refuses GTUBE.
    assert send(srv.port("smtp"), message(unique("gtube"), GTUBE + b"\r\n"), rcpt="bob@example.com")[0] == 550
    # The From: field counts too, and *.domain means its subdomains (not the domain itself).
    srv.call(store.add_sender_entry("allow", "*.lists.example", limit=10, account_id=settings["bob"]))
    for author, expected in (("news@mx.lists.example", 250), ("news@lists.example", 550)):
        data = message(unique("gtube"), GTUBE + b"\r\n").replace(b"From: Sender <sender@outside.example>",
                                                                  b"From: News <" + author.encode() + b">")
        assert send(srv.port("smtp"), data, rcpt="bob@example.com")[0] == expected, author


def test_block_list_refuses_the_recipient_at_rcpt_and_the_message_at_data(
        srv: RunningServer, settings: dict[str, Any]) -> None:
    store = srv.store
    srv.call(store.add_sender_entry("block", "sender@outside.example", limit=10, account_id=settings["alice"]))
    # Envelope sender: known at RCPT TO, so alice alone is refused; bob still gets the message.
    bob_inbox = len(messages(srv, "bob@example.com"))
    alice_all = len(messages(srv, "alice@example.com")) + len(messages(srv, "alice@example.com", "Junk"))
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<sender@outside.example>")
        assert c.cmd("RCPT TO:<alice@example.com>") == (550, "5.7.1 Sender blocked by the recipient")
        assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
        c.cmd("DATA")
        assert c.cmd(message(unique("hello both")).decode() + ".")[0] == 250
    assert len(messages(srv, "bob@example.com")) == bob_inbox + 1
    assert len(messages(srv, "alice@example.com")) + len(messages(srv, "alice@example.com", "Junk")) == alice_all
    assert verdicts(srv, "alice@example.com")[-1] == "blocked"
    # Blocked even with her filtering off (the lists need no rspamd).
    srv.call(store.set_spam_filter(False, account_id=settings["alice"]))
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<sender@outside.example>")
        assert c.cmd("RCPT TO:<alice@example.com>")[0] == 550
    srv.call(store.set_spam_filter(None, account_id=settings["alice"]))
    # The From: field's domain, blocked domain-wide: only known at the end of DATA.
    srv.call(store.add_sender_entry("block", "spammer.example", limit=10, domain_id=settings["domain_id"]))
    data = message(unique("hi")).replace(b"From: Sender <sender@outside.example>", b"From: <x@spammer.example>")
    before = counts(srv)
    code, text = send(srv.port("smtp"), data, rcpt="bob@example.com")
    assert (code, text) == (550, "5.7.1 Message rejected: sender blocked by the recipients")
    assert counts(srv) == before
    # An address's own allow entry overrides its domain's block: one reply for both, so bob
    # (blocked) gets his copy in Junk rather than the message being refused for alice too.
    srv.call(store.add_sender_entry("allow", "spammer.example", limit=10, account_id=settings["alice"]))
    bob_junk = len(messages(srv, "bob@example.com", "Junk"))
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<other@elsewhere.example>")
        assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
        c.cmd("DATA")
        assert c.cmd(data.decode() + ".")[0] == 250
    assert b"Subject: hi " in messages(srv, "alice@example.com")[-1]
    assert len(messages(srv, "bob@example.com", "Junk")) == bob_junk + 1


def login_587(srv: RunningServer) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30)
    client.starttls(context=srv.client_tls())
    client.login("alice@example.com", "password1")
    return client


def outgoing(subject: str, body: bytes = b"Hi Bob\r\n") -> tuple[str, bytes]:
    msgid = f"{uuid.uuid4().hex}@example.com"
    return msgid, (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: " + subject.encode()
                   + b"\r\nMessage-ID: <" + msgid.encode() + b">\r\n\r\n" + body)


def test_submission_is_filtered_with_the_user_passed(rspamd: Rspamd, srv: RunningServer, tmp_path: Path) -> None:
    # Off by default: GTUBE from an authenticated user is sent (srv has no [filter] submission).
    _, data = outgoing("gtube off", GTUBE + b"\r\n")
    with login_587(srv) as client:
        assert client.sendmail("alice@example.com", ["bob@example.com"], data) == {}
    on = serve(tmp_path / "data", rspamd=rspamd.url, submission=True)
    try:
        msgid, data = outgoing("gtube", GTUBE + b"\r\n")
        before = counts(on)
        with login_587(on) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("alice@example.com", ["bob@example.com"], data)
            assert (refused.value.smtp_code, refused.value.smtp_error) == (550, b"5.7.1 Gtube pattern")
            _, grey = outgoing(f"maybe {GREYLIST_MARKER}")
            with pytest.raises(smtplib.SMTPDataError) as deferred:
                client.sendmail("alice@example.com", ["bob@example.com"], grey)
            assert deferred.value.smtp_code == 451
            clean_id, clean = outgoing("lunch")
            assert client.sendmail("alice@example.com", ["bob@example.com"], clean) == {}
        assert counts(on)[0] == before[0] + 1
        assert b"X-Spam-" not in header(messages(on, "bob@example.com")[-1])  # outgoing mail is not tagged
        checked = dict(rspamd.checked())
        assert checked[msgid] == "alice@example.com" and checked[clean_id] == "alice@example.com"
    finally:
        on.__exit__(None, None, None)
