"""store/spool.py: a message as header + spooled body, and the spool emptied at start-up."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from postoffice.store import Store
from postoffice.store.spool import HeaderTooLarge, MessageSource, Spool


def test_writer_keeps_the_header_and_spools_the_body(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    writer = spool.writer(max_header=1000, inline=10)
    message = b"Subject: a\r\nX: b\r\n\r\n" + b"body line\r\n" * 500
    for at in range(0, len(message), 7):  # the header end arrives split over pieces
        writer.feed(message[at:at + 7])
        if writer.pending_write:
            writer.flush()
    source = writer.finish()
    assert source.header == b"Subject: a\r\nX: b\r\n\r\n" and not source.in_memory
    assert source.read() == message and source.size == len(message)
    assert source.prepend(b"Received: x\r\n").read() == b"Received: x\r\n" + message
    assert source.replace_header(b"Subject: c\r\n\r\n").read() == b"Subject: c\r\n\r\n" + message[20:]
    writer.discard()
    assert list(spool.root.iterdir()) == []


def test_small_messages_stay_in_memory_and_an_empty_header_is_found(tmp_path: Path) -> None:
    writer = Spool(tmp_path).writer(max_header=100)
    writer.feed(b"\r\nno header at all\r\n")
    source = writer.finish()
    assert source.in_memory and source.header_block() == b"\r\n" and not writer.spooled


def test_an_endless_header_is_refused(tmp_path: Path) -> None:
    writer = Spool(tmp_path).writer(max_header=100)
    writer.feed(b"X-A: " + b"a" * 60 + b"\r\n")
    with pytest.raises(HeaderTooLarge):
        writer.feed(b"\tb" * 30)


def test_the_spool_is_emptied_when_the_store_opens(tmp_path: Path) -> None:
    async def run() -> None:
        store = Store.open(tmp_path / "data")
        store.close()
        left = tmp_path / "data" / "spool" / "999999999.abc"  # a message being received at a kill -9
        left.write_bytes(b"partial")
        receiving = tmp_path / "data" / "spool" / f"{os.getpid()}.def"  # another worker, receiving now
        receiving.write_bytes(b"partial")
        store = Store.open(tmp_path / "data")
        store.close()
        assert not left.exists()
        assert receiving.exists(), "a live process's spool file was removed"
    asyncio.run(run())
