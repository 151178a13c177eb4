"""Review: an entry whose attempt outlives its claim must not be delivered twice at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from postoffice.outbound.worker import CLAIM_LEASE, QueueWorker
from tests.outbound.worker_support import Clock
from tests.support.server import make_config

MSG = b"From: a@local.test\r\nTo: b@remote.test\r\nSubject: hi\r\n\r\nhello\r\n"


async def test_an_entry_still_in_flight_is_not_claimed_again_after_its_lease(store: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path / "cfg", outbound={"enabled": True, "mta_sts": False, "dns": "127.0.0.1:53"})
    clock = Clock()
    worker = QueueWorker(store, config, resolver=object(), clock=clock)  # type: ignore[arg-type]
    release = asyncio.Event()
    calls: list[int] = []

    async def slow_process(entry: dict[str, Any]) -> None:  # a tarpitting remote: a very long attempt
        calls.append(entry["id"])
        await release.wait()

    worker.process = slow_process  # type: ignore[method-assign]
    await store.enqueue("a@local.test", ["b@remote.test"], MSG)
    await worker._claim_and_start()
    await asyncio.sleep(0)
    assert len(calls) == 1
    clock.advance(CLAIM_LEASE + 60)  # the attempt is still running when its claim lapses
    await worker._claim_and_start()
    await asyncio.sleep(0)
    assert len(calls) == 1, "the same entry is being delivered twice in parallel"
    release.set()
    await asyncio.gather(*worker._inflight.values())


async def test_stop_waits_for_an_accepted_transaction_to_be_recorded(store: Any, tmp_path: Path,
                                                                     monkeypatch: Any) -> None:
    """Shutdown during DATA: the remote accepts just after the stop grace; the acceptance must
    still be recorded before stop() returns (the store closes next), or the message goes out again
    after the restart."""
    import postoffice.outbound.worker as worker_mod
    from postoffice.outbound.client import RecipientResult

    async def slow_remote(host, port, mail_from, rcpts, raw, **kw):
        await asyncio.sleep(0.5)  # waiting for the reply to the final dot
        return [RecipientResult(r, True, False, 250, "2.0.0", "250 2.0.0 queued", host, "done") for r in rcpts]

    monkeypatch.setattr(worker_mod, "deliver_to_host", slow_remote)
    monkeypatch.setattr(worker_mod, "STOP_GRACE", 0.05)
    config = make_config(tmp_path / "cfg", outbound={"enabled": True, "mta_sts": False,
                                                     "smarthost": "127.0.0.1:2525"})
    worker = QueueWorker(store, config, resolver=object(), clock=Clock(), poll_interval=0.05)  # type: ignore[arg-type]
    queue_id = await store.enqueue("a@local.test", ["b@remote.test"], MSG)
    worker.start()
    for _ in range(100):
        if worker._inflight:
            break
        await asyncio.sleep(0.01)
    assert worker._inflight
    await worker.stop()
    entry = await store.queue_get(queue_id)
    statuses = [r["status"] for r in entry["recipients"]] if entry else ["(entry gone: finished)"]
    assert statuses != ["pending"], "the remote accepted the message but the queue will send it again"
