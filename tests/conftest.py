"""Shared fixtures: a cheap-hash config, a store on disk, a running server in a thread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from postoffice.services.auth import Authenticator
from postoffice.services.events import EventBus
from postoffice.store import Store
from tests.support.server import RunningServer, make_config


@pytest.fixture
def config(tmp_path: Path):
    return make_config(tmp_path / "data")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    import asyncio

    bus = EventBus(asyncio.get_running_loop())
    s = Store.open(tmp_path / "data", on_commit=bus.publish_threadsafe)
    s.bus = bus  # type: ignore[attr-defined]
    yield s
    s.close()


@pytest.fixture
async def auth(store: Store, config) -> Authenticator:
    return Authenticator(store, config.security)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with RunningServer(tmp_path / "data") as srv:
        yield srv
