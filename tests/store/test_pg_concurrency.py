"""Two stores on one PostgreSQL database, as two nodes have them (issue 14): what must be
decided inside the database is, whoever writes at the same moment.

- UIDs and MODSEQs strictly increase per mailbox, none handed out twice (RFC 9051 §2.3.1.1,
  RFC 7162 §3.1), with writers in both stores at once;
- each store announces its commits in commit order (a session never hears UID 7 before 6);
- \\Recent is claimed by exactly one session (RFC 3501 §2.3.2);
- two nodes starting at once on an empty database migrate it once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postoffice.services.events import EventBus
from postoffice.store import Store, migrations
from postoffice.store.records import SEEN, MessagesAdded
from tests.support.pg import fresh_url

WRITERS = 4
EACH = 15


@pytest.fixture
async def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, Store]]:
    url = fresh_url(request.getfixturevalue("postgres_database"))
    loop = asyncio.get_running_loop()
    opened = []
    for name in ("a", "b"):
        bus = EventBus(loop)
        store = Store.open(tmp_path / name, url, on_commit=bus.publish_threadsafe)
        store.bus = bus  # type: ignore[attr-defined]
        opened.append(store)
    yield opened[0], opened[1]
    for store in opened:
        store.close()


def raw(n: int) -> bytes:
    return b"From: a@example.org\r\nSubject: %d\r\n\r\nbody %d\r\n" % (n, n)


async def test_writers_on_two_nodes_get_unique_increasing_uids(nodes: tuple[Store, Store]) -> None:
    a, b = nodes
    await a.add_domain("example.com")
    account = await a.add_account("alice@example.com", "x")
    inbox = await b.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    heard = [store.bus.subscribe(mailbox_id=inbox.id) for store in nodes]  # type: ignore[attr-defined]

    async def writer(store: Store, number: int) -> list[int]:
        uids = []
        for i in range(EACH):
            if i % 2:
                uids.extend((await store.append(account.id, inbox.id, [(raw(number * 100 + i), 0, "", 0.0)]))[1])
            else:
                uids.append((await store.deliver([(account.id, "INBOX")], raw(number * 100 + i)))[0].uid)
        return uids

    results = await asyncio.gather(*(writer(nodes[n % 2], n) for n in range(WRITERS)))
    for uids in results:
        assert uids == sorted(uids)  # each writer's UIDs increase
    everything = sorted(uid for uids in results for uid in uids)
    assert everything == list(range(1, WRITERS * EACH + 1))  # none twice, none skipped
    box = await a.get_mailbox_by_id(inbox.id)
    assert box is not None and box.uidnext == WRITERS * EACH + 1
    modseqs = [m.modseq for m in await b.list_messages(inbox.id)]
    assert len(set(modseqs)) == len(modseqs) and box.highestmodseq == max(modseqs)
    await asyncio.sleep(0.2)  # the last commits' events are handed to the loop from the database threads
    for subscription in heard:  # each node announces its own commits in commit order
        added = [(e.uids[0], e.modseq) for e in subscription.pending() if isinstance(e, MessagesAdded)]
        assert added == sorted(added) and len(added) == WRITERS * EACH // 2


async def test_flag_changes_on_two_nodes_take_distinct_modseqs(nodes: tuple[Store, Store]) -> None:
    a, b = nodes
    await a.add_domain("example.com")
    account = await a.add_account("alice@example.com", "x")
    for n in range(10):
        await a.deliver([(account.id, "INBOX")], raw(n))
    inbox = await a.get_mailbox(account.id, "INBOX")
    assert inbox is not None

    async def toggle(store: Store, uid: int) -> list[int]:
        seqs = []
        for mode in ("add", "remove") * 5:
            changed, _ = await store.store_flags(account.id, inbox.id, [uid], mode, SEEN, [])
            seqs.extend(modseq for _, _, _, modseq in changed)
        return seqs

    results = await asyncio.gather(*(toggle(nodes[uid % 2], uid) for uid in range(1, 11)))
    seqs = [s for r in results for s in r]
    assert len(seqs) == 100 and len(set(seqs)) == 100  # every change its own MODSEQ
    box = await b.get_mailbox_by_id(inbox.id)
    assert box is not None and box.highestmodseq == max(seqs)


async def test_recent_is_claimed_once_across_nodes(nodes: tuple[Store, Store]) -> None:
    a, b = nodes
    await a.add_domain("example.com")
    account = await a.add_account("alice@example.com", "x")
    inbox = await a.get_mailbox(account.id, "INBOX")
    assert inbox is not None

    async def claim(store: Store, upto: int) -> set[int]:
        first = await store.claim_recent(inbox.id, upto)
        return set(range(first, upto))

    claims = await asyncio.gather(*(claim(nodes[n % 2], 2 + n // 3) for n in range(60)))
    claimed = [uid for c in claims for uid in c]
    assert sorted(claimed) == list(range(1, 21))  # each UID claimed by exactly one session


def test_two_nodes_starting_at_once_migrate_once(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = fresh_url(request.getfixturevalue("postgres_database"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        stores = list(pool.map(lambda name: Store.open(tmp_path / name, url), ("a", "b")))
    try:
        versions = stores[0].db.read_sync(lambda tx: [r[0] for r in tx.all(
            "SELECT version FROM schema_migrations ORDER BY version")])
        assert versions == list(range(1, len(migrations.MIGRATIONS) + 1))
    finally:
        for store in stores:
            store.close()


def test_commits_are_announced_in_ticket_order() -> None:
    """A job that took its ticket later (it waited for the other's row locks) but finished
    first is announced after the earlier one; a job whose commit failed holds nobody up."""
    from postoffice.store.db import Tx, _Job
    from postoffice.store.pg import _CommitOrder

    announced: list[str] = []
    order = _CommitOrder(on_commit=announced.extend)

    def committed(name: str) -> tuple[_Job, str, Tx]:
        tx = Tx(None)  # type: ignore[arg-type]
        tx.emit(name)
        return _Job(lambda tx: None, write=True), name, tx

    first, failed, second, third = (order.ticket() for _ in range(4))
    late = committed("third")
    order.finish(third, late)
    early = committed("second")
    order.finish(second, early)
    assert announced == [] and not late[0].future.done()  # waiting for the first
    order.finish(first, committed("first"))
    assert announced == ["first"]  # the failed one holds the rest back until it is finished
    order.finish(failed, None)
    assert announced == ["first", "second", "third"]
    assert late[0].future.result() == "third"
