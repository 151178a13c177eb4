"""A real postoffice running in a background thread, for end-to-end tests with blocking clients.

    with RunningServer(tmp_path) as srv:
        srv.add_account("alice@example.com", "password1")
        imap = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls())

Every listener binds 127.0.0.1 on port 0; `port(name)` says where it landed. `call(coro)` runs
a coroutine on the server's loop (setup, or inspecting the store) and returns its result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from postoffice import config as config_module
from postoffice.app import Postoffice
from postoffice.config import Config
from tests.support.pg import default_database

T = TypeVar("T")

LISTEN_ALL_EPHEMERAL = {name: "127.0.0.1:0" for name in
                        ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http",
                         "managesieve")}


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """Defaults for tests: port 0 everywhere, cheap argon2, short login-failure delays."""
    raw: dict[str, Any] = {
        "hostname": "mail.test",
        "data_dir": str(data_dir),
        "listen": dict(LISTEN_ALL_EPHEMERAL),
        "security": {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "throttle_max_delay": 0.05,
                     "auth_failure_delay": 0.05},
        # Issue #7: no test talks to real DNS or remote servers unless it asks to (outbound tests
        # pass outbound={"enabled": True, "dns": ..., "smtp_port": ...}, inbound={"verify": True}).
        "outbound": {"enabled": False},
        "inbound": {"verify": False},
    }
    database = None if "store" in overrides or "database" in overrides else default_database(data_dir)
    if database:
        raw["store"] = {"database": database}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    config = config_module._build(Config, raw, "test", "")
    config_module.validate(config)
    return dataclasses.replace(config, source="test")


class RunningServer:
    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.config = make_config(data_dir, **overrides)
        self.loop = asyncio.new_event_loop()
        self.office: Postoffice | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="postoffice-test", daemon=True)

    def __enter__(self) -> RunningServer:
        self._thread.start()

        async def boot() -> Postoffice:
            office = Postoffice.open(self.config)
            await office.start()
            return office
        self.office = self.call(boot())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.office is not None:
            self.call(self.office.stop())
            self.office.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def port(self, name: str) -> int:
        assert self.office is not None
        return self.office.bound[name].port

    @property
    def store(self) -> Any:
        assert self.office is not None
        return self.office.store

    def add_domain(self, name: str) -> Any:
        assert self.office is not None
        return self.call(self.office.accounts.add_domain(name))

    def add_account(self, address: str, password: str, **kw: Any) -> Any:
        assert self.office is not None
        domain = address.rpartition("@")[2]
        if self.call(self.office.store.get_domain(domain)) is None:
            self.add_domain(domain)
        return self.call(self.office.accounts.add_account(address, password, **kw))

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts the server's generated certificate."""
        ctx = ssl.create_default_context(cafile=str(self.config.data_path / "tls" / "selfsigned.crt"))
        return ctx
