"""Several queue runners on one queue (issue 14: one per node on a shared PostgreSQL; the same
code on a shared SQLite file): no recipient is delivered twice, a killed runner's entries are
taken over once its lease lapses, and a lease is renewed while its attempt runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import postoffice.outbound.worker as worker_mod
from postoffice.outbound.worker import CLAIM_LEASE, QueueWorker
from postoffice.store import Store
from tests.outbound.worker_support import Clock, free_port, start_remote
from tests.support.pg import BACKENDS, database_for
from tests.support.server import make_config

MSG = b"From: a@local.test\r\nTo: b@remote.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """One database both nodes use: an SQLite file, or a fresh PostgreSQL schema."""
    return database_for(request.param, request) or tmp_path / "shared.db"


@pytest.fixture
async def nodes(database: Path | str, tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Two stores on one database and one blob directory, as two nodes have them."""
    stores = [Store.open(tmp_path / "data", database) for _ in range(2)]
    yield stores
    for store in stores:
        store.close()


def runner(store: Store, tmp_path: Path, port: int, clock: Any = time.time, **kw: Any) -> QueueWorker:
    config = make_config(tmp_path / "cfg", outbound={"enabled": True, "mta_sts": False, "concurrency": 4,
                                                     "smarthost": f"127.0.0.1:{port}"})
    return QueueWorker(store, config, resolver=object(), clock=clock, poll_interval=0.05,  # type: ignore[arg-type]
                       sole_runner=False, **kw)


async def drained(store: Store, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while await store.queue_entries():
        assert time.monotonic() < deadline, "the queue did not drain"
        await asyncio.sleep(0.05)


async def test_two_runners_never_deliver_a_recipient_twice(nodes: list[Store], tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    controller, remote = start_remote("127.0.0.1", port)
    rcpts = [f"r{n}@remote.test" for n in range(120)]
    for k in range(0, len(rcpts), 2):
        await nodes[k % 2].enqueue("a@local.test", rcpts[k:k + 2], MSG)
    runners = [runner(store, tmp_path / f"n{i}", port) for i, store in enumerate(nodes)]
    try:
        for r in runners:
            r.start()
        await drained(nodes[0])
    finally:
        for r in runners:
            await r.stop()
        controller.stop()
    got = remote.recipients()
    assert sorted(got) == sorted(rcpts), f"{len(got) - len(set(got))} recipients delivered twice"


async def test_a_killed_runners_entries_are_delivered_by_another_after_the_lease(
        nodes: list[Store], tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    controller, remote = start_remote("127.0.0.1", port)
    clock = Clock()
    await nodes[0].enqueue("a@local.test", ["x@remote.test"], MSG)
    # Node A claims the entry and dies mid-delivery: its claim is never finished nor released.
    assert len(await nodes[0].queue_claim(clock(), CLAIM_LEASE, 10)) == 1
    b = runner(nodes[1], tmp_path / "b", port, clock)
    try:
        b.start()  # not the only runner: a starting node leaves the other nodes' claims alone
        await asyncio.sleep(0.5)
        assert remote.recipients() == [], "a claim of a live node was taken"
        clock.advance(CLAIM_LEASE + 1)
        b.wake()
        await drained(nodes[1], 10)
    finally:
        await b.stop()
        controller.stop()
    assert remote.recipients() == ["x@remote.test"]


async def test_a_claim_is_renewed_while_its_attempt_runs(nodes: list[Store], tmp_path: Path,
                                                         monkeypatch: Any) -> None:
    monkeypatch.setattr(worker_mod, "RENEW_INTERVAL", 0.05)
    clock = Clock()
    a = runner(nodes[0], tmp_path / "a", 9, clock)
    release = asyncio.Event()
    calls: list[int] = []

    async def slow_process(entry: dict[str, Any]) -> None:  # a tarpitting remote
        calls.append(entry["id"])
        await release.wait()

    a.process = slow_process  # type: ignore[method-assign]
    await nodes[0].enqueue("a@local.test", ["y@remote.test"], MSG)
    a.start()
    try:
        for _ in range(200):
            if calls:
                break
            await asyncio.sleep(0.01)
        assert calls
        clock.advance(CLAIM_LEASE - 10)
        await asyncio.sleep(0.3)  # a renewal runs: the lease now ends CLAIM_LEASE from here
        clock.advance(20)  # past the first lease
        assert await nodes[1].queue_claim(clock(), CLAIM_LEASE, 10) == [], "a running attempt's claim lapsed"
    finally:
        release.set()
        await a.stop()
