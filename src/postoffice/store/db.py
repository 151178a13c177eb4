"""The database thread: every SQL statement runs here, writes are group-committed.

SQLite allows one writer at a time, so instead of contending for a lock from many threads the
store owns one connection on one thread. Callers on the event loop submit jobs and await their
futures. The thread drains whatever jobs are queued, runs each write inside its own SAVEPOINT
(so one failing job does not spoil the others) and then COMMITs the batch once. With
``synchronous=FULL`` that commit is the fsync that makes every write in the batch durable;
batching is what lets many SMTP sessions acknowledge mail at once without one fsync each.

A job's future resolves only after the COMMIT returned: a caller that sees success may tell a
client the message is safe. Events a job emits (`Tx.emit`) are handed to ``on_commit`` after the
commit, never before, so a session is never told about a message that might still roll back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .dialect import SQLITE, Dialect

log = logging.getLogger(__name__)
T = TypeVar("T")
_MAX_BATCH = 512


class Tx:
    """What a job sees: the connection, plus a way to publish events after commit.

    Rows support ``row[i]`` and ``dict(row)``. ``dialect`` holds what SQLite and PostgreSQL
    write differently (store.dialect); the PostgreSQL transaction is store.pg.PgTx."""

    __slots__ = ("conn", "events", "after_commit")
    dialect: Dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.events: list[Any] = []
        self.after_commit: list[Callable[[], None]] = []

    def for_update(self, sql: str) -> str:
        """``sql`` (a SELECT of rows this transaction goes on to change) locking those rows
        against concurrent writers where the database has several (PostgreSQL)."""
        return sql + self.dialect.for_update

    def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)

    def one(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Any]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def insert(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run an INSERT into a table with an ``id`` key; return the new row's id."""
        return int(self.scalar(sql + " RETURNING id", params))

    def tuples(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row as a plain tuple (cheaper than rows by name: a mailbox of 100,000s)."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params).fetchall()

    def emit(self, event: Any) -> None:
        self.events.append(event)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """For a read job: its statements see one moment of the database (a read transaction),
        even while other processes (worker processes, the CLI) commit in between."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")


class _Job:
    __slots__ = ("fn", "write", "durable", "future")

    def __init__(self, fn: Callable[[Tx], Any], write: bool, durable: bool = True,
                 future: concurrent.futures.Future[Any] | None = None) -> None:
        self.fn = fn
        self.write = write
        self.durable = durable
        self.future: concurrent.futures.Future[Any] = future if future is not None else concurrent.futures.Future()


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a COMMIT that returned is on disk, even after power loss; WAL with NORMAL may lose the
    # last commits, and they acknowledge mail (docs/operations.md, "Install and start").
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")  # the CLI may write while the server runs
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


class JobRunner:
    """What the store calls: `read` and `write` jobs, awaitable from any loop, or waited for
    from a plain thread. A backend implements `submit` and `close`."""

    dialect: Dialect = SQLITE
    on_commit: Callable[[list[Any]], None] | None

    def submit(self, fn: Callable[[Tx], T], *, write: bool, durable: bool = True,
               future: concurrent.futures.Future[T] | None = None) -> concurrent.futures.Future[T]:
        """Queue ``fn`` (callable from any thread). ``future``: resolve this one instead of a
        new one (a worker thread can hand its result straight on, so the event loop is woken
        once, when the commit is done)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def read(self, fn: Callable[[Tx], T]) -> T:
        return await self._run_job(fn, write=False, durable=True)

    async def write(self, fn: Callable[[Tx], T], *, durable: bool = True) -> T:
        """Run ``fn`` in a transaction. ``durable=False`` is for changes a power cut may undo
        without losing mail (flags, expunges): a batch of only those commits without the fsync
        (WAL, synchronous=NORMAL: still safe against a crash of the process, durable at the next
        checkpoint), as Dovecot treats its index. Mail itself is always written durably."""
        return await self._run_job(fn, write=True, durable=durable)

    async def _run_job(self, fn: Callable[[Tx], T], *, write: bool, durable: bool) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.submit(fn, write=write, durable=durable, future=_LoopFuture(loop, future))  # type: ignore[arg-type]
        return await future

    def read_sync(self, fn: Callable[[Tx], T]) -> T:
        return self.submit(fn, write=False).result()

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        return self.submit(fn, write=True).result()


class Database(JobRunner):
    """One SQLite connection on one thread; `read` and `write` are awaitable from any loop."""

    def __init__(self, path: Path, on_commit: Callable[[list[Any]], None] | None = None) -> None:
        self.path = path
        self.on_commit = on_commit
        self._conn = connect(path)
        self._synchronous_full = True
        # held from BEGIN IMMEDIATE to COMMIT (see _lock_writers); released by the kernel if
        # the process dies
        # (None where it cannot be created, a read-only directory: SQLite's busy handler then)
        self._write_lock: int | None = None
        with contextlib.suppress(OSError):
            self._write_lock = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
        self._writing = False
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="postoffice-db", daemon=True)
        self._thread.start()

    # -- submitting work -------------------------------------------------------------------

    def submit(self, fn: Callable[[Tx], T], *, write: bool, durable: bool = True,
               future: concurrent.futures.Future[T] | None = None) -> concurrent.futures.Future[T]:
        job = _Job(fn, write, durable, future)
        if not self._thread.is_alive():  # closed: nobody would ever run the job
            _set_exception(job.future, RuntimeError("the database is closed"))
            return job.future
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._conn.close()
        if self._write_lock is not None:
            os.close(self._write_lock)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                self._execute(batch)
            except BaseException as exc:  # noqa: BLE001 - the thread must outlive one bad batch
                log.exception("database batch failed")
                try:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._unlock_writers()
                for failed in batch:  # futures already resolved keep their result
                    _set_exception(failed.future, exc)
            if stop:
                return

    def _execute(self, batch: list[_Job]) -> None:
        conn = self._conn
        in_tx = False
        durable = any(job.write and job.durable for job in batch)
        if any(job.write for job in batch) and durable != self._synchronous_full:
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")  # outside a transaction
            self._synchronous_full = durable
        done: list[tuple[_Job, Any, Tx]] = []
        # Reads queued behind a write of this batch run once the batch is committed (or rolled
        # back): inside the open transaction they would see writes that may still be undone (a
        # failing COMMIT, a full disk) and, say, show a client a UID that is then handed out again.
        deferred: list[_Job] = []
        for job in batch:
            if not job.write:
                if in_tx:
                    deferred.append(job)
                else:
                    self._read(job)
                continue
            tx = Tx(conn)
            try:
                if not in_tx:
                    self._lock_writers()
                    conn.execute("BEGIN IMMEDIATE")
                    in_tx = True
                conn.execute("SAVEPOINT job")
                result = job.fn(tx)
                conn.execute("RELEASE job")
                done.append((job, result, tx))
            except BaseException as exc:  # noqa: BLE001
                if in_tx and conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                    except sqlite3.Error:
                        pass
                _set_exception(job.future, exc)
                if in_tx and not conn.in_transaction:
                    # Some errors (SQLITE_FULL, IOERR, NOMEM...) roll back the whole transaction,
                    # not just the statement: the jobs done so far are undone, so tell their
                    # callers, and start a fresh transaction for the rest of the batch (otherwise
                    # "SAVEPOINT job" would autocommit each later job behind the final COMMIT).
                    for undone, _, _ in done:
                        _set_exception(undone.future, exc)
                    done.clear()
                    in_tx = False
                    self._unlock_writers()
        if not in_tx:
            for job in deferred:
                self._read(job)
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit of %d writes failed: %s", len(done), exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._unlock_writers()
            for job, _, _ in done:
                _set_exception(job.future, exc)
            for job in deferred:
                self._read(job)
            return
        self._unlock_writers()
        # Events go out before the callers resume, so a session that made a change finds the
        # news of it already waiting, in commit order.
        events = [event for _, _, tx in done for event in tx.events]
        if events and self.on_commit is not None:
            try:
                self.on_commit(events)
            except Exception:  # noqa: BLE001 - committed is committed: the callers must hear it
                log.exception("on_commit listener failed")
        for job, result, tx in done:
            for callback in tx.after_commit:
                try:
                    callback()
                except Exception:  # noqa: BLE001 - cleanup must not fail the write
                    log.exception("after-commit callback failed")
            _set_result(job.future, result)
        for job in deferred:
            self._read(job)

    def _lock_writers(self) -> None:
        """Wait for the other processes' write transactions (other workers, the CLI) on a
        kernel lock, which wakes this thread the moment the holder commits: SQLite's own busy
        handler polls, sleeping 1, 2, 5, 10... ms, and this thread's reads wait meanwhile."""
        if self._write_lock is not None:
            fcntl.flock(self._write_lock, fcntl.LOCK_EX)
            self._writing = True

    def _unlock_writers(self) -> None:
        if self._writing and self._write_lock is not None:
            self._writing = False
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    def _read(self, job: _Job) -> None:
        try:
            _set_result(job.future, job.fn(Tx(self._conn)))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            _set_exception(job.future, exc)


def open_database(target: str | Path, on_commit: Callable[[list[Any]], None] | None = None) -> JobRunner:
    """The database ``target`` names: a ``postgresql://`` URL (store.pg) or an SQLite file."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        from .pg import PgDatabase  # psycopg is loaded only by those who use it
        return PgDatabase(target, on_commit=on_commit)
    return Database(Path(target), on_commit=on_commit)


class _LoopFuture:
    """What the database thread resolves for a job awaited on an event loop: it hands the
    outcome straight to that loop's future with one ``call_soon_threadsafe``, where
    ``asyncio.wrap_future`` adds a concurrent Future (a lock and a condition variable) and
    chained callbacks each way. Several database jobs per IMAP command make that worth it.
    It has the part of concurrent.futures.Future the threads use: set_result, set_exception
    and cancelled (the awaiting task gave up: a read need not run)."""

    __slots__ = ("loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.future = future

    def set_result(self, result: Any) -> None:
        self._settle(result, None)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(None, exc)

    def cancelled(self) -> bool:
        return self.future.cancelled()  # (read from another thread: only a hint, as intended)

    def _settle(self, result: Any, exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(_settle, self.future, result, exc)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _set_result(future: concurrent.futures.Future[Any], result: Any) -> None:
    # A caller that gave up (its task was cancelled) cancelled the future: nothing to tell.
    try:
        future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def _as_storage_error(exc: BaseException) -> BaseException:
    """SQLite's "database or disk is full" becomes the OSError(ENOSPC) a full disk gives when
    writing a message file, so every protocol answers both the same way (452 4.3.1, NO...)."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return OSError(errno.ENOSPC, f"the database cannot grow: {exc}")
    return exc


def _set_exception(future: concurrent.futures.Future[Any], exc: BaseException) -> None:
    exc = _as_storage_error(exc)
    try:
        future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        pass
