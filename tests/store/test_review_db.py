"""Review: the database thread when a job's failure takes the whole transaction with it."""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import sqlite3
import threading
from pathlib import Path

import pytest

from postoffice.store.db import Database


def _open(tmp_path: Path, events: list) -> Database:
    db = Database(tmp_path / "t.db", on_commit=events.extend)
    db.write_sync(lambda tx: tx.execute("CREATE TABLE t (x)"))
    db.write_sync(lambda tx: tx.execute("CREATE TABLE big (x BLOB)"))
    return db


def _batch(db: Database, jobs) -> list[concurrent.futures.Future]:
    """Submit ``jobs`` so that the database thread runs them as one batch."""
    gate = threading.Event()
    blocker = db.submit(lambda tx: gate.wait(5), write=False)
    futures = [db.submit(fn, write=True) for fn in jobs]
    gate.set()
    blocker.result(5)
    return futures


def test_disk_full_mid_batch_does_not_commit_later_jobs_behind_callers_backs(tmp_path: Path) -> None:
    events: list = []
    db = _open(tmp_path, events)
    pages = db.read_sync(lambda tx: tx.scalar("PRAGMA page_count"))
    db.write_sync(lambda tx: tx.execute(f"PRAGMA max_page_count = {pages + 20}"))

    def insert(value):
        def job(tx):
            tx.execute("INSERT INTO t VALUES (?)", (value,))
            tx.emit(value)
            return value
        return job

    def too_big(tx):
        tx.execute("INSERT INTO big VALUES (?)", (b"x" * 1_000_000,))  # SQLITE_FULL: rolls back all

    a, b, c = _batch(db, [insert("a"), too_big, insert("c")])
    with pytest.raises(OSError) as exc:  # reported like a full disk: ENOSPC
        b.result(5)
    assert exc.value.errno == errno.ENOSPC
    rows = {r[0] for r in db.read_sync(lambda tx: tx.all("SELECT x FROM t"))}
    # Every caller must hear the truth: success <=> committed (and its event published).
    for fut, value in ((a, "a"), (c, "c")):
        ok = fut.exception(5) is None
        assert ok == (value in rows), (value, fut.exception(5), rows)
        assert ok == (value in events), (value, events)
    assert "c" in rows  # a job after the failure is not spoiled by it
    db.close()


def test_a_failing_commit_listener_does_not_kill_the_database_thread(tmp_path: Path) -> None:
    calls = []

    def listener(events):
        calls.append(events)
        raise RuntimeError("event loop is closed")

    db = Database(tmp_path / "t.db", on_commit=listener)
    db.write_sync(lambda tx: tx.execute("CREATE TABLE t (x)"))

    def job(tx):
        tx.execute("INSERT INTO t VALUES (1)")
        tx.emit("x")

    fut = db.submit(job, write=True)
    fut.result(5)  # committed: the caller is told so
    assert db.submit(lambda tx: tx.scalar("SELECT count(*) FROM t"), write=False).result(5) == 1
    db.close()


def test_a_read_never_sees_writes_that_are_then_rolled_back(tmp_path: Path) -> None:
    events: list = []
    db = _open(tmp_path, events)
    pages = db.read_sync(lambda tx: tx.scalar("PRAGMA page_count"))
    db.write_sync(lambda tx: tx.execute(f"PRAGMA max_page_count = {pages + 20}"))
    gate = threading.Event()
    blocker = db.submit(lambda tx: gate.wait(5), write=False)
    a = db.submit(lambda tx: tx.execute("INSERT INTO t VALUES ('a')"), write=True)
    seen = db.submit(lambda tx: [r[0] for r in tx.all("SELECT x FROM t")], write=False)
    b = db.submit(lambda tx: tx.execute("INSERT INTO big VALUES (?)", (b"x" * 1_000_000,)), write=True)
    gate.set()
    blocker.result(5)
    assert b.exception(5) is not None and a.exception(5) is not None  # disk full: both undone
    # An IMAP SELECT in the same batch must not have been shown a UID that never existed.
    assert seen.result(5) == []
    db.close()


def test_writers_of_two_processes_take_turns_and_every_exit_releases_the_turn(tmp_path: Path) -> None:
    """The kernel lock other processes' writers wait on (Database._lock_writers) is let go
    after a commit, after a failed job and after a transaction a job's error rolled back: a
    second connection (another open file, as another worker would have) writes right after."""
    db = _open(tmp_path, [])
    other = Database(tmp_path / "t.db")
    try:
        def fails(tx) -> None:
            tx.execute("INSERT INTO t VALUES (1)")
            raise ValueError("the job's own error")

        def disk_full(tx) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        for job in (lambda tx: tx.execute("INSERT INTO t VALUES (2)"), fails, disk_full):
            with contextlib.suppress(ValueError, sqlite3.Error):
                db.write_sync(job)
            other.submit(lambda tx: tx.execute("INSERT INTO t VALUES (3)"), write=True).result(timeout=5)
        # ... and the other's turn ends too: this one writes again at once.
        db.submit(lambda tx: tx.execute("INSERT INTO t VALUES (4)"), write=True).result(timeout=5)
        assert sorted(r[0] for r in db.read_sync(lambda tx: tx.all("SELECT x FROM t"))) == [2, 3, 3, 3, 4]
    finally:
        other.close()
        db.close()
