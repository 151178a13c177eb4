"""The event bus between worker processes: the supervisor's hub on a real Unix socket, two
buses attached to it as two workers would be, and two stores on one SQLite file (as two worker
processes have)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from postoffice.servers.imap.selected import MailboxIndex
from postoffice.services.auth import Authenticator
from postoffice.services.events import (
    EventBus, FlagsChanged, MessagesExpunged, SessionOpened, decode_events, encode_events,
)
from postoffice.services.sessions import OpenSession, SessionRegistry
from postoffice.services.unixbus import BusHub, UnixBusClient, announce
from postoffice.store import AccountChanged, Store
from postoffice.store.records import SEEN
from tests.support.server import make_config

RAW = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"


async def until(check, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_events_cross_as_json_and_nothing_else() -> None:
    sent = [FlagsChanged(1, 2, ((5, SEEN, "work", 9),), origin=object()), AccountChanged(None, 3),
            object()]
    got = decode_events(__import__("json").loads(__import__("json").dumps(encode_events(sent))))
    assert got == [FlagsChanged(1, 2, ((5, SEEN, "work", 9),)), AccountChanged(None, 3)]
    assert got[0].origin is None  # a session object never leaves its process
    assert decode_events([["os.system", {"command": "true"}], ["FlagsChanged", {"bogus": 1}]]) == []


async def test_hub_relays_events_locks_and_forgets_a_gone_worker(tmp_path: Path) -> None:
    hub = BusHub(tmp_path / "bus.sock")
    await hub.start()
    loop = asyncio.get_running_loop()
    a, b = EventBus(loop, "worker0:1"), EventBus(loop, "worker1:2")
    await a.attach(UnixBusClient(hub.path))
    lost = asyncio.Event()
    await b.attach(UnixBusClient(hub.path, on_lost=lost.set))
    try:
        heard: list[object] = []
        sub = b.subscribe(mailbox_id=7)
        b.listeners.append(heard.append)
        a.publish([MessagesExpunged(1, 7, (3,), 4)])
        assert await sub.wait(2) == [MessagesExpunged(1, 7, (3,), 4)]

        # Named locks: one holder across processes; released when its holder's connection goes.
        assert await a.try_lock("pop3:1")
        assert not await b.try_lock("pop3:1")
        a.unlock("pop3:1")
        assert await b.try_lock("pop3:1")
        assert not await a.try_lock("pop3:1")

        # The session registry mirrors the other worker's sessions.
        ra, rb = SessionRegistry(None, a), SessionRegistry(None, b)  # type: ignore[arg-type]
        a.listeners.append(ra.on_event)
        b.listeners.append(rb.on_event)
        sa = ra.add(OpenSession("imap", 1, "alice@example.com", "192.0.2.1", True, 993, app_password="phone"))
        await until(lambda: len(rb.all()) == 1)
        mirrored = rb.all()[0]
        assert (mirrored.address, mirrored.node, mirrored.terminate) == ("alice@example.com", "worker0:1", None)
        assert (mirrored.app_password, mirrored.port, mirrored.tls) == ("phone", 993, True)
        assert rb.local() == [] and ra.for_account(1) == [sa]
        ra.remove(sa)
        await until(lambda: rb.all() == [])
        ra.add(OpenSession("pop3", 1, "alice@example.com", "192.0.2.1", True, 995))
        await until(lambda: len(rb.all()) == 1)
        await b.detach()  # worker 1 exits: worker 0 forgets its sessions; its lock is free again
        rb2 = SessionRegistry(None, a)  # type: ignore[arg-type]
        assert await a.try_lock("pop3:1")
        c = EventBus(loop, "worker1:3")  # its replacement asks for the sessions it cannot know
        rc = SessionRegistry(None, c)  # type: ignore[arg-type]
        c.listeners.append(rc.on_event)
        from postoffice.services.events import SessionsWanted
        await c.attach(UnixBusClient(hub.path))
        c.publish([SessionsWanted(c.node)])
        await until(lambda: len(rc.all()) == 1)
        assert rc.all()[0].protocol == "pop3" and rb2.all() == []
        await c.detach()
        assert any(isinstance(e, SessionOpened) for e in heard)
    finally:
        await a.detach()
        await b.detach()
        await hub.close()


async def test_login_failures_count_on_every_worker(tmp_path: Path) -> None:
    hub = BusHub(tmp_path / "bus.sock")
    await hub.start()
    loop = asyncio.get_running_loop()
    config = make_config(tmp_path / "data", security={"throttle_block_after": 4})
    store = Store.open(tmp_path / "data")
    buses, auths = [], []
    try:
        for n in range(2):
            bus = EventBus(loop, f"worker{n}:{n}")
            await bus.attach(UnixBusClient(hub.path))
            auth = Authenticator(store, config.security)
            auth.share = lambda ip, user, ok, bus=bus: bus.publish([__import__(
                "postoffice.services.events", fromlist=["LoginResult"]).LoginResult(bus.node, ip, user, ok)])
            bus.listeners.append(lambda e, auth=auth, bus=bus: auth.note_remote(e.remote_ip, e.username, e.ok)
                                 if type(e).__name__ == "LoginResult" and e.node != bus.node else None)
            buses.append(bus)
            auths.append(auth)
        for _ in range(4):  # four failures, all on worker 0 ...
            await auths[0].record_failure("198.51.100.9", "alice@example.com")
        await until(lambda: auths[1].is_blocked("198.51.100.9"))  # ... block the address on worker 1 too
        assert auths[1].is_blocked("203.0.113.1", "alice@example.com")
    finally:
        for bus in buses:
            await bus.detach()
        await hub.close()
        store.close()


async def test_cli_announcement_reaches_the_workers(tmp_path: Path) -> None:
    hub = BusHub(tmp_path / "bus.sock")
    await hub.start()
    bus = EventBus(asyncio.get_running_loop(), "worker0:1")
    await bus.attach(UnixBusClient(hub.path))
    heard: list[object] = []
    bus.listeners.append(heard.append)
    try:
        assert await announce(tmp_path, [AccountChanged(5, 1)], "cli:1")
        await until(lambda: AccountChanged(5, 1) in heard)
        assert not await announce(tmp_path / "elsewhere", [AccountChanged(5, 1)], "cli:1")
    finally:
        await bus.detach()
        await hub.close()


async def test_index_catches_up_when_another_workers_event_is_late(tmp_path: Path) -> None:
    """Worker B's change is committed but its event has not arrived when worker A's own later
    change does: A's index reads the gap from the database instead of skipping it."""
    loop = asyncio.get_running_loop()
    bus_a = EventBus(loop, "a")
    store_a = Store.open(tmp_path / "data", on_commit=bus_a.publish_threadsafe)
    store_b = Store.open(tmp_path / "data")  # worker B: its events are "in flight" (dropped here)
    try:
        domain = await store_a.add_domain("example.com")
        account = await store_a.add_account("alice@example.com", "x")
        inbox = await store_a.create_mailbox(account.id, "INBOX") if await store_a.get_mailbox(
            account.id, "INBOX") is None else await store_a.get_mailbox(account.id, "INBOX")
        assert domain and inbox is not None
        await store_a.append(account.id, inbox.id, [(RAW, 0, "", 1.0), (RAW, 0, "", 1.0)])
        index = MailboxIndex(store_a, bus_a, inbox.id)
        await index.load()
        told = bus_a.subscribe(mailbox_id=inbox.id)
        start = index.highestmodseq

        # B: flag message 1, expunge message 2, append message 3 (UID 3) -- events lost.
        await store_b.store_flags(account.id, inbox.id, [1], "add", SEEN, ())
        await store_b.store_flags(account.id, inbox.id, [2], "add", 8, ())
        await store_b.expunge(account.id, inbox.id)
        await store_b.append(account.id, inbox.id, [(RAW, 0, "", 2.0)])
        # A: appends message 4; its own event arrives first, skipping B's MODSEQs.
        await store_a.append(account.id, inbox.id, [(RAW, 0, "", 3.0)])
        await until(lambda: not index.sub.queue.empty())
        await index.refresh()

        assert list(index.uids) == [1, 3, 4]  # UID 3 was not skipped, UID 2 is gone
        assert index.bits[0] & SEEN
        box = await store_a.get_mailbox(account.id, "INBOX")
        assert box is not None and index.highestmodseq == box.highestmodseq > start + 4
        # This process's sessions hear what B did, as if B's events had come.
        seen = told.pending()
        assert any(isinstance(e, MessagesExpunged) and e.uids == (2,) for e in seen)
        assert any(isinstance(e, FlagsChanged) and e.changes[0][0] == 1 for e in seen)
    finally:
        store_b.close()
        store_a.close()
