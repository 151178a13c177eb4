"""The store's tests run on SQLite and on PostgreSQL (issue 14; tests/support/pg.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postoffice.store import Store
from tests.conftest import open_store
from tests.support.pg import BACKENDS, database_for


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for s in open_store(tmp_path, database_for(request.param, request)):
        yield s
