"""Review: the garbage collector must never delete a body a delivery just re-used."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from postoffice.store.blobs import BlobStore


def test_remove_racing_put_of_the_same_body_never_loses_the_file(tmp_path: Path, monkeypatch) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = b"Subject: same body\r\n\r\nhello\r\n"
    blob_id = blobs.put(data)
    old = time.time() - 7200
    import os
    os.utime(blobs.path(blob_id), (old, old))  # an old, unreferenced body

    from postoffice.store import blobs as blobs_mod

    real_unlink = os.unlink
    put_result: list[str] = []
    threads: list[threading.Thread] = []

    def unlink(path, *a, **kw):
        # The collector has looked at the mtime (old) and is about to unlink: a delivery of the
        # same body runs put() right now in another thread.
        t = threading.Thread(target=lambda: put_result.append(blobs.put(data)))
        threads.append(t)
        t.start()
        t.join(0.5)
        real_unlink(path, *a, **kw)

    monkeypatch.setattr(blobs_mod.os, "unlink", unlink)
    blobs.remove(blob_id, older_than=time.time() - 3600)
    for t in threads:
        t.join(5)
    monkeypatch.undo()
    assert put_result == [blob_id]
    # put() returned: the delivery will commit a row naming this file, so it must exist.
    assert blobs.path(blob_id).exists()
    assert blobs.get(blob_id) == data
