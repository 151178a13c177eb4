"""Issue 14: several processes (a node's workers, several nodes on one shared directory) share
the blob directory. The collector of one and a delivery re-using the same body in another agree
through the file system alone: a body a delivery counts on is never unlinked, whichever of the
collector's steps the delivery's falls between. Each test stands the delivery in for "another
process" by running it at that step (no lock in memory can order them)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from postoffice.store import blobs as blobs_mod
from postoffice.store.blobs import BlobStore

DATA = b"Subject: same body\r\n\r\nhello\r\n"


def old_body(tmp_path: Path) -> tuple[BlobStore, str]:
    collector = BlobStore(tmp_path / "blobs")
    blob_id = collector.put(DATA)
    old = time.time() - 7200
    os.utime(collector.path(blob_id), (old, old))  # an old, unreferenced body
    return collector, blob_id


@pytest.mark.parametrize("step", ["rename", "unlink"])
def test_a_delivery_reusing_a_body_as_the_collector_removes_it_keeps_it(
        tmp_path: Path, monkeypatch: Any, step: str) -> None:
    collector, blob_id = old_body(tmp_path)
    delivery = BlobStore(tmp_path / "blobs")  # another process's view of the same directory
    real = {name: getattr(os, name) for name in ("rename", "unlink")}
    delivered: list[str] = []

    def interleaved(name: str) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            if name == step and not delivered:
                delivered.append(delivery.put(DATA))  # the other process re-uses the body right now
            return real[name](*args, **kw)
        return call

    monkeypatch.setattr(blobs_mod.os, "rename", interleaved("rename"))
    monkeypatch.setattr(blobs_mod.os, "unlink", interleaved("unlink"))
    collector.remove(blob_id, older_than=time.time() - 3600)
    monkeypatch.undo()
    assert delivered == [blob_id]
    # put() returned: the delivery commits a row naming this file, so it must be there.
    assert delivery.get(blob_id) == DATA


def test_an_old_body_nobody_reuses_is_removed(tmp_path: Path) -> None:
    collector, blob_id = old_body(tmp_path)
    assert collector.remove(blob_id, older_than=time.time() - 3600)
    assert not collector.exists(blob_id)
    assert list(collector.tmp.iterdir()) == []


def test_temporary_files_of_a_write_in_progress_elsewhere_are_kept(tmp_path: Path) -> None:
    """A node starting (or collecting) must not delete another node's body being written."""
    store = BlobStore(tmp_path / "blobs")
    writing = store.tmp / "abc.123.456"
    writing.write_bytes(b"half a message")
    crashed = store.tmp / "def.789.012"
    crashed.write_bytes(b"left by a kill -9")
    old = time.time() - 7200
    os.utime(crashed, (old, old))
    host = socket.gethostname()
    mine = Path(blobs_mod.temp_path(str(store.tmp), "ghi"))  # a live process of this host writing
    mine.write_bytes(b"being written")
    killed = store.tmp / f"jkl.999999999.1.{host}"  # a process of this host that is gone
    killed.write_bytes(b"left by a kill -9 a moment ago")
    assert BlobStore(tmp_path / "blobs").clean_tmp() == 2
    assert writing.exists() and mine.exists()
    assert not crashed.exists() and not killed.exists()
