"""The PostgreSQL backend of the store (issue 14): the same jobs as store.db, on PostgreSQL.

Callers do not change: a job is still ``fn(Tx)``, run synchronously, submitted from the event
loop and awaited through a future. The job model is kept rather than psycopg's async API
because every store function is written as a synchronous ``fn(Tx)`` (also run by the CLI,
migrations and worker threads) and the SQLite backend's group commit carries over as it is.

- Reads run on ``threads`` threads, each borrowing a connection from a psycopg_pool
  ``ConnectionPool``, with autocommit (each statement sees the latest commit);
  `PgTx.snapshot` opens a REPEATABLE READ transaction for a job that needs one moment.
- Writes are group-committed by one writer thread per process, as with SQLite: it takes every
  write job queued, runs each in a SAVEPOINT of one transaction and COMMITs once. Many
  sessions delivering to one mailbox would otherwise queue one by one on its row lock, each
  waiting for the previous commit's WAL flush (measured: 270 msg/s against 500 on SQLite).
  ``synchronous_commit`` stays on; a batch of only ``durable=False`` jobs commits with it off
  (a PostgreSQL crash may undo the last few flag changes, never corrupt anything).

Concurrency with other processes and nodes is decided inside the database, never in memory:
UIDs and MODSEQs come from ``UPDATE mailboxes ... RETURNING`` (the row stays locked until the
commit), other read-then-write jobs lock what they read with ``SELECT ... FOR UPDATE``
(`Tx.for_update`). A job that loses a deadlock against another node is run again alone.

Commits are announced in commit order: a job takes a ticket just before its COMMIT, while it
still holds its row locks, and events (``on_commit``) and results are handed out in ticket
order (`_CommitOrder`): a session never hears of UID 7 before UID 6.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import functools
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg.types.string import StrDumperUnknown

from .db import JobRunner, Tx, _Job, _set_exception, _set_result
from .dialect import POSTGRES, pg_statement

__all__ = ["PgDatabase", "PgTx"]

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Threads running jobs, and so the most connections one process opens.
THREADS = 8
#: Write jobs committed together at most.
_MAX_BATCH = 256
#: Times a job is run again after losing a deadlock or serialisation conflict.
_RETRIES = 5
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


class Row(tuple):  # type: ignore[type-arg]
    """A result row: ``row[0]``, ``row["name"]`` and ``dict(row)``, as sqlite3.Row allows."""

    __slots__ = ()
    _names: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        return self._names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_names": names})


def _rows_by_name(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    description = cursor.description
    if description is None:
        return tuple
    return _row_class(tuple(column.name for column in description))


class _NumericAsNumber(Loader):
    """``sum()`` of a BIGINT column is NUMERIC in PostgreSQL; the store wants the int SQLite
    gives (no column of the schema is NUMERIC itself)."""

    def load(self, data: Any) -> Any:
        text = bytes(data)
        try:
            return int(text)
        except ValueError:
            return float(text)


class _BoolAsInteger(Dumper):
    """The schema's switches are integer columns (0/1, as in SQLite), and callers pass Python
    booleans for them, which SQLite stores as 1 and 0."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _TextWithoutNul(StrDumperUnknown):
    """PostgreSQL's text cannot hold NUL, SQLite's can, and NULs do arrive: a remote server's
    garbage reply kept as a recipient's last error, a header field of a broken message. They
    are stored as U+FFFD, what a decoder shows for a character it cannot read."""

    def dump(self, obj: Any) -> Any:
        if "\x00" in obj:
            obj = obj.replace("\x00", "\ufffd")
        return super().dump(obj)


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("numeric", _NumericAsNumber)
    conn.adapters.register_dumper(bool, _BoolAsInteger)
    conn.adapters.register_dumper(str, _TextWithoutNul)
    conn.execute("SET synchronous_commit = on")


class PgTx(Tx):
    """`Tx` over a psycopg connection: the same SQL text (``?`` placeholders), rows by index
    or name."""

    __slots__ = ()
    dialect = POSTGRES

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.conn.execute(pg_statement(sql), params)

    def executemany(self, sql: str, rows: Any) -> Any:
        cursor = self.conn.cursor()
        cursor.executemany(pg_statement(sql), rows)
        return cursor

    def one(self, sql: str, params: Any = ()) -> Any:
        return self.conn.execute(pg_statement(sql), params).fetchone()

    def all(self, sql: str, params: Any = ()) -> list[Any]:
        return self.conn.execute(pg_statement(sql), params).fetchall()

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.conn.execute(pg_statement(sql), params).fetchone()
        return None if row is None else row[0]

    def tuples(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor(row_factory=tuple_row) as cursor:
            return cursor.execute(pg_statement(sql), params).fetchall()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            yield  # a write job: its own transaction already
            return
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")


class _CommitOrder:
    """Hands out what committed jobs produced in the order of their tickets (module docstring)."""

    def __init__(self, on_commit: Callable[[list[Any]], None] | None) -> None:
        self.on_commit = on_commit
        self._lock = threading.Lock()
        self._issued = 0
        self._next = 0
        self._waiting: dict[int, tuple[_Job, Any, Tx] | None] = {}

    def ticket(self) -> int:
        with self._lock:
            self._issued += 1
            return self._issued - 1

    def finish(self, ticket: int, done: tuple[_Job, Any, Tx] | None) -> None:
        """``done`` (job, result, tx) committed under ``ticket``; None: it did not commit."""
        with self._lock:
            self._waiting[ticket] = done
            while self._next in self._waiting:
                item = self._waiting.pop(self._next)
                self._next += 1
                if item is not None:
                    self._announce(*item)

    def _announce(self, job: _Job, result: Any, tx: Tx) -> None:
        if tx.events and self.on_commit is not None:
            try:
                self.on_commit(tx.events)
            except Exception:  # noqa: BLE001 - committed is committed: the caller must hear it
                log.exception("on_commit listener failed")
        for callback in tx.after_commit:
            try:
                callback()
            except Exception:  # noqa: BLE001 - cleanup must not fail the write
                log.exception("after-commit callback failed")
        _set_result(job.future, result)


class PgDatabase(JobRunner):
    """Reads on a pool of threads, writes group-committed by one thread (module docstring)."""

    dialect = POSTGRES

    def __init__(self, url: str, on_commit: Callable[[list[Any]], None] | None = None,
                 threads: int = THREADS) -> None:
        self.url = url
        self.on_commit = on_commit
        self._order = _CommitOrder(on_commit)
        self._pool = psycopg_pool.ConnectionPool(url, min_size=1, max_size=threads + 1, open=False,
                                                 configure=_configure, name="postoffice",
                                                 kwargs={"autocommit": True, "row_factory": _rows_by_name})
        try:
            self._pool.open(wait=True, timeout=15)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise ConnectionError(f"cannot connect to the database {_redacted(url)}: {exc}") from None
        self._readers = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="postoffice-pg")
        self._writes: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="postoffice-pg-writer", daemon=True)
        self._writer.start()
        self._closed = False

    def submit(self, fn: Callable[[Tx], T], *, write: bool, durable: bool = True,
               future: concurrent.futures.Future[T] | None = None) -> concurrent.futures.Future[T]:
        job = _Job(fn, write, durable, future)
        try:
            if self._closed:
                raise RuntimeError("the database is closed")
            if write:
                self._writes.put(job)
            else:
                self._readers.submit(self._read, job)
        except RuntimeError as exc:
            _set_exception(job.future, exc)
        return job.future

    def close(self) -> None:
        """Runs every job already submitted, then closes the connections."""
        self._closed = True
        self._writes.put(None)
        self._writer.join()
        self._readers.shutdown(wait=True)
        self._pool.close()

    def _read(self, job: _Job) -> None:
        if job.future.cancelled():
            return
        try:
            with self._pool.connection() as conn:
                _set_result(job.future, job.fn(PgTx(conn)))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            _set_exception(job.future, _as_storage_error(exc))

    # -- the writer -----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            job = self._writes.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._writes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                with self._pool.connection() as conn:
                    again = self._commit_batch(conn, batch)
                    for job in again:  # lost a deadlock to another node: alone, from the start
                        self._write_alone(conn, job)
            except BaseException as exc:  # noqa: BLE001 - the thread must outlive one bad batch
                log.exception("database batch failed")
                for failed in batch:  # futures already resolved keep their result
                    _set_exception(failed.future, _as_storage_error(exc))
            if stop:
                return

    def _commit_batch(self, conn: psycopg.Connection[Any], batch: list[_Job]) -> list[_Job]:
        """Run the jobs in one transaction, each in a savepoint (one failing job does not spoil
        the others), and commit once. Returns the jobs that lost a deadlock."""
        done: list[tuple[_Job, Any, Tx]] = []
        again: list[_Job] = []
        tickets: list[int] = []
        try:
            with conn.transaction():
                for job in batch:
                    if job.future.cancelled():
                        continue
                    tx = PgTx(conn)
                    try:
                        with conn.transaction():  # SAVEPOINT
                            result = job.fn(tx)
                    except _RETRYABLE:
                        again.append(job)
                        continue
                    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                        _set_exception(job.future, _as_storage_error(exc))
                        continue
                    done.append((job, result, tx))
                if done and not any(job.durable for job, _, _ in done):
                    conn.execute("SET LOCAL synchronous_commit = off")
                tickets = [self._order.ticket() for _ in done]  # still holding the row locks
        except BaseException as exc:  # the COMMIT failed: nothing of the batch happened
            for ticket in tickets:
                self._order.finish(ticket, None)
            for job, _, _ in done:
                _set_exception(job.future, _as_storage_error(exc))
            return again
        for ticket, item in zip(tickets, done):
            self._order.finish(ticket, item)
        return again

    def _write_alone(self, conn: psycopg.Connection[Any], job: _Job) -> None:
        for _ in range(_RETRIES + 1):
            again = self._commit_batch(conn, [job])
            if not again:
                return
            log.debug("write job lost a deadlock; running it again")
        _set_exception(job.future, pg_errors.DeadlockDetected("the write lost a deadlock every time"))


def _as_storage_error(exc: BaseException) -> BaseException:
    """PostgreSQL's disk full becomes the OSError(ENOSPC) a full disk gives for a message
    file, so every protocol answers both the same way (as store.db does for SQLite)."""
    if isinstance(exc, pg_errors.DiskFull):
        return OSError(errno.ENOSPC, f"the database cannot grow: {exc}")
    return exc


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{host}"

