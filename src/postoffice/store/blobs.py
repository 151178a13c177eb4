"""Message bodies as immutable, content-addressed files under ``data_dir/blobs``.

A body is written once: to a temporary file, fsynced, renamed to its sha256 name, and the
directory fsynced, so after `put` returns the file is complete and durable under its final
name, or absent. The database row pointing at it is committed only afterwards, so the index
never names a body that is not fully on disk. Identical bodies share one file.

Unreferenced files are removed by `collect_garbage` only when they are older than a grace period:
a delivery may have just written (or re-used) a file whose row is not committed yet.

Several processes share the directory (the workers of a node, and with PostgreSQL several nodes
on a shared file system), so the collector and a delivery re-using an old file agree through
the file system alone, never through a lock in memory:

- re-use (`_refresh`): open the file, set its mtime to now, then check that the name still
  leads to that same file; if not (the collector moved it away meanwhile), write a new copy;
- removal (`remove`): rename the file aside first, then look at its mtime again; a delivery that
  refreshed it before the rename shows up as a fresh mtime, and the file goes back; one that
  comes after the rename finds no file and writes its own.

Either the delivery's check happens before the rename (and the collector sees its mtime) or
after it (and the delivery sees the file gone): no file a delivery counts on is ever unlinked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Temporary files younger than this may be a write in progress (in any process sharing the directory).
TMP_GRACE_SECONDS = 3600.0
_HOST = socket.gethostname()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._tmp = str(self.tmp)
        self._dirs: dict[str, str] = {}  # shard -> directory path, known to exist

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
        if _refresh(final):  # already stored: a fresh mtime keeps the collector away while we commit
            return blob_id
        tmp = temp_path(self._tmp, blob_id)
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
            if _refresh(final):
                os.unlink(tmp)
                return
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
        """Unlink the file if its mtime is before ``older_than`` (see the module docstring for
        why it is renamed aside first); False when it is fresh or gone."""
        path = str(self.path(blob_id))
        aside = temp_path(self._tmp, "gc-" + blob_id)
        try:
            if os.stat(path).st_mtime >= older_than:
                return False
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        if os.stat(aside).st_mtime >= older_than:  # a delivery re-used it just before the rename
            os.rename(aside, path)
            _fsync_dir(path.rpartition("/")[0])
            return False
        os.unlink(aside)
        return True

    def clean_tmp(self, older_than: float | None = None) -> int:
        """Remove the temporary files nobody is writing any more: those of processes of this
        host that are gone (a crash mid-write), and any not touched since ``older_than``
        (default: an hour ago; another node's, whose processes this host cannot see). Returns
        how many were removed."""
        cutoff = time.time() - TMP_GRACE_SECONDS if older_than is None else older_than
        removed = 0
        for f in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if _writer_gone(f.name) or f.stat().st_mtime < cutoff:
                    f.unlink()
                    removed += 1
        return removed


def temp_path(tmp_dir: str, name: str) -> str:
    """A new temporary file's path: ``<name>.<pid>.<ns>.<host>``, so `clean_tmp` can tell
    whether its writer still runs."""
    return f"{tmp_dir}/{name}.{os.getpid()}.{time.monotonic_ns()}.{_HOST}"


def _writer_gone(name: str) -> bool:
    parts = name.split(".", 3)
    return len(parts) == 4 and parts[3] == _HOST and parts[1].isdigit() and not process_alive(int(parts[1]))


def process_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _refresh(path: str) -> bool:
    """Set the mtime of an existing file to now; True if ``path`` still names that file
    afterwards (False: absent, or moved away by the collector meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        os.utime(fd)
        mine = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev)


@contextlib.contextmanager
def _removed_on_failure(tmp: str) -> Iterator[None]:
    """Leave no partial or orphaned temporary file behind when storing fails."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
