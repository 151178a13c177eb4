"""Helpers for the SMTP end-to-end tests: a raw socket client and store inspection."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from tests.support.server import RunningServer


class RawSmtp:
    """A deliberately dumb SMTP client: sends exactly the bytes it is given."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 10) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; pending {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        """(code, text) of one (possibly multi-line) reply; text lines joined by newlines."""
        lines = []
        while True:
            line = self._line()
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line: str | bytes) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext) -> None:
        code, _ = self.cmd("STARTTLS")
        assert code == 220
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def closed(self, timeout: float = 5) -> bool:
        """True when the server has closed the connection (after any pending bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def messages(srv: RunningServer, address: str, mailbox: str = "INBOX") -> list[bytes]:
    """The raw messages in one mailbox of an account, in UID order."""
    store = srv.store

    async def read() -> list[bytes]:
        account = await store.get_account(address)
        box = await store.get_mailbox(account.id, mailbox)
        out = []
        for meta in await store.list_messages(box.id):
            out.append(await store.read_blob(meta.blob_id))
        return out
    return srv.call(read())


def queue(srv: RunningServer) -> list[dict[str, Any]]:
    return srv.call(srv.store.queue_entries())


def queued_message(srv: RunningServer, entry: dict[str, Any]) -> bytes:
    return srv.call(srv.store.read_blob(entry["blob_id"]))


def counts(srv: RunningServer) -> tuple[int, int, int]:
    """(messages, queue entries, blobs) in the whole store: "nothing stored" compares these."""
    async def read() -> tuple[int, int, int]:
        def op(tx: Any) -> tuple[int, int, int]:
            return (tx.scalar("SELECT count(*) FROM messages"), tx.scalar("SELECT count(*) FROM queue"),
                    tx.scalar("SELECT count(*) FROM blobs"))
        return await srv.store.db.read(op)
    return srv.call(read())


def body_after_trace(stored: bytes) -> bytes:
    """The message as sent: the stored copy minus our Return-Path and Received lines on top."""
    lines = stored.split(b"\r\n")
    i = 0
    if lines[i].startswith(b"Return-Path:"):
        i += 1
    assert lines[i].startswith(b"Received:"), stored[:300]
    i += 1
    while lines[i].startswith((b"\t", b" ")):
        i += 1
    return b"\r\n".join(lines[i:])
