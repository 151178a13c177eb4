"""The verified-credentials cache across a restart: the login storm without argon2.

Each worker caches the logins argon2 has verified as ``HMAC-SHA256(key, address NUL password)``
with the account's ``password_changed_at`` (services/auth.py). With worker processes the key is
the supervisor's, the same in every worker, and every verification is told to the supervisor's
event-bus hub, which passes it to the other workers and keeps it (`LoginCache`): a user's five
connections cost one argon2 run, not one per worker.

A graceful stop (SIGTERM) writes the key and the entries to a *handover file* in memory-backed
storage (``/dev/shm/postoffice-<uid>/``, a directory only the server's user may enter); the
next start reads it, deletes it at once, and hands the entries to the new workers. A restart
then costs every returning user an HMAC instead of an argon2 verification: 1,000 users log in
in about a second instead of 10 (docs/operations.md, "Password hashing and login storms").

What this does to security, stated plainly: whoever holds the key and an entry can test
password guesses for that account at HMAC speed instead of argon2 speed. So the two never
reach disk, the database, a backup or another node, and exist outside the server's memory only
between a graceful stop and the next start:

* the file is on tmpfs (never written to a disk; gone at reboot), mode 0600 in a 0700
  directory owned by the server's user, and it is read only when its owner is that user and
  nobody else may read or write it (otherwise an attacker could plant a key and entries of
  their own and log in with any password);
* it is deleted when read, and ignored (and deleted) when older than ``HANDOVER_MAX_AGE``;
* a crash or ``kill -9`` writes nothing (the next start verifies with argon2 as usual).

Reading it in that window takes the server's user or root on the running machine, who could
equally read the running server's memory (the same cache) or change its code to record the
passwords of the next logins. A stolen disk, database or backup holds nothing of it. An entry
becomes useless when the password changes (``password_changed_at`` differs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: A handover file older than this (seconds) is from a stop, not a restart: ignored.
HANDOVER_MAX_AGE = 600
#: Memory-backed storage for the handover file (Linux); without it nothing is handed over.
TMPFS = Path("/dev/shm")


class LoginCache:
    """The supervisor's copy: the server's key and the latest entry per address."""

    def __init__(self, key: bytes | None = None, entries: dict[str, tuple[str, float]] | None = None) -> None:
        self.key = key or secrets.token_bytes(32)
        self.entries: dict[str, tuple[str, float]] = entries or {}  # address -> (mac hex, changed_at)

    def add(self, address: str, mac_hex: str, changed_at: float) -> None:
        self.entries[address] = (mac_hex, changed_at)

    def welcome(self) -> dict[str, Any]:
        """What a worker is told when it joins (the bus's welcome frame)."""
        return {"key": self.key.hex(), "entries": [[a, m, c] for a, (m, c) in self.entries.items()]}


def parse_welcome(data: Any) -> tuple[bytes, list[tuple[str, bytes, float]]] | None:
    """(key, [(address, mac, changed_at)]) from `LoginCache.welcome` after a JSON round trip."""
    if not isinstance(data, dict):
        return None
    try:
        key = bytes.fromhex(data["key"])
        entries = [(str(a), bytes.fromhex(m), float(c)) for a, m, c in data.get("entries", [])]
    except (KeyError, TypeError, ValueError):
        log.warning("login cache: ignored a malformed hand-over from the supervisor")
        return None
    return (key, entries) if len(key) == 32 else None


def handover_path(data_dir: Path) -> Path | None:
    """The handover file of the server whose pid file is in ``data_dir`` (its ``run_dir``: one
    per node when nodes share a data directory); None without tmpfs."""
    if not TMPFS.is_dir():
        return None
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    return TMPFS / f"postoffice-{os.getuid()}" / f"logins-{digest}.json"


def _private_dir(path: Path) -> bool:
    """Create ``path`` (0700) or check that the existing one is ours and closed to others."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def save(data_dir: Path, cache: LoginCache) -> bool:
    """Write the handover file at a graceful stop. False when there is nowhere safe to."""
    path = handover_path(data_dir)
    if path is None or not cache.entries:
        return False
    try:
        if not _private_dir(path.parent):
            log.warning("login cache: %s is not private to this user; nothing handed over", path.parent)
            return False
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"written": time.time(), **cache.welcome()}, fh, separators=(",", ":"))
        os.replace(temp, path)
    except OSError as exc:
        log.warning("login cache: cannot write the hand-over file: %s", exc)
        return False
    log.info("login cache: %d verified logins handed over to the next start", len(cache.entries))
    return True


def load(data_dir: Path) -> LoginCache:
    """The handover file's key and entries (then the file is gone), or a fresh cache."""
    path = handover_path(data_dir)
    if path is None:
        return LoginCache()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return LoginCache()
    try:
        with os.fdopen(fd) as fh:
            st = os.fstat(fh.fileno())
            os.unlink(path)
            trusted = (stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077
                       and _private_dir(path.parent))
            data = json.load(fh) if trusted else None
    except (OSError, ValueError) as exc:
        log.warning("login cache: ignored an unreadable hand-over file: %s", exc)
        return LoginCache()
    if data is None:
        log.warning("login cache: ignored a hand-over file that is not private to this user")
        return LoginCache()
    parsed = parse_welcome(data)
    written = data.get("written") if isinstance(data, dict) else None
    age = time.time() - written if isinstance(written, (int, float)) else HANDOVER_MAX_AGE
    if parsed is None or not 0 <= age < HANDOVER_MAX_AGE:
        return LoginCache()
    key, entries = parsed
    log.info("login cache: %d verified logins taken over from the previous run", len(entries))
    return LoginCache(key, {a: (m.hex(), c) for a, m, c in entries})
