"""Review: closing the store while a delivery's body is being written."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from postoffice.store import Store

MESSAGE = b"From: a@example.org\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nHello\r\n"


async def test_close_finishes_a_delivery_whose_body_is_being_written(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data")
    await store.add_domain("example.com")
    account = await store.add_account("alice@example.com", "x")
    real_put = store.blobs.put

    def slow_put(data: bytes) -> str:
        time.sleep(0.3)  # fsync on a busy disk
        return real_put(data)

    store.blobs.put = slow_put  # type: ignore[method-assign]
    delivery = asyncio.ensure_future(store.deliver([(account.id, "INBOX")], MESSAGE))
    await asyncio.sleep(0.05)  # the body write has started
    await asyncio.to_thread(store.close)
    # The caller is answered (not left waiting forever on a job nobody will run) ...
    done, _ = await asyncio.wait([delivery], timeout=2)
    assert done, "deliver() never returns once the store is closed under it"
    # ... and what it was told is the truth.
    again = Store.open(tmp_path / "data")
    try:
        box = await again.get_mailbox(account.id, "INBOX")
        stored = await again.list_messages(box.id)
    finally:
        again.close()
    assert (delivery.exception() is None) == (len(stored) == 1)
