"""/metrics: Prometheus counters and scrape-time gauges, loopback-only unless metrics_public."""

from __future__ import annotations

import dataclasses
import imaplib
import re
import smtplib
from pathlib import Path

import httpx
import pytest

from postoffice.app import Postoffice
from postoffice.web.app import create_app
from tests.support.server import RunningServer

MESSAGE = (b"From: Carol <carol@remote.example>\r\nTo: Alice <alice@example.com>\r\nSubject: hi\r\n"
           b"Date: Mon, 02 Mar 2026 10:00:00 +0100\r\nMessage-ID: <metrics-1@remote.example>\r\n\r\nHello\r\n")


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the exposition text, or None when it is absent."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else None


def test_scrape_after_activity(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data") as srv:
        srv.add_account("alice@example.com", "alice-password")
        imap = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls())
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("alice@example.com", "wrong-password")
        imap.login("alice@example.com", "alice-password")
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as smtp:
            smtp.sendmail("carol@remote.example", ["alice@example.com"], MESSAGE)
        try:
            response = httpx.get(f"http://127.0.0.1:{srv.port('http')}/metrics", timeout=10)
        finally:
            imap.logout()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "postoffice_auth_attempts_total", protocol="imap", result="bad-credentials") == 1
    assert sample(text, "postoffice_auth_attempts_total", protocol="imap", result="ok") == 1
    assert sample(text, "postoffice_messages_stored_total") == 1
    assert sample(text, "postoffice_connections_accepted_total", listener="imaps") == 1
    assert sample(text, "postoffice_connections_accepted_total", listener="smtp") == 1
    assert sample(text, "postoffice_connections_refused_total", listener="smtp") is None
    assert sample(text, "postoffice_sessions_open", protocol="imap") == 1
    assert sample(text, "postoffice_sessions_open", protocol="pop3") == 0
    assert sample(text, "postoffice_queue_entries") == 0
    assert "process_cpu_seconds_total" in text or "python_info" in text


async def get_metrics(office: Postoffice, ip: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(office), client=(ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get("/metrics", headers=headers)


async def test_loopback_only_by_default(office: Postoffice) -> None:
    await office.store.enqueue("alice@example.com", ["x@remote.example", "y@remote.example"], MESSAGE)
    ok = await get_metrics(office, "127.0.0.1")
    assert ok.status_code == 200
    assert sample(ok.text, "postoffice_queue_entries") == 1
    assert sample(ok.text, "postoffice_queue_recipients", status="pending") == 2
    assert (await get_metrics(office, "::1")).status_code == 200
    assert (await get_metrics(office, "192.0.2.10")).status_code == 403
    # A reverse proxy on this host connects from loopback: what it relays is not local.
    assert (await get_metrics(office, "127.0.0.1", **{"X-Forwarded-For": "198.51.100.7"})).status_code == 403


async def test_metrics_public(office: Postoffice) -> None:
    office.config = dataclasses.replace(
        office.config, panel=dataclasses.replace(office.config.panel, metrics_public=True))
    response = await get_metrics(office, "192.0.2.10")
    assert response.status_code == 200
    assert "postoffice_auth_attempts" in response.text


async def test_panel_logins_are_counted(office: Postoffice) -> None:
    assert not (await office.auth.check_password("alice@example.com", "nope", "192.0.2.1")).ok
    assert (await office.auth.authenticate("alice@example.com", "alice-password", "192.0.2.1", "pop3")).ok
    text = (await get_metrics(office, "127.0.0.1")).text
    assert sample(text, "postoffice_auth_attempts_total", protocol="panel", result="bad-credentials") == 1
    assert sample(text, "postoffice_auth_attempts_total", protocol="pop3", result="ok") == 1
    assert sample(text, "postoffice_auth_attempts_total", protocol="panel", result="ok") is None
