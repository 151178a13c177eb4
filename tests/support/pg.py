"""A PostgreSQL database of its own for a test (issue 14): created on the server named by
``POSTOFFICE_TEST_PG_DSN`` (default: the local one, trust auth) and dropped afterwards. Tests that
need one skip, with the reason, when no server answers."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

ADMIN_DSN = os.environ.get("POSTOFFICE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _admin() -> object:
    import psycopg

    return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)


def unreachable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    try:
        _admin().close()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - any failure means: skip
        return f"no PostgreSQL at {ADMIN_DSN}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
    return None


def dsn_for(database: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(ADMIN_DSN, dbname=database)


@contextlib.contextmanager
def fresh_database(prefix: str = "po") -> Iterator[str]:
    """Create a new empty database and yield its connection string; drop it at the end."""
    reason = unreachable()
    if reason:
        pytest.skip(reason)
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _admin() as conn:  # type: ignore[attr-defined]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield dsn_for(name)
    finally:
        with _admin() as conn:  # type: ignore[attr-defined]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
