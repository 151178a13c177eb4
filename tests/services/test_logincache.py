"""The login cache's hand-over file (services/logincache.py): read once, and only when it is
private to the server's user and recent; anything else is ignored (a planted file would let its
author log in with any password)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from postoffice.services import logincache
from postoffice.services.logincache import LoginCache, handover_path, load, save


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(logincache, "TMPFS", tmp_path / "shm")
    (tmp_path / "shm").mkdir()
    return tmp_path / "data"


def saved(data_dir: Path) -> LoginCache:
    cache = LoginCache()
    cache.add("alice@example.com", "ab" * 32, 1700000000.5)
    assert save(data_dir, cache)
    return cache


def test_handed_over_once(data_dir: Path) -> None:
    cache = saved(data_dir)
    path = handover_path(data_dir)
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    again = load(data_dir)
    assert (again.key, again.entries) == (cache.key, cache.entries)
    assert not path.exists()
    assert load(data_dir).entries == {}  # a second start gets a fresh key and nothing


def test_a_file_others_may_read_or_write_is_ignored(data_dir: Path) -> None:
    saved(data_dir)
    path = handover_path(data_dir)
    assert path is not None
    os.chmod(path, 0o644)
    assert load(data_dir).entries == {}
    assert not path.exists()


def test_a_directory_others_may_enter_is_not_used(data_dir: Path) -> None:
    saved(data_dir)
    path = handover_path(data_dir)
    assert path is not None
    os.chmod(path.parent, 0o755)
    assert load(data_dir).entries == {}
    assert not save(data_dir, saved_cache()) and not path.exists()


def saved_cache() -> LoginCache:
    cache = LoginCache()
    cache.add("bob@example.com", "cd" * 32, 1.0)
    return cache


def test_an_old_file_is_from_a_stop_not_a_restart(data_dir: Path) -> None:
    saved(data_dir)
    path = handover_path(data_dir)
    assert path is not None
    data = json.loads(path.read_text())
    data["written"] -= logincache.HANDOVER_MAX_AGE + 1
    path.write_text(json.dumps(data))
    assert load(data_dir).entries == {}
    assert not path.exists()
