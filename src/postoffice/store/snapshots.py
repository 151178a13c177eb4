"""Derived data kept on disk so that a restart does not recompute it: the per-mailbox SORT/THREAD
rows (servers/imap/sort.py), ``data_dir/cache/sort/<mailbox id>``, and the flag index of large
mailboxes (Store.flag_index), ``data_dir/cache/index/<mailbox id>``.

A snapshot is never the only copy of anything. A missing, stale (other ``key``), damaged or
torn file reads as None and the caller loads from the database as before, so files are
written without fsync and a crash costs nothing but the next load.

Format: one line ``postoffice-snapshot 1 <crc32> <length>``, then ``marshal`` data. marshal
loads 100,000 sort rows in about 0.2 s where the database query and JSON decoding take
1.5 s, and unlike pickle it cannot run code. The files are written and read by the server's
own user only, like the database beside them.
"""

from __future__ import annotations

import logging
import marshal
import os
import threading
import zlib
from pathlib import Path
from typing import Any

from ..cpu import gc_paused

log = logging.getLogger(__name__)

MAGIC = b"postoffice-snapshot 1"


class Snapshots:
    """Snapshot files of one kind (a directory), named by an integer id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, ident: int) -> Path:
        return self.root / str(ident)

    def exists(self, ident: int) -> bool:
        """Whether a snapshot file is there (a stat: cheap enough to ask on the event loop)."""
        return os.path.exists(self.path(ident))

    def read(self, ident: int, key: Any) -> Any:
        """The data saved for ``ident`` under ``key``, or None (absent, other key, damaged)."""
        try:
            raw = self.path(ident).read_bytes()
        except OSError:
            return None
        head, _, body = raw.partition(b"\n")
        parts = head.split(b" ")
        try:
            if b" ".join(parts[:2]) != MAGIC or int(parts[3]) != len(body) or int(parts[2]) != zlib.crc32(body):
                return None
            with gc_paused():  # 100,000 small tuples
                saved_key, data = marshal.loads(body)
        except (IndexError, ValueError, EOFError, TypeError):
            log.warning("snapshot %s is damaged: ignored", self.path(ident))
            return None
        return data if saved_key == key else None

    def write(self, ident: int, key: Any, data: Any) -> None:
        """Replace the snapshot atomically (a reader sees the old file or the new one)."""
        body = marshal.dumps((key, data))
        target = self.path(ident)
        tmp = target.with_name(f".{ident}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(b"%s %d %d\n" % (MAGIC, zlib.crc32(body), len(body)))
                f.write(body)
            os.replace(tmp, target)
        except OSError as exc:  # a full disk only costs the next load
            log.warning("cannot write snapshot %s: %s", target, exc)
            tmp.unlink(missing_ok=True)

    def remove_except(self, keep: set[int]) -> int:
        """Remove the snapshots of ids not in ``keep`` (deleted mailboxes); how many."""
        removed = 0
        try:
            names = os.listdir(self.root)
        except OSError:
            return 0
        for name in names:
            if name.isdigit() and int(name) not in keep:
                (self.root / name).unlink(missing_ok=True)
                removed += 1
        return removed
