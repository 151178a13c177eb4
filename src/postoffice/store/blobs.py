"""Message bodies as immutable, content-addressed files under ``data_dir/blobs``.

A body is written once: to a temporary file, fsynced, renamed to its sha256 name, and the
directory fsynced, so after `put` returns the file is complete and durable under its final
name, or absent. The database row pointing at it is committed only afterwards, so the index
never names a body that is not fully on disk. Identical bodies share one file.

Unreferenced files are removed by `collect_garbage` only when they are older than a grace period:
a delivery may have just written (or re-used) a file whose row is not committed yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._tmp = str(self.tmp)
        self._dirs: dict[str, str] = {}  # shard -> directory path, known to exist
        # Serialises put()'s "already stored: refresh the mtime" against remove()'s "old: unlink",
        # so the collector can never unlink a file a delivery has just decided to re-use.
        self._reuse = threading.Lock()

    @staticmethod
    def blob_id(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def path(self, blob_id: str) -> Path:
        return self.root / blob_id[:2] / blob_id[2:]

    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its id. Raises OSError (ENOSPC...) on failure,
        leaving no partial file behind."""
        # Plain str paths and as few system calls as possible: this runs once per message, and
        # every call releases the GIL (a thread switch when other threads want it).
        blob_id = hashlib.sha256(data).hexdigest()
        shard = blob_id[:2]
        directory = self._dirs.get(shard)
        if directory is None:
            directory = self._dir(shard)
        final = f"{directory}/{blob_id[2:]}"
        try:
            with self._reuse:
                os.utime(final)  # already stored: a fresh mtime keeps the garbage collector away while we commit
            return blob_id
        except FileNotFoundError:
            pass
        tmp = f"{self._tmp}/{blob_id}.{os.getpid()}.{time.monotonic_ns()}"
        with _removed_on_failure(tmp):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                written = os.write(fd, data)
                if written < len(data):
                    view = memoryview(data)[written:]
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            directory = self._move_into(tmp, shard, final)
        _fsync_dir(directory)
        return blob_id

    def adopt(self, tmp: str, blob_id: str) -> None:
        """Move a complete, fsynced file written elsewhere (a worker process, see
        store/prepare.py) into place as ``blob_id``; if that body is already stored, refresh
        its mtime (as `put` does) and drop the copy. Raises OSError, removing ``tmp``."""
        shard = blob_id[:2]
        directory = self._dirs.get(shard) or self._dir(shard)
        final = f"{directory}/{blob_id[2:]}"
        with _removed_on_failure(tmp):
            try:
                with self._reuse:
                    os.utime(final)
                os.unlink(tmp)
                return
            except FileNotFoundError:
                pass
            directory = self._move_into(tmp, shard, final)
        _fsync_dir(directory)

    def _move_into(self, tmp: str, shard: str, final: str) -> str:
        """Rename ``tmp`` to ``final`` in ``shard``'s directory, making the directory again if it
        was removed behind our back; returns the directory (for the caller's fsync)."""
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            self._dirs.pop(shard, None)
            directory = self._dir(shard)
            os.rename(tmp, final)
            return directory
        return final.rpartition("/")[0]

    def _dir(self, shard: str) -> str:
        path = self.root / shard
        if not path.is_dir():
            path.mkdir(exist_ok=True)
            _fsync_dir(self.root)  # the new directory entry itself must survive a power cut
        directory = str(path)
        self._dirs[shard] = directory
        return directory

    def get(self, blob_id: str) -> bytes:
        return self.path(blob_id).read_bytes()

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).exists()

    def all_ids(self) -> Iterable[str]:
        for sub in self.root.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                for f in sub.iterdir():
                    yield sub.name + f.name

    def remove(self, blob_id: str, older_than: float) -> bool:
        path = self.path(blob_id)
        try:
            with self._reuse:
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    return True
        except FileNotFoundError:
            pass
        return False

    def clean_tmp(self) -> None:
        """Temporary files left by a crash mid-write are never referenced: drop them."""
        for f in self.tmp.iterdir():
            f.unlink(missing_ok=True)


@contextlib.contextmanager
def _removed_on_failure(tmp: str) -> Iterator[None]:
    """Leave no partial or orphaned temporary file behind when storing fails."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
