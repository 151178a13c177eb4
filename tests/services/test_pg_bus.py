"""The event bus across nodes over a real PostgreSQL (issue 14): LISTEN/NOTIFY carries events in
order, large ones through a table; named locks are advisory locks that die with their holder;
a process killed outright is announced gone by the others; the session registry and the login
throttles count across nodes. Skipped, with the reason, when no PostgreSQL answers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.services import pgbus
from postoffice.services.auth import Authenticator
from postoffice.services.events import (
    EventBus, FlagsChanged, LoginResult, MessagesAdded, MessagesExpunged, NodeGone, SessionsWanted,
)
from postoffice.services.pgbus import PgTransport, announce
from postoffice.services.sessions import OpenSession, SessionRegistry
from postoffice.store import AccountChanged, Store
from tests.support.pg import fresh_database
from tests.support.server import make_config


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with fresh_database("po_bus") as name:
        yield name


async def until(check, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def joined(dsn: str, node: str) -> EventBus:
    bus = EventBus(asyncio.get_running_loop(), node)
    await bus.attach(PgTransport(dsn))
    return bus


async def test_events_cross_in_order_and_large_ones_through_the_table(dsn: str) -> None:
    a, b = await joined(dsn, "nodeA:1"), await joined(dsn, "nodeB:1")
    try:
        sub = b.subscribe(mailbox_id=7)
        mine = a.subscribe(mailbox_id=7)
        sent = [MessagesAdded(1, 7, (n,), n) for n in range(1, 400)]  # several NOTIFYs
        # One event far over NOTIFY's 8,000 bytes: 3,000 flag changes of one STORE.
        big = FlagsChanged(1, 7, tuple((uid, 1, "some-keyword", 500) for uid in range(3000)))
        a.publish(sent[:200])
        a.publish([big, MessagesExpunged(1, 7, (3,), 501)])
        a.publish(sent[200:])
        got: list[object] = []
        while len(got) < len(sent) + 2:
            more = await sub.wait(3)
            assert more, f"only {len(got)} events arrived"
            got += more
        assert got == [*sent[:200], big, MessagesExpunged(1, 7, (3,), 501), *sent[200:]]
        assert len(mine.pending()) == len(sent) + 2  # the publisher's own sessions heard it once, directly
        await asyncio.sleep(0.2)
        assert mine.pending() == [], "a process heard its own events back from the database"
    finally:
        await a.detach()
        await b.detach()


async def test_named_locks_are_exclusive_across_nodes_and_die_with_their_holder(dsn: str) -> None:
    a, b = await joined(dsn, "nodeA:2"), await joined(dsn, "nodeB:2")
    try:
        assert await a.try_lock("pop3:1")
        assert await a.try_lock("pop3:1")  # its holder asking again (as the hub answers)
        assert not await b.try_lock("pop3:1")
        assert await b.try_lock("pop3:2")
        a.unlock("pop3:1")
        for _ in range(100):
            if await b.try_lock("pop3:1"):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("an unlocked name stayed locked")
        assert not await a.try_lock("pop3:1")
        await b.detach()  # its connection ends: its locks go with it
        assert await a.try_lock("pop3:1") and await a.try_lock("pop3:2")
    finally:
        await a.detach()
        await b.detach()


async def test_sessions_are_mirrored_on_every_node_and_a_node_leaving_is_forgotten(dsn: str) -> None:
    a, b = await joined(dsn, "nodeA:3"), await joined(dsn, "nodeB:3")
    ra, rb = SessionRegistry(None, a), SessionRegistry(None, b)  # type: ignore[arg-type]
    a.listeners.append(ra.on_event)
    b.listeners.append(rb.on_event)
    try:
        session = ra.add(OpenSession("imap", 1, "alice@example.com", "192.0.2.1", True, 993))
        await until(lambda: len(rb.all()) == 1)
        assert (rb.all()[0].node, rb.all()[0].address) == ("nodeA:3", "alice@example.com")
        ra.remove(session)
        await until(lambda: rb.all() == [])
        ra.add(OpenSession("pop3", 1, "alice@example.com", "192.0.2.1", True, 995))
        await until(lambda: len(rb.all()) == 1)
        c = await joined(dsn, "nodeC:3")  # a node (re)joining asks for the sessions it cannot know
        rc = SessionRegistry(None, c)  # type: ignore[arg-type]
        c.listeners.append(rc.on_event)
        c.publish([SessionsWanted(c.node)])
        await until(lambda: len(rc.all()) == 1)
        await c.detach()
        await a.detach()  # node A stops: B forgets its sessions at once
        await until(lambda: rb.all() == [])
    finally:
        await a.detach()
        await b.detach()


KILLED_NODE = """
import asyncio, sys
from postoffice.services.events import EventBus
from postoffice.services.pgbus import PgTransport
from postoffice.services.sessions import OpenSession, SessionRegistry

async def main():
    bus = EventBus(asyncio.get_running_loop(), "nodeK:1")
    await bus.attach(PgTransport(sys.argv[1]))
    registry = SessionRegistry(None, bus)
    registry.add(OpenSession("imap", 1, "bob@example.com", "192.0.2.2", True, 993))
    assert await bus.try_lock("pop3:9")
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_node_killed_outright_is_announced_gone_and_its_locks_freed(dsn: str) -> None:
    b = await joined(dsn, "nodeB:4")
    rb = SessionRegistry(None, b)  # type: ignore[arg-type]
    b.listeners.append(rb.on_event)
    gone: list[object] = []
    b.listeners.append(lambda e: gone.append(e) if isinstance(e, NodeGone) else None)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_NODE, dsn], stdout=subprocess.PIPE)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        assert line.strip() == b"ready"
        await until(lambda: len(rb.all()) == 1)
        assert not await b.try_lock("pop3:9")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        started = time.monotonic()
        await until(lambda: rb.all() == [], timeout=4 * pgbus.SWEEP_INTERVAL)
        assert NodeGone("nodeK:1") in gone
        assert await b.try_lock("pop3:9")
        print(f"killed node forgotten after {time.monotonic() - started:.2f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await b.detach()


async def test_login_failures_count_on_every_node(dsn: str, tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", security={"throttle_block_after": 4})
    store = Store.open(tmp_path / "data")
    buses, auths = [], []
    try:
        for n in range(2):
            bus = await joined(dsn, f"node{n}:5")
            auth = Authenticator(store, config.security)
            auth.share = lambda ip, user, ok, bus=bus: bus.publish([LoginResult(bus.node, ip, user, ok)])
            bus.listeners.append(lambda e, auth=auth, bus=bus: auth.note_remote(e.remote_ip, e.username, e.ok)
                                 if isinstance(e, LoginResult) and e.node != bus.node else None)
            buses.append(bus)
            auths.append(auth)
        for _ in range(4):
            await auths[0].record_failure("198.51.100.9", "alice@example.com")
        await until(lambda: auths[1].is_blocked("198.51.100.9"))
    finally:
        for bus in buses:
            await bus.detach()
        store.close()


async def test_cli_announcement_reaches_every_node(dsn: str) -> None:
    a, b = await joined(dsn, "nodeA:6"), await joined(dsn, "nodeB:6")
    heard: list[object] = []
    a.listeners.append(heard.append)
    b.listeners.append(heard.append)
    try:
        assert await announce(dsn, [AccountChanged(5, 1)], "cli:1")
        await until(lambda: heard.count(AccountChanged(5, 1)) == 2)
    finally:
        await a.detach()
        await b.detach()


async def test_a_reconnected_listener_makes_subscribers_reread(dsn: str) -> None:
    """The LISTEN session is cut (a database restart, a network blip): the transport connects
    again and, since notifications may have been missed meanwhile, its subscribers resynchronise."""
    import psycopg

    a, b = await joined(dsn, "nodeA:7"), await joined(dsn, "nodeB:7")
    try:
        sub = b.subscribe(mailbox_id=9)
        transport = b.transport
        pid = transport._listener.info.backend_pid  # type: ignore[union-attr]
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await until(lambda: sub.overflowed, timeout=10)
        await until(lambda: transport._listener is not None  # type: ignore[union-attr]
                    and transport._listener.info.backend_pid != pid, timeout=10)  # type: ignore[union-attr]
        a.publish([MessagesExpunged(1, 9, (1,), 2)])
        assert MessagesExpunged(1, 9, (1,), 2) in await sub.wait(3)
    finally:
        await a.detach()
        await b.detach()


async def test_installations_in_two_schemas_of_one_database_stay_apart(dsn: str) -> None:
    """NOTIFY channels and advisory locks belong to the database: each schema gets its own."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        for schema in ("one", "two"):
            await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    one = await joined(f"{dsn} options='-csearch_path=one'", "nodeA:8")
    two = await joined(f"{dsn} options='-csearch_path=two'", "nodeB:8")
    other = await joined(f"{dsn} options='-csearch_path=two'", "nodeC:8")
    try:
        heard = two.subscribe(mailbox_id=1)
        same = other.subscribe(mailbox_id=1)
        one.publish([MessagesExpunged(1, 1, (1,), 2)])
        two.publish([MessagesExpunged(1, 1, (5,), 6)])
        assert await same.wait(3) == [MessagesExpunged(1, 1, (5,), 6)]
        await asyncio.sleep(0.2)
        assert heard.pending() == [MessagesExpunged(1, 1, (5,), 6)]  # its own; nothing from schema one
        assert await one.try_lock("pop3:1") and await two.try_lock("pop3:1")
        assert not await other.try_lock("pop3:1")
    finally:
        for bus in (one, two, other):
            await bus.detach()


async def test_a_node_whose_control_session_was_cut_keeps_its_sessions_listed(dsn: str) -> None:
    """Its old membership row is swept once the session is gone, but the node itself is back
    (with a new row): the others must not forget its sessions."""
    import psycopg

    a, b = await joined(dsn, "nodeA:9"), await joined(dsn, "nodeB:9")
    ra, rb = SessionRegistry(None, a), SessionRegistry(None, b)  # type: ignore[arg-type]
    a.listeners.append(ra.on_event)
    b.listeners.append(rb.on_event)
    try:
        ra.add(OpenSession("imap", 1, "alice@example.com", "192.0.2.1", True, 993))
        await until(lambda: len(rb.all()) == 1)
        transport = a.transport
        old_member, pid = transport._member_id, transport._control.info.backend_pid  # type: ignore[union-attr]
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 6 * pgbus.SWEEP_INTERVAL
            while True:  # until the old row is swept
                cur = await admin.execute("SELECT count(*) FROM bus_nodes WHERE id = %s", (old_member,))
                if (await cur.fetchone())[0] == 0:
                    break
                assert time.monotonic() < deadline, "the cut session's row was never swept"
                await asyncio.sleep(0.05)
        await until(lambda: transport._member_id != old_member, 6 * pgbus.SWEEP_INTERVAL)  # type: ignore[union-attr]
        # Node A is back: whatever B heard meanwhile, it lists A's session again and keeps it.
        await until(lambda: len(rb.all()) == 1, 2 * pgbus.SWEEP_INTERVAL)
        await asyncio.sleep(2 * pgbus.SWEEP_INTERVAL)
        assert [s.address for s in rb.all()] == ["alice@example.com"], "node B forgot node A's session"
    finally:
        await a.detach()
        await b.detach()
