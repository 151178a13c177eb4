"""The queue inside a running postoffice: delivery, retry across a restart, bounce to INBOX, DKIM."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.outbound.worker_support import free_port, start_remote
from tests.support.dns_server import DNSTestServer, dns_server  # noqa: F401  (fixture)
from tests.support.server import RunningServer

MSG = b"From: alice@local.test\r\nTo: bob@remote.test\r\nSubject: hi\r\nMessage-ID: <e2e@local.test>\r\n\r\nhello\r\n"


@pytest.fixture
def remote_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture
def remote(remote_port: int, dns_server: DNSTestServer) -> Iterator[Any]:  # noqa: F811
    dns_server.add("remote.test", "MX", (10, "mx.remote.test"))
    dns_server.add("mx.remote.test", "A", "127.0.0.1")
    c, handler = start_remote("127.0.0.1", remote_port)
    yield handler
    c.stop()


def server(tmp_path: Path, dns: DNSTestServer, port: int) -> RunningServer:
    return RunningServer(tmp_path / "data", outbound={"enabled": True, "dns": dns.nameserver, "smtp_port": port,
                                                      "retry_interval": 1})


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_queued_mail_leaves_promptly(tmp_path: Path, dns_server: DNSTestServer, remote_port: int,  # noqa: F811
                                     remote: Any) -> None:
    with server(tmp_path, dns_server, remote_port) as srv:
        alice = srv.add_account("alice@local.test", "password-1")
        signed = srv.call(srv.office.dkim_signer.sign(MSG, "local.test"))
        start = time.monotonic()
        srv.call(srv.store.enqueue("alice@local.test", ["bob@remote.test"], signed, account_id=alice.id))
        wait_for(lambda: remote.messages, 3)
        assert time.monotonic() - start < 2.5
        mail_from, rcpts, content = remote.messages[0]
        assert (mail_from, rcpts) == ("alice@local.test", ["bob@remote.test"])
        assert content.count(b"DKIM-Signature:") == 2
        wait_for(lambda: srv.call(srv.store.queue_entries()) == [])


def test_4xx_survives_a_restart(tmp_path: Path, dns_server: DNSTestServer, remote_port: int,  # noqa: F811
                                remote: Any) -> None:
    remote.rules["bob"] = "451 4.3.0 greylisted"
    with server(tmp_path, dns_server, remote_port) as srv:
        alice = srv.add_account("alice@local.test", "password-1")
        srv.call(srv.store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id))
        entries = wait_for(lambda: [e for e in srv.call(srv.store.queue_entries()) if e["attempts"] >= 1])
        assert "451" in entries[0]["recipients"][0]["last_error"]
    del remote.rules["bob"]
    assert remote.messages == []
    with server(tmp_path, dns_server, remote_port) as srv:
        wait_for(lambda: remote.messages, 8)
        assert remote.recipients() == ["bob@remote.test"]
        wait_for(lambda: srv.call(srv.store.queue_entries()) == [])
    time.sleep(0.2)
    assert len(remote.messages) == 1


def test_5xx_bounce_lands_in_the_senders_inbox(tmp_path: Path, dns_server: DNSTestServer,  # noqa: F811
                                               remote_port: int, remote: Any) -> None:
    remote.rules["bob"] = "550 5.1.1 <bob@remote.test>: no such user"
    with server(tmp_path, dns_server, remote_port) as srv:
        alice = srv.add_account("alice@local.test", "password-1")
        srv.call(srv.store.enqueue("alice@local.test", ["bob@remote.test"], MSG, account_id=alice.id))
        wait_for(lambda: srv.call(srv.store.queue_entries()) == [])
        box = srv.call(srv.store.get_mailbox(alice.id, "INBOX"))
        [meta] = srv.call(srv.store.list_messages(box.id))
        body = srv.call(srv.store.read_blob(meta.blob_id))
        assert b"multipart/report; report-type=delivery-status" in body
        assert b"Status: 5.1.1" in body and b"no such user" in body
        assert b"Message-ID: <e2e@local.test>" in body
