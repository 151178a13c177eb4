"""Recipient resolution, sender checks, trace headers and the durable hand-off (services.delivery)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from postoffice.services.accounts import AccountService
from postoffice.services.auth import Authenticator
from postoffice.services.delivery import (
    Delivery,
    Envelope,
    SendRateLimiter,
    Trace,
    from_addresses,
    hop_count,
    protocol_name,
)


@pytest.fixture
async def svc(store, config) -> AccountService:
    s = AccountService(store, Authenticator(store, config.security))
    await s.add_domain("example.com")
    await s.add_domain("other.org")
    for name in ("alice", "bob", "carol"):
        await s.add_account(f"{name}@example.com", "password1")
    return s


@pytest.fixture
def delivery(store) -> Delivery:
    return Delivery(store, "mail.example.com")


async def ids(store, *addresses: str) -> list[int]:
    return [(await store.get_account(a)).id for a in addresses]


async def test_exact_account_and_normalisation(svc, store, delivery: Delivery) -> None:
    [alice] = await ids(store, "alice@example.com")
    for spelling in ("alice@example.com", "ALICE@Example.COM", '"alice"@example.com', "alice@example.com."):
        route = await delivery.route(spelling)
        assert route.accounts == [alice] and not route.remote and not route.unknown, spelling


async def test_unknown_and_foreign(svc, delivery: Delivery) -> None:
    assert (await delivery.route("nobody@example.com")).unknown
    foreign = await delivery.route("someone@elsewhere.net")
    assert foreign.foreign and foreign.remote == ["someone@elsewhere.net"]
    assert (await delivery.route("not an address")).unknown


async def test_plus_addressing(svc, store, delivery: Delivery) -> None:
    [alice] = await ids(store, "alice@example.com")
    assert (await delivery.route("alice+lists@example.com")).accounts == [alice]
    assert (await delivery.route("Alice+Tag+More@example.com")).accounts == [alice]
    assert (await delivery.route("+alice@example.com")).unknown
    # an account whose name really contains the tag wins over plus-addressing
    await svc.add_account("alice+real@example.com", "password1")
    [real] = await ids(store, "alice+real@example.com")
    assert (await delivery.route("alice+real@example.com")).accounts == [real]


async def test_aliases_recursive_with_loops_and_remote_targets(svc, store, delivery: Delivery) -> None:
    alice, bob, carol = await ids(store, "alice@example.com", "bob@example.com", "carol@example.com")
    await svc.add_alias("team@example.com", ["alice@example.com", "sub@example.com"])
    await svc.add_alias("sub@example.com", ["bob@example.com", "friend@far.away", "alice@example.com"])
    route = await delivery.route("team@example.com")
    assert sorted(route.accounts) == sorted([alice, bob])
    assert route.remote == ["friend@far.away"]
    # plus-addressing works for aliases too
    assert sorted((await delivery.route("team+x@example.com")).accounts) == sorted([alice, bob])
    # a loop the service would refuse, written straight to the store, still terminates
    await store.add_alias("loop1@example.com", ["loop2@example.com"])
    await store.add_alias("loop2@example.com", ["loop1@example.com", "carol@example.com"])
    assert (await delivery.route("loop1@example.com")).accounts == [carol]
    # a dangling target is skipped; nothing left at all means unknown
    await store.add_alias("dangling@example.com", ["gone@example.com"])
    assert (await delivery.route("dangling@example.com")).unknown


async def test_catch_all(svc, store, delivery: Delivery) -> None:
    [carol] = await ids(store, "carol@example.com")
    assert (await delivery.route("whatever@example.com")).unknown
    await svc.set_catch_all("example.com", "carol@example.com")
    delivery.forget_domains()
    route = await delivery.route("whatever@example.com")
    assert route.accounts == [carol] and route.via_catch_all
    # existing addresses are not affected; other domains neither
    assert not (await delivery.route("alice@example.com")).via_catch_all
    assert (await delivery.route("whatever@other.org")).unknown
    # a catch-all pointing at an unknown address of its own domain does not loop
    await svc.set_catch_all("other.org", "missing@other.org")
    delivery.forget_domains()
    assert (await delivery.route("x@other.org")).unknown


async def test_forwarding_keeps_a_copy_and_forwards(svc, store, delivery: Delivery) -> None:
    alice, bob = await ids(store, "alice@example.com", "bob@example.com")
    await svc.update("alice@example.com", forward_to="bob@example.com, ext@far.away")
    route = await delivery.route("alice@example.com")
    assert route.accounts == [alice, bob] and route.remote == ["ext@far.away"]
    # forwarding loops end
    await svc.update("bob@example.com", forward_to="alice@example.com")
    route = await delivery.route("bob@example.com")
    assert sorted(route.accounts) == sorted([alice, bob])


async def test_may_send_as(svc, store, delivery: Delivery) -> None:
    alice = await store.get_account("alice@example.com")
    await svc.add_alias("sales@example.com", ["alice@example.com", "bob@example.com"])
    await svc.add_alias("bobs@example.com", ["bob@example.com"])
    await svc.set_catch_all("example.com", "alice@example.com")
    delivery.forget_domains()
    await svc.update("bob@example.com", forward_to="alice@example.com")
    assert await delivery.may_send_as(alice, "alice@example.com")
    assert await delivery.may_send_as(alice, "ALICE+news@example.com")
    assert await delivery.may_send_as(alice, "sales@example.com")
    assert not await delivery.may_send_as(alice, "bobs@example.com")
    assert not await delivery.may_send_as(alice, "bob@example.com")  # forwarding is not ownership
    assert not await delivery.may_send_as(alice, "random@example.com")  # nor is the catch-all
    assert not await delivery.may_send_as(alice, "alice@other.org")
    assert not await delivery.may_send_as(alice, "alice@gmail.com")
    assert not await delivery.may_send_as(alice, "")


def test_from_addresses() -> None:
    assert from_addresses(b"From: Alice <alice@example.com>\r\nTo: x@y\r\n\r\nbody") == ["alice@example.com"]
    assert from_addresses(b"From: a@x.org, \"B, b\" <b@y.org>\r\n\r\n") == ["a@x.org", "b@y.org"]
    assert from_addresses(b"From: =?utf-8?q?A?=\r\n <a@x.org>\r\n\r\n") == ["a@x.org"]
    assert from_addresses(b"From: a@x.org\r\nFrom: b@y.org\r\n\r\n") == ["a@x.org", "b@y.org"]
    assert from_addresses(b"Subject: no from\r\n\r\nFrom: a@x.org\r\n") is None
    assert from_addresses(b"From: undisclosed:;\r\n\r\n") is None
    assert from_addresses(b"From: just-a-name\r\n\r\n") is None
    assert from_addresses(b"From:\r\n\r\n") is None


def test_hop_count() -> None:
    head = b"Received: a\r\nreceived : b\r\nX-Received: c\r\nSubject: s\r\n\r\nReceived: in body\r\n"
    assert hop_count(head) == 2


def test_rate_limiter() -> None:
    limiter = SendRateLimiter(10)
    assert limiter.allows(1, 10, now=0)
    limiter.record(1, 7, now=0)
    assert limiter.allows(1, 3, now=1) and not limiter.allows(1, 4, now=1)
    assert limiter.allows(2, 10, now=1)  # per account
    limiter.record(1, 3, now=1000)
    assert not limiter.allows(1, 1, now=2000)
    assert limiter.allows(1, 7, now=3601)  # the first batch left the window
    assert limiter.used(1, now=5000) == 0
    assert SendRateLimiter(0).allows(1, 10**6)


def test_protocol_names() -> None:
    assert protocol_name(esmtp=False, tls=False, authenticated=False, utf8=False) == "SMTP"
    assert protocol_name(esmtp=True, tls=True, authenticated=True, utf8=False) == "ESMTPSA"
    assert protocol_name(esmtp=True, tls=True, authenticated=False, utf8=True) == "UTF8SMTPS"


async def test_received_header_and_commit(svc, store, delivery: Delivery) -> None:
    alice, bob = await ids(store, "alice@example.com", "bob@example.com")
    one = Envelope("sender@far.away", [await delivery.route("alice@example.com")])
    trace = Trace(helo="evil\r\nInjected: yes", remote_ip="192.0.2.7", protocol="ESMTPS", queue_id="ABC")
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    header = delivery.received_header(one, trace, when)
    assert header == (b"Received: from evil??Injected:?yes ([192.0.2.7])\r\n"
                      b"\tby mail.example.com (postoffice) with ESMTPS id ABC\r\n"
                      b"\tfor <alice@example.com>;\r\n\tTue, 02 Jan 2024 03:04:05 +0000\r\n")
    two = Envelope("", [await delivery.route("alice@example.com"), await delivery.route("bob+x@example.com"),
                        await delivery.route("alice+again@example.com"), await delivery.route("r@far.away")])
    assert b"for <" not in delivery.received_header(two, trace)  # no Bcc disclosure
    v6 = Trace(helo="h", remote_ip="2001:db8::1", protocol="ESMTP", queue_id="X")
    assert b"([IPv6:2001:db8::1])" in delivery.received_header(one, v6)

    message = b"Subject: hi\r\n\r\nbody\r\n"
    done = await delivery.commit(two, message, trace)
    assert (done.delivered, done.queued) == (2, 1)  # alice once, bob once; one remote
    for account_id in (alice, bob):
        box = await store.get_mailbox(account_id, "INBOX")
        [meta] = await store.list_messages(box.id)
        stored = await store.read_blob(meta.blob_id)
        assert stored.startswith(b"Return-Path: <>\r\nReceived: from evil")
        assert stored.endswith(b"\r\n" + message)
    [entry] = await store.queue_entries()
    assert entry["mail_from"] == "" and [r["recipient"] for r in entry["recipients"]] == ["r@far.away"]
    queued = await store.read_blob(entry["blob_id"])
    assert queued.startswith(b"Received: ") and b"Return-Path" not in queued and queued.endswith(message)


async def test_route_cache_is_short_and_cleared_by_account_changes(svc, store, delivery: Delivery,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import postoffice.services.delivery as mod

    alice, bob = await ids(store, "alice@example.com", "bob@example.com")
    store.bus.listeners.append(delivery.on_event)
    first = await delivery.route("alice@example.com")
    first.accounts.append(999)  # callers may change what they get; the cache keeps its own copy
    lookups = []
    real = store.get_account

    async def counting(address: str):
        lookups.append(address)
        return await real(address)
    monkeypatch.setattr(store, "get_account", counting)
    assert (await delivery.route("alice@example.com")).accounts == [alice]
    assert lookups == []  # served from the cache
    # an account change (here: forwarding) is seen at once
    await svc.update("alice@example.com", forward_to="bob@example.com")
    await asyncio.sleep(0.05)  # the event reaches the bus after the commit
    assert (await delivery.route("alice@example.com")).accounts == [alice, bob]
    # anything else within ROUTE_CACHE_SECONDS
    await svc.add_alias("new@example.com", ["bob@example.com"])
    monkeypatch.setattr(mod, "ROUTE_CACHE_SECONDS", 0.0)
    assert (await delivery.route("new@example.com")).accounts == [bob]
    # unknown addresses are never cached
    assert (await delivery.route("later@example.com")).unknown
    await svc.add_account("later@example.com", "password1")
    assert not (await delivery.route("later@example.com")).unknown
