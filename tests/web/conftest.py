"""Fixtures for the panel and API tests: a Postoffice on a temporary store with cheap argon2,
an httpx client over ASGI (same event loop as the store), and helpers for logins and CSRF."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from postoffice.app import Postoffice
from postoffice.config import Config, Listen, Security
from postoffice.web.app import create_app

ADMIN_PASSWORD = "admin-password-1"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_config(data_dir: Path, **listen: str) -> Config:
    ports = {name: "127.0.0.1:0" for name in ("smtp", "submission", "submissions", "imap", "imaps",
                                              "pop3", "pop3s", "http", "managesieve")}
    ports.update(listen)
    return Config(
        hostname="mail.test.example", data_dir=str(data_dir), listen=Listen(**ports),
        security=Security(argon2_time_cost=1, argon2_memory_kib=1024, throttle_delay_after=100,
                          throttle_max_delay=0.01, auth_failure_delay=0.01, throttle_block_after=5, allow_plaintext_auth_loopback=True),
    )


@pytest.fixture
async def office(tmp_path: Path) -> AsyncIterator[Postoffice]:
    po = Postoffice.open(test_config(tmp_path / "data"))
    await po.store.add_admin("admin", await po.auth.hash_password(ADMIN_PASSWORD))
    await po.accounts.add_domain("example.com")
    await po.accounts.add_domain("other.org")
    await po.accounts.add_account("alice@example.com", "alice-password", display_name="Alice")
    await po.accounts.add_account("bob@other.org", "bob-password-1")
    try:
        yield po
    finally:
        po.close()


@pytest.fixture
async def client(office: Postoffice) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(office)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def make_client(office: Postoffice) -> AsyncIterator[Any]:
    """More clients (other browsers) on the same app."""
    app = create_app(office)
    clients: list[httpx.AsyncClient] = []

    def make(ip: str = "192.0.2.20") -> httpx.AsyncClient:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url="http://testserver")
        clients.append(c)
        return c
    yield make
    for c in clients:
        await c.aclose()


async def csrf_of(client: httpx.AsyncClient, path: str) -> str:
    response = await client.get(path)
    match = CSRF_RE.search(response.text)
    assert match, f"no CSRF token on {path} ({response.status_code})"
    return match.group(1)


async def login(client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PASSWORD) -> httpx.Response:
    token = await csrf_of(client, "/login")
    return await client.post("/login", data={"username": username, "password": password, "csrf_token": token})


async def post(client: httpx.AsyncClient, path: str, data: dict[str, Any], page: str | None = None) -> httpx.Response:
    """POST a form with the CSRF token taken from ``page`` (default: the same path)."""
    token = await csrf_of(client, page or path)
    return await client.post(path, data={**data, "csrf_token": token})


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> httpx.AsyncClient:
    response = await login(client)
    assert response.status_code == 303, response.text
    return client


async def add_owner(office: Postoffice, name: str, domains: list[str], password: str = "owner-password") -> None:
    from postoffice.services.panel_users import PanelUsers

    users = PanelUsers(office.store, office.auth, office.accounts)
    await users.add_login(name, password, "owner", domains)


async def api_token(office: Postoffice, username: str) -> str:
    from postoffice.services.panel_users import PanelUsers

    users = PanelUsers(office.store, office.auth, office.accounts)
    row = await office.store.get_admin(username)
    assert row is not None
    who = await users.principal_for_admin(row)
    return (await users.create_token(who, f"{username} test token"))[1]


class LiveServer:
    """The whole Postoffice (mail listeners and the panel) on port-0 listeners, on its own event
    loop in a background thread, for Playwright and the stdlib mail clients."""

    def __init__(self, data_dir: Path, mail_servers: bool = False) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.office: Postoffice = self.call(self._start(data_dir, mail_servers))
        self.url = f"http://127.0.0.1:{self.office.bound['http'].port}"

    async def _start(self, data_dir: Path, mail_servers: bool) -> Postoffice:
        po = Postoffice.open(test_config(data_dir))
        await po.store.add_admin("admin", await po.auth.hash_password(ADMIN_PASSWORD))
        await po.accounts.add_domain("example.com")
        await po.accounts.add_account("alice@example.com", "alice-password", display_name="Alice Example",
                                      quota_bytes=500 * 1024 * 1024)
        await po.accounts.add_account("info@example.com", "info-password", display_name="Info desk")
        await po.accounts.add_account("sales@example.com", "sales-password", quota_bytes=1024 * 1024 * 1024)
        await po.accounts.add_alias("hello@example.com", ["info@example.com"])
        await po.accounts.add_domain("shop.example.net")
        if mail_servers:
            await po.start()
        else:
            # Only the panel listens: the browser tests check the servers' decision through
            # services/access.py, independent of the protocol servers' progress.
            from postoffice.config import HostPort

            await po._start_web(HostPort("127.0.0.1", 0))
        return po

    def call(self, coro: Any, timeout: float = 30) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def stop() -> None:
            await self.office.stop()
            self.office.close()
        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def live(tmp_path: Path) -> Any:
    server = LiveServer(tmp_path / "live")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def live_with_mail(tmp_path: Path) -> Any:
    server = LiveServer(tmp_path / "live", mail_servers=True)
    try:
        yield server
    finally:
        server.close()
