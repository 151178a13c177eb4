"""Connection counts shared by the worker processes: ``limits.max_connections_per_ip`` and
``limits.max_connections`` hold for the server as a whole, not per worker.

The supervisor creates one shared memory segment (a memfd) and hands its descriptor to every
worker; no message is sent per connection. Layout, in unsigned 32-bit cells:

* a 32-byte random key (the hash key below), then
* one row per worker, which only that worker writes: cell 0 its open connections, then two
  tables of ``BUCKETS`` counters indexed by two keyed hashes of the client address.

A worker knows its own connections per address exactly (`listener.ConnectionLimiter`). The
other workers' count for an address is read from their rows as a count-min sketch: in each of
the two tables, the sum over the other workers of the address's bucket; the smaller of the two
sums. It is exact unless another address shares the bucket in *both* tables (then it can only
count too many, never too few); the key is random per start, so nobody can aim for that.

Workers do not lock each other out: two workers admitting the same address at the same instant
may together go one connection past the limit (with N workers, N-1). The limits are a backstop
against one host taking every slot, not an exact quota. A worker zeroes its row when it starts,
and the supervisor when a worker exits, so a crashed worker's connections are not counted on.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import secrets

#: Buckets per hash table (a power of two). Pages are only allocated where counters are used.
BUCKETS = 1 << 16
KEY_BYTES = 32
_CELL = 4
_ROW_CELLS = 1 + 2 * BUCKETS


def segment_size(workers: int) -> int:
    return KEY_BYTES + workers * _ROW_CELLS * _CELL


def create(workers: int) -> int:
    """The supervisor's side: a new segment for ``workers`` workers; returns its descriptor
    (inheritable: give it to the workers with ``pass_fds``)."""
    fd = os.memfd_create("postoffice-connections", 0)
    os.ftruncate(fd, segment_size(workers))
    os.pwrite(fd, secrets.token_bytes(KEY_BYTES), 0)
    os.set_inheritable(fd, True)
    return fd


class SharedCounts:
    """One process's view of the segment; ``index`` is this worker's row (None: the supervisor,
    which only clears rows)."""

    def __init__(self, fd: int, workers: int, index: int | None) -> None:
        self.workers = workers
        self.index = index
        self._map = mmap.mmap(fd, segment_size(workers))
        self._key = bytes(self._map[:KEY_BYTES])
        self._cells = memoryview(self._map)[KEY_BYTES:].cast("I")
        self._mine = index * _ROW_CELLS if index is not None else -1
        if index is not None:
            self.clear(index)

    def clear(self, index: int) -> None:
        """Forget worker ``index``'s connections (it is starting, or it exited)."""
        start = index * _ROW_CELLS
        self._cells[start:start + _ROW_CELLS] = memoryview(bytes(_ROW_CELLS * _CELL)).cast("I")

    def _buckets(self, ip: str) -> tuple[int, int]:
        digest = hashlib.blake2b(ip.encode(), digest_size=8, key=self._key).digest()
        return 1 + int.from_bytes(digest[:4], "little") % BUCKETS, \
            1 + BUCKETS + int.from_bytes(digest[4:], "little") % BUCKETS

    def others(self, ip: str) -> tuple[int, int]:
        """(connections from ``ip``, connections in all) on the other workers."""
        cells = self._cells
        first, second = self._buckets(ip)
        rows = [w * _ROW_CELLS for w in range(self.workers) if w != self.index]
        from_ip = min(sum(cells[r + first] for r in rows), sum(cells[r + second] for r in rows))
        return from_ip, sum(cells[r] for r in rows)

    def add(self, ip: str, delta: int) -> None:
        """This worker opened (1) or closed (-1) a connection from ``ip``."""
        cells, mine = self._cells, self._mine
        first, second = self._buckets(ip)
        cells[mine] += delta
        cells[mine + first] += delta
        cells[mine + second] += delta

    def close(self) -> None:
        self._cells.release()
        self._map.close()
