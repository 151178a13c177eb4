"""The queue runner against a real DNS server and real SMTP peers on loopback."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postoffice.outbound.mtasts import MTASTS
from postoffice.outbound.worker import QueueWorker, backoff
from postoffice.services.accounts import AccountService
from tests.outbound.worker_support import (
    Clock,
    drop_mid_data,
    free_port,
    garbage,
    raw_server,
    start_remote,
)
from tests.support.dns_server import DNSTestServer
from tests.support.server import make_config

MSG = b"From: alice@local.test\r\nTo: bob@remote.test\r\nSubject: hi\r\nMessage-ID: <m1@local.test>\r\n\r\nhello\r\n"


@pytest.fixture
def port() -> int:
    return free_port("127.0.0.1", "127.0.0.2")


@pytest.fixture
def remote(port: int) -> Iterator[Any]:
    c, handler = start_remote("127.0.0.1", port)
    yield handler
    c.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_worker(store: Any, tmp_path: Path, dns: DNSTestServer, port: int, clock: Clock, **outbound: Any) -> QueueWorker:
    config = make_config(tmp_path / "cfg", outbound={"enabled": True, "dns": dns.nameserver, "smtp_port": port,
                                                     "retry_interval": 60, **outbound})
    from postoffice.dns import Resolver

    return QueueWorker(store, config, resolver=Resolver(dns.nameserver, timeout=1.5), clock=clock,
                       smtp_timeout=5)


@pytest.fixture
async def alice(store: Any, auth: Any) -> Any:
    svc = AccountService(store, auth)
    await svc.add_domain("local.test")
    return await svc.add_account("alice@local.test", "password-1")


def mx(dns: DNSTestServer, domain: str, *hosts: tuple[int, str, str | None]) -> None:
    for pref, host, ip in hosts:
        dns.add(domain, "MX", (pref, host))
        if ip:
            dns.add(host, "A", ip)


async def inbox(store: Any, account: Any) -> list[bytes]:
    box = await store.get_mailbox(account.id, "INBOX")
    return [await store.read_blob(m.blob_id) for m in await store.list_messages(box.id)]


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n, 60, 600) for n in (1, 2, 3, 4, 5, 99)] == [60, 120, 240, 480, 600, 600]


async def test_lowest_preference_mx_gets_the_mail(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                                  port: int, clock: Clock, alice: Any) -> None:
    c2, second = start_remote("127.0.0.2", port, "second")
    c1, first = start_remote("127.0.0.1", port, "first")
    try:
        mx(dns_server, "remote.test", (20, "mx2.remote.test", "127.0.0.2"), (10, "mx1.remote.test", "127.0.0.1"))
        await store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id)
        worker = make_worker(store, tmp_path, dns_server, port, clock)
        assert await worker.run_once() == 1
        assert first.recipients() == ["bob@remote.test"] and second.messages == []
        assert await store.queue_entries() == []  # finished entries leave the queue
    finally:
        c1.stop()
        c2.stop()


async def test_falls_back_to_next_mx_when_first_refuses(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                                         port: int, remote: Any, clock: Clock, alice: Any) -> None:
    # mx1 resolves to an address where nothing listens: connection refused -> next MX.
    mx(dns_server, "remote.test", (10, "mx1.remote.test", "127.0.0.3"), (20, "mx2.remote.test", "127.0.0.1"))
    await store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id)
    assert await make_worker(store, tmp_path, dns_server, port, clock).run_once() == 1
    assert remote.recipients() == ["bob@remote.test"]
    assert await store.queue_entries() == []


async def test_implicit_mx_from_address_records(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                                port: int, remote: Any, clock: Clock, alice: Any) -> None:
    dns_server.add("plain.test", "A", "127.0.0.1")  # no MX: the domain itself (RFC 5321 5.1)
    await store.enqueue("alice@local.test", ["carol@plain.test"], MSG, account_id=alice.id)
    await make_worker(store, tmp_path, dns_server, port, clock).run_once()
    assert remote.recipients() == ["carol@plain.test"]


async def test_4xx_is_retried_with_backoff_and_never_sent_twice(
        store: Any, tmp_path: Path, dns_server: DNSTestServer, port: int, remote: Any, clock: Clock,
        alice: Any) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    remote.rules["busy"] = "451 4.3.0 try again later"
    await store.enqueue("alice@local.test", ["ok@remote.test", "busy@remote.test"], MSG, account_id=alice.id)
    worker = make_worker(store, tmp_path, dns_server, port, clock)
    assert await worker.run_once() == 1
    [entry] = await store.queue_entries()
    status = {r["recipient"]: r["status"] for r in entry["recipients"]}
    assert status == {"ok@remote.test": "delivered", "busy@remote.test": "pending"}
    assert entry["attempts"] == 1 and "451" in entry["recipients"][1]["last_error"]
    assert entry["next_attempt"] == pytest.approx(clock() + 60, abs=5)
    assert await worker.run_once() == 0  # not due yet
    clock.advance(61)
    assert await worker.run_once() == 1  # still busy: the second retry waits twice as long
    [entry] = await store.queue_entries()
    assert entry["attempts"] == 2 and entry["next_attempt"] == pytest.approx(clock() + 120, abs=5)
    del remote.rules["busy"]
    clock.advance(121)
    assert await worker.run_once() == 1
    assert sorted(remote.recipients()) == ["busy@remote.test", "ok@remote.test"]  # each exactly once
    assert await store.queue_entries() == []
    assert await inbox(store, alice) == []  # no bounce, no delay notice


async def test_5xx_bounces_to_the_senders_inbox(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                                port: int, remote: Any, clock: Clock, alice: Any) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    remote.rules["nobody"] = "550 5.1.1 no such user"
    await store.enqueue("alice@local.test", ["nobody@remote.test", "bob@remote.test"], MSG, account_id=alice.id)
    await make_worker(store, tmp_path, dns_server, port, clock).run_once()
    assert remote.recipients() == ["bob@remote.test"]
    assert await store.queue_entries() == []
    [dsn] = await inbox(store, alice)
    msg = email.message_from_bytes(dsn)
    assert msg.get_content_type() == "multipart/report"
    assert msg["To"] == "<alice@local.test>"
    status = msg.get_payload()[1].as_string()
    assert "Final-Recipient: rfc822; nobody@remote.test" in status
    assert "Status: 5.1.1" in status and "Action: failed" in status
    assert "Remote-MTA: dns; mx.remote.test [127.0.0.1]" in status
    assert "bob@remote.test" not in status
    assert b"Message-ID: <m1@local.test>" in dsn  # the returned headers


@pytest.mark.parametrize("setup, status", [
    (lambda d: None, "5.1.2"),  # the domain does not exist
    (lambda d: d.add("remote.test", "MX", (0, "")), "5.1.10"),  # null MX (RFC 7505)
])
async def test_unroutable_domains_bounce(store: Any, tmp_path: Path, dns_server: DNSTestServer, port: int,
                                         clock: Clock, alice: Any, setup: Any, status: str) -> None:
    setup(dns_server)
    await store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id)
    await make_worker(store, tmp_path, dns_server, port, clock).run_once()
    assert await store.queue_entries() == []
    [dsn] = await inbox(store, alice)
    assert f"Status: {status}".encode() in dsn


@pytest.mark.parametrize("case", ["mx-to-nothing", "servfail", "drop-mid-data", "garbage", "refused"])
async def test_trouble_keeps_the_message_queued(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                                port: int, clock: Clock, alice: Any, case: str) -> None:
    server = None
    if case == "mx-to-nothing":
        dns_server.add("remote.test", "MX", (10, "gone.remote.test"))  # the MX host has no address
    elif case == "servfail":
        dns_server.servfail("remote.test")
    else:
        mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
        if case != "refused":
            server = await raw_server(port, drop_mid_data if case == "drop-mid-data" else garbage)
    try:
        await store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id)
        await make_worker(store, tmp_path, dns_server, port, clock).run_once()
    finally:
        if server is not None:
            server.close()
    [entry] = await store.queue_entries()
    assert entry["attempts"] == 1 and entry["recipients"][0]["status"] == "pending"
    assert entry["recipients"][0]["last_error"].startswith("4.")
    assert await inbox(store, alice) == []
    assert await store.read_blob(entry["blob_id"]) == MSG


async def test_delay_notice_then_expiry_bounce(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                               port: int, remote: Any, clock: Clock, alice: Any) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    remote.rules["bob"] = "421 4.4.5 overloaded"
    await store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id)
    worker = make_worker(store, tmp_path, dns_server, port, clock, delay_notice_after=3600, retry_for=86400)
    await worker.run_once()
    assert await inbox(store, alice) == []
    clock.advance(3700)
    await worker.run_once()
    [notice] = await inbox(store, alice)
    assert b"Action: delayed" in notice and b"Will-Retry-Until:" in notice
    [entry] = await store.queue_entries()
    clock.advance(3700)
    await worker.run_once()
    assert len(await inbox(store, alice)) == 1  # only one delay notice
    clock.advance(86400)
    await worker.run_once()
    assert await store.queue_entries() == []
    notices = await inbox(store, alice)
    assert len(notices) == 2 and b"Action: failed" in notices[1] and b"Status: 4.4.7" in notices[1]
    assert remote.messages == []


@pytest.mark.parametrize("sender", ["", "MAILER-DAEMON@local.test"])
async def test_never_a_bounce_to_a_bounce(store: Any, tmp_path: Path, dns_server: DNSTestServer, port: int,
                                          remote: Any, clock: Clock, alice: Any, sender: str) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    remote.rules["bob"] = "550 5.1.1 gone"
    await store.enqueue(sender, ["bob@remote.test"], MSG, account_id=alice.id)
    await make_worker(store, tmp_path, dns_server, port, clock).run_once()
    assert await store.queue_entries() == []
    assert await inbox(store, alice) == []


async def test_bounce_for_a_remote_sender_is_queued_with_null_sender(
        store: Any, tmp_path: Path, dns_server: DNSTestServer, port: int, remote: Any, clock: Clock) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    mx(dns_server, "far.test", (10, "mx.far.test", "127.0.0.1"))
    remote.rules["bob"] = "550 5.1.1 gone"
    await store.enqueue("zed@far.test", ["bob@remote.test"], MSG)  # e.g. forwarded mail
    worker = make_worker(store, tmp_path, dns_server, port, clock)
    await worker.run_once()
    [bounce] = await store.queue_entries()
    assert bounce["mail_from"] == "" and bounce["recipients"][0]["recipient"] == "zed@far.test"
    await worker.run_once()
    [(mail_from, rcpts, content)] = remote.messages
    assert mail_from == "<>" and rcpts == ["zed@far.test"] and b"multipart/report" in content


async def test_enormous_message_gets_a_bounded_bounce(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                                      port: int, remote: Any, clock: Clock, alice: Any) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    remote.data_reply = "552 5.3.4 message too big"
    huge = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 900) for i in range(400)) + MSG + (b"z" * 900 + b"\r\n") * 3000
    await store.enqueue("alice@local.test", ["bob@remote.test"], huge, account_id=alice.id)
    await make_worker(store, tmp_path, dns_server, port, clock).run_once()
    [dsn] = await inbox(store, alice)
    status = dsn.split(b"message/delivery-status")[1]
    assert len(dsn) < 64 * 1024 and b"X-Postoffice-Truncated" in dsn, status[:800]
    assert b"Status: 5.3.4" in dsn, status[:800].decode()


async def test_claims_are_exclusive(store: Any, tmp_path: Path, dns_server: DNSTestServer, port: int,
                                    remote: Any, clock: Clock, alice: Any) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    for i in range(6):
        await store.enqueue("alice@local.test", [f"r{i}@remote.test"], MSG, account_id=alice.id)
    w1 = make_worker(store, tmp_path, dns_server, port, clock)
    w2 = make_worker(store, tmp_path, dns_server, port, clock)
    counts = await asyncio.gather(w1.run_once(), w2.run_once(), w1.run_once())
    assert sum(counts) == 6
    assert sorted(remote.recipients()) == sorted(f"r{i}@remote.test" for i in range(6))


async def test_running_worker_picks_up_new_mail_quickly(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                                        port: int, remote: Any, clock: Clock, alice: Any) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    worker = make_worker(store, tmp_path, dns_server, port, clock)
    worker.start()
    try:
        await asyncio.sleep(0.1)
        await store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id)
        for _ in range(40):
            if remote.messages:
                break
            await asyncio.sleep(0.05)
        assert remote.recipients() == ["bob@remote.test"]
    finally:
        await worker.stop()


async def test_mta_sts_enforce_restricts_hosts(store: Any, tmp_path: Path, dns_server: DNSTestServer,
                                               port: int, remote: Any, clock: Clock, alice: Any) -> None:
    mx(dns_server, "remote.test", (10, "mx.remote.test", "127.0.0.1"))
    dns_server.add("_mta-sts.remote.test", "TXT", "v=STSv1; id=20240101")

    async def fetch(domain: str) -> str:
        return "version: STSv1\nmode: enforce\nmx: only.remote.test\nmax_age: 86400\n"
    worker = make_worker(store, tmp_path, dns_server, port, clock)
    worker.mtasts = MTASTS(worker.resolver, fetch, clock=clock)
    await store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id)
    await worker.run_once()
    [entry] = await store.queue_entries()
    assert "MTA-STS" in entry["recipients"][0]["last_error"] and remote.messages == []


async def test_smarthost_with_auth(store: Any, tmp_path: Path, dns_server: DNSTestServer, port: int,
                                   clock: Clock, alice: Any) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from tests.outbound.worker_support import Remote

    seen: list[bytes] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        seen.append(data.login)
        return AuthResult(success=data.login == b"relayuser" and data.password == b"s3cret")
    handler = Remote()
    c = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5, authenticator=authenticator,
                   auth_require_tls=False)
    c.start()
    try:
        worker = make_worker(store, tmp_path, dns_server, port, clock, smarthost=f"127.0.0.1:{port}",
                             smarthost_username="relayuser", smarthost_password="s3cret", smarthost_tls="none")
        await store.enqueue("alice@local.test", ["x@nowhere.test", "y@elsewhere.test"], MSG, account_id=alice.id)
        await worker.run_once()
        assert seen == [b"relayuser"]
        assert sorted(handler.recipients()) == ["x@nowhere.test", "y@elsewhere.test"]
        assert dns_server.count("MX") == 0  # the relay does the routing
    finally:
        c.stop()


async def test_a_4xx_to_rcpt_tries_the_next_mx_for_those_recipients(
        store: Any, tmp_path: Path, dns_server: DNSTestServer, port: int, clock: Clock, alice: Any) -> None:
    """Issue #12 (Postfix behaviour): recipients soft-failed by the first MX are tried at the
    next MX in the same attempt; accepted ones are not sent again, hard-failed ones bounce."""
    c1, first = start_remote("127.0.0.1", port, "first")
    c2, second = start_remote("127.0.0.2", port, "second")
    try:
        mx(dns_server, "remote.test", (10, "mx1.remote.test", "127.0.0.1"), (20, "mx2.remote.test", "127.0.0.2"))
        first.rules["busy"] = "451 4.7.1 greylisted, try again later"
        first.rules["gone"] = "550 5.1.1 no such user"
        await store.enqueue("alice@local.test", ["ok@remote.test", "busy@remote.test", "busy2@remote.test",
                                                 "gone@remote.test"], MSG, account_id=alice.id)
        worker = make_worker(store, tmp_path, dns_server, port, clock)
        assert await worker.run_once() == 1
        assert first.recipients() == ["ok@remote.test"]
        assert sorted(second.recipients()) == ["busy2@remote.test", "busy@remote.test"]
        assert await store.queue_entries() == []  # nothing left to retry: delivered or bounced
        [bounce] = await inbox(store, alice)
        assert b"gone@remote.test" in bounce and b"busy@remote.test" not in bounce
    finally:
        c1.stop()
        c2.stop()


async def test_a_4xx_to_mail_from_tries_the_next_mx(
        store: Any, tmp_path: Path, dns_server: DNSTestServer, port: int, clock: Clock, alice: Any) -> None:
    """A connection-level temporary refusal (451 to MAIL FROM) moves the whole attempt on."""
    async def greylisting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 grey.test ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 grey.test\r\n")
            elif verb == b"MAIL":
                writer.write(b"451 4.7.1 greylisted\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"503 5.5.1 bad sequence\r\n")
            await writer.drain()

    grey = await raw_server(port, greylisting)  # 127.0.0.1
    c2, second = start_remote("127.0.0.2", port, "second")
    try:
        mx(dns_server, "remote.test", (10, "mx1.remote.test", "127.0.0.1"), (20, "mx2.remote.test", "127.0.0.2"))
        await store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id)
        assert await make_worker(store, tmp_path, dns_server, port, clock).run_once() == 1
        assert second.recipients() == ["bob@remote.test"]
        assert await store.queue_entries() == []
    finally:
        grey.close()
        c2.stop()
