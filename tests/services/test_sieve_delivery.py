"""Sieve at local delivery (services.sieve through services.delivery), against a real store."""

from __future__ import annotations

import pytest

from postoffice.services.accounts import AccountService
from postoffice.services.auth import Authenticator
from postoffice.services.delivery import Delivery, Envelope, Trace
from postoffice.store import SEEN

TRACE = Trace(helo="client.example", remote_ip="192.0.2.9", protocol="ESMTP", queue_id="Q1")


@pytest.fixture
async def svc(store, config) -> AccountService:
    s = AccountService(store, Authenticator(store, config.security))
    await s.add_domain("example.com")
    for name in ("alice", "bob"):
        await s.add_account(f"{name}@example.com", "password1")
    return s


@pytest.fixture
def delivery(store) -> Delivery:
    return Delivery(store, "mail.example.com")


async def account(store, address: str) -> int:
    return (await store.get_account(address)).id


async def activate(store, delivery: Delivery, account_id: int, script: str) -> None:
    await store.put_sieve_script(account_id, "main", script)
    await store.activate_sieve_script(account_id, "main")
    delivery.sieve.forget(account_id)


async def deliver(delivery: Delivery, to: str, message: bytes, sender: str = "friend@far.away") -> None:
    await delivery.commit(Envelope(sender, [await delivery.route(to)]), message, TRACE)


async def mailbox_messages(store, account_id: int, name: str) -> list:
    box = await store.get_mailbox(account_id, name)
    return [] if box is None else await store.list_messages(box.id)


MSG = (b"From: Friend <friend@far.away>\r\nTo: alice@example.com\r\nSubject: [list] weekly news\r\n"
       b"Message-ID: <n1@far.away>\r\n\r\nhello\r\n")


async def test_fileinto_with_flags_and_no_copy_in_inbox(svc, store, delivery) -> None:
    alice = await account(store, "alice@example.com")
    await store.create_mailbox(alice, "News")
    await activate(store, delivery, alice, 'require ["fileinto", "imap4flags"];\n'
                   'if header :contains "subject" "[list]" { fileinto :flags ["\\\\Seen", "$News"] "News"; }')
    await deliver(delivery, "alice@example.com", MSG)
    [meta] = await mailbox_messages(store, alice, "News")
    assert meta.flags & SEEN and meta.keywords == "$News"
    assert await mailbox_messages(store, alice, "INBOX") == []
    # a message the script does not match goes to INBOX as before
    await deliver(delivery, "alice@example.com", MSG.replace(b"[list] ", b""))
    assert len(await mailbox_messages(store, alice, "INBOX")) == 1


async def test_discard_and_other_accounts_unaffected(svc, store, delivery) -> None:
    alice, bob = await account(store, "alice@example.com"), await account(store, "bob@example.com")
    await activate(store, delivery, alice, "discard;")
    env = Envelope("friend@far.away", [await delivery.route("alice@example.com"), await delivery.route("bob@example.com")])
    await delivery.commit(env, MSG, TRACE)
    assert await mailbox_messages(store, alice, "INBOX") == []
    assert len(await mailbox_messages(store, bob, "INBOX")) == 1


async def test_script_error_keeps_message_and_tells_owner(svc, store, delivery) -> None:
    alice = await account(store, "alice@example.com")
    await activate(store, delivery, alice, 'require "regex"; if header :regex "subject" "(" { discard; }')
    await deliver(delivery, "alice@example.com", MSG)
    inbox = await mailbox_messages(store, alice, "INBOX")
    assert len(inbox) == 2
    bodies = [await store.read_blob(m.blob_id) for m in inbox]
    assert any(b.endswith(MSG) for b in bodies)
    notice = next(b for b in bodies if b"Sieve filter failed" in b)
    assert b"regular expression" in notice and b"weekly news" in notice
    # a script that does not even parse (stored behind ManageSieve's back) is handled the same way
    await activate(store, delivery, alice, "this is not sieve")
    await deliver(delivery, "alice@example.com", MSG)
    assert len(await mailbox_messages(store, alice, "INBOX")) == 4


async def test_redirect_local_and_remote(svc, store, delivery) -> None:
    alice, bob = await account(store, "alice@example.com"), await account(store, "bob@example.com")
    await activate(store, delivery, alice, 'redirect "bob@example.com"; redirect "away@far.away";')
    await deliver(delivery, "alice@example.com", MSG)
    assert await mailbox_messages(store, alice, "INBOX") == []
    assert len(await mailbox_messages(store, bob, "INBOX")) == 1
    [entry] = await store.queue_entries()
    assert entry["mail_from"] == "friend@far.away"
    assert [r["recipient"] for r in entry["recipients"]] == ["away@far.away"]


async def test_reject_sends_report_to_sender(svc, store, delivery) -> None:
    alice = await account(store, "alice@example.com")
    await activate(store, delivery, alice, 'require "reject"; reject "I do not want this.";')
    await deliver(delivery, "alice@example.com", MSG)
    assert await mailbox_messages(store, alice, "INBOX") == []
    [entry] = await store.queue_entries()
    assert entry["mail_from"] == "" and entry["recipients"][0]["recipient"] == "friend@far.away"
    report = await store.read_blob(entry["blob_id"])
    assert b"I do not want this." in report and b"multipart/report" in report


async def test_vacation_once_per_sender_per_days(svc, store, delivery) -> None:
    alice = await account(store, "alice@example.com")
    await activate(store, delivery, alice, 'require "vacation"; vacation :days 2 :subject "Away" "Back Monday.";')
    await deliver(delivery, "alice@example.com", MSG)
    await deliver(delivery, "alice@example.com", MSG)
    await deliver(delivery, "alice@example.com", MSG, sender="other@far.away")
    await deliver(delivery, "alice@example.com", b"Precedence: list\r\n" + MSG, sender="list@far.away")
    entries = await store.queue_entries()
    assert sorted(e["recipients"][0]["recipient"] for e in entries) == ["friend@far.away", "other@far.away"]
    assert all(e["mail_from"] == "" for e in entries)
    reply = await store.read_blob(entries[0]["blob_id"])
    assert b"Auto-Submitted: auto-replied" in reply and b"In-Reply-To: <n1@far.away>" in reply
    assert b"Subject: Away" in reply and b"Back Monday." in reply and b"From: alice@example.com" in reply
    assert len(await mailbox_messages(store, alice, "INBOX")) == 4  # vacation keeps the mail
    # after :days the same sender is answered again (the record says until when)
    [(handle, until)] = await store.db.read(lambda tx: tx.all(
        "SELECT handle, until FROM sieve_vacation WHERE sender = ?", ("friend@far.away",)))
    assert not await store.vacation_reply_due(alice, "friend@far.away", handle, 2, now=until - 60)
    assert await store.vacation_reply_due(alice, "friend@far.away", handle, 2, now=until + 1)
