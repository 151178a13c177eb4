"""PostgreSQL for tests (issue 14). The server is the one ``POSTOFFICE_TEST_PG_DSN`` names
(default: the local one, database ``test``, trust auth); tests that need it skip, with the
reason, when no server answers (CI has one).

- `fresh_database`: a new empty database for one test or fixture, dropped at the end.
- the session fixture ``postgres_database`` (tests/conftest.py, `session_database`): one
  database ``po_test_<random>`` for the whole run, dropped at its end; `fresh_url` gives a new
  empty schema in it (chosen through the connection's ``search_path``), so each store or test
  server sees only its own rows.
- ``POSTOFFICE_TEST_BACKEND=postgresql``: every test server (`make_config`) and every `store`
  fixture that names no database uses a fresh schema (`default_database`), so the whole suite
  runs against PostgreSQL; the database is dropped when the test process exits.
- `backend_overrides`: what makes a `RunningServer` use a backend of `BACKENDS`:

    with RunningServer(data, **backend_overrides("postgresql", request)) as srv: ...
    # or: RunningServer(data, store={"database": fresh_url(request.getfixturevalue("postgres_database"))})
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

ADMIN_DSN = os.environ.get("POSTOFFICE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


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


def url_for(database: str) -> str:
    """A ``postgresql://`` URL of ``database`` on the test server (what ``[store] database`` takes)."""
    parts = urllib.parse.urlsplit(ADMIN_DSN)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


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


def session_database() -> Iterator[str]:
    """The body of the session fixture: one database for the run, as a URL."""
    with fresh_database("po_test") as dsn:
        from psycopg.conninfo import conninfo_to_dict

        yield url_for(str(conninfo_to_dict(dsn)["dbname"]))


def fresh_url(database_url: str) -> str:
    """A new, empty schema in ``database_url``, as a URL selecting it."""
    import psycopg

    schema = f"s_{secrets.token_hex(6)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{database_url}?options={urllib.parse.quote(f'-csearch_path={schema}')}"


def database_for(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The ``database`` setting for ``backend``: None (SQLite in data_dir) or a fresh
    PostgreSQL schema's URL (the test skips when PostgreSQL is not reachable)."""
    if backend == "sqlite":
        return None
    return fresh_url(request.getfixturevalue("postgres_database"))


def backend_overrides(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """RunningServer keyword arguments selecting ``backend``."""
    url = database_for(backend, request)
    return {} if url is None else {"store": {"database": url}}


@functools.lru_cache(maxsize=1)
def _process_database() -> str:
    """One database for the whole test process (POSTOFFICE_TEST_BACKEND), dropped at exit."""
    reason = unreachable()
    if reason:
        raise RuntimeError(f"POSTOFFICE_TEST_BACKEND=postgresql, but {reason}")
    databases = session_database()
    url = next(databases)
    atexit.register(databases.close)
    return url


def default_database(data_dir: object = None) -> str | None:
    """With POSTOFFICE_TEST_BACKEND=postgresql a PostgreSQL schema: the same one for the same
    ``data_dir`` (a test restarting its server finds its data), else a fresh one. Otherwise
    None (SQLite)."""
    if os.environ.get("POSTOFFICE_TEST_BACKEND", "sqlite") != "postgresql":
        return None
    if data_dir is None:
        return fresh_url(_process_database())
    return _schema_of(str(data_dir))


@functools.lru_cache(maxsize=None)
def _schema_of(data_dir: str) -> str:
    return fresh_url(_process_database())
