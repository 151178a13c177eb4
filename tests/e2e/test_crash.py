"""kill -9 of the whole server while it accepts mail: every message it answered 250 survives."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from postoffice.store import Store
from tests.foundation.test_cli import LISTENERS, free_ports, write_config


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


def sender(port: int, worker: int, acked: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                while not stop.is_set():
                    marker = f"w{worker}-m{n}"
                    body = (f"From: someone@remote.example\r\nTo: alice@example.com\r\nSubject: {marker}\r\n\r\n"
                            + "x" * 2000 + "\r\n")
                    smtp.sendmail("someone@remote.example", ["alice@example.com"], body)
                    acked.append(marker)  # only after the 250
                    n += 1
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)  # the server is gone: the last message was not acknowledged


def stored_subjects(data_dir: Path) -> list[str]:
    async def read() -> list[str]:
        store = Store.open(data_dir)
        try:
            account = await store.get_account("alice@example.com")
            box = await store.get_mailbox(account.id, "INBOX")
            subjects = []
            for meta in await store.list_messages(box.id):
                raw = await store.read_blob(meta.blob_id)
                assert len(raw) == meta.size
                subjects.append(raw.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode())
            return subjects
        finally:
            store.close()
    return asyncio.run(read())


def test_kill_9_while_accepting_mail_loses_nothing_acknowledged(tmp_path: Path) -> None:
    ports = dict(zip(LISTENERS, free_ports(len(LISTENERS))))
    config = write_config(tmp_path, ports)
    env = {**os.environ, "POSTOFFICE_INBOUND_VERIFY": "false", "POSTOFFICE_OUTBOUND_ENABLED": "false"}
    po = [sys.executable, "-m", "postoffice", "--config", str(config)]
    subprocess.run([*po, "domain", "add", "example.com"], check=True, capture_output=True, env=env)
    subprocess.run([*po, "account", "add", "alice@example.com", "--password", "password1"], check=True,
                   capture_output=True, env=env)
    acked: list[str] = []
    for round_ in range(2):
        # Its own process group: the supervisor and every worker are killed at once, as a power
        # cut or the OOM killer would (killing only the supervisor makes the workers drain).
        server = subprocess.Popen([*po, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                  start_new_session=True)
        try:
            wait_for_port(ports["smtp"])
            stop = threading.Event()
            threads = [threading.Thread(target=sender, args=(ports["smtp"], w + 10 * round_, acked, stop))
                       for w in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 20
            target = len(acked) + 60
            while len(acked) < target and time.monotonic() < deadline:
                time.sleep(0.02)
            os.killpg(server.pid, signal.SIGKILL)  # in the middle of several transactions
            server.wait()
            stop.set()
            for t in threads:
                t.join(15)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
        stored = stored_subjects(tmp_path / "data")
        missing = set(acked) - set(stored)
        assert not missing, f"round {round_}: acknowledged but lost after kill -9: {sorted(missing)[:10]}"
        assert len(acked) >= 60 * (round_ + 1) - 5
