"""Shared fixtures: a cheap-hash config, a store on disk, a running server in a thread."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from postoffice.services.auth import Authenticator
from postoffice.services.events import EventBus
from postoffice.store import Store
from tests.support.pg import default_database, session_database
from tests.support.server import RunningServer, make_config


@pytest.fixture
def config(tmp_path: Path):
    return make_config(tmp_path / "data")


async def open_store(tmp_path: Path, database: str | None = None) -> AsyncIterator[Store]:
    """A store in ``tmp_path/data`` (SQLite) or on ``database``, with an event bus as ``.bus``."""
    import asyncio

    bus = EventBus(asyncio.get_running_loop())
    s = Store.open(tmp_path / "data", database or default_database(), on_commit=bus.publish_threadsafe)
    s.bus = bus  # type: ignore[attr-defined]
    yield s
    s.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async for s in open_store(tmp_path):
        yield s


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (skips when there is none)."""
    yield from session_database()


@pytest.fixture
async def auth(store: Store, config) -> Authenticator:
    return Authenticator(store, config.security)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with RunningServer(tmp_path / "data") as srv:
        yield srv


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line counting the skipped tests, grouped by reason, just before pytest's totals, so a
    reader sees at once what did not run (`pytest -rs` lists them one by one)."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if not reasons:
        terminalreporter.write_line("skipped: none")
        return
    grouped = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common())
    terminalreporter.write_line(f"skipped {sum(reasons.values())}: {grouped}")
