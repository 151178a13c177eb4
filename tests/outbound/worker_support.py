"""Remote peers for the queue tests: aiosmtpd with scripted answers, raw misbehaving servers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller


def free_port(*hosts: str) -> int:
    """A TCP port free on every given loopback address."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        ok = True
        for h in hosts[1:]:
            with socket.socket() as t:
                try:
                    t.bind((h, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no common free port")


class Remote:
    """aiosmtpd handler. ``rules`` map a local-part prefix to a reply for RCPT (default 250)."""

    def __init__(self, name: str = "remote") -> None:
        self.name = name
        self.rules: dict[str, str] = {}
        self.data_reply: str | None = None
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        for prefix, reply in self.rules.items():
            if address.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: queued"

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for _, rcpts, _ in self.messages for r in rcpts]


def start_remote(host: str, port: int, name: str = "remote") -> tuple[Controller, Remote]:
    handler = Remote(name)
    c = Controller(handler, hostname=host, port=port, ready_timeout=5)
    c.start()
    return c, handler


class Clock:
    """The worker's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def raw_server(port: int, script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", port)


async def drop_mid_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Plays a normal server until DATA, reads part of the message, then hangs up."""
    writer.write(b"220 drop.test ESMTP\r\n")
    await writer.drain()
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-drop.test\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            await reader.read(10)
            return  # connection dropped mid-DATA
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            return
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HELLO I AM NOT SMTP \x00\xff\r\nwhat\r\n")
    await writer.drain()
    await reader.read(100)
