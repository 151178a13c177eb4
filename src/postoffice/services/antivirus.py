"""Virus scanning with ClamAV's clamd (issue 15): ``[filter] clamav`` names clamd's socket, a
path (``/run/clamav/clamd.ctl``, Debian's) or ``host:port`` (``TCPSocket``).

One ``INSTREAM`` per message (clamd's protocol, man clamd: ``zINSTREAM\\0``, then chunks each
preceded by its length as a 4-octet big-endian number, a zero length to end; the answer is
``stream: OK`` or ``stream: <name> FOUND``, NUL-terminated with the ``z`` prefix). An infected
message is refused (554 5.7.1); clamd down, slow or answering an error (e.g. the message is
over its StreamMaxLength) follows ``[filter] on_failure`` as rspamd does.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass

from ..store.spool import MessageSource

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


@dataclass(frozen=True)
class ScanResult:
    status: str  # "clean", "infected" or "unknown" (clamd could not be asked)
    virus: str = ""
    error: str = ""


class ClamdClient:
    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.startswith("/"):
            return await asyncio.open_unix_connection(self.address)
        host, _, port = self.address.rpartition(":")
        return await asyncio.open_connection(host.strip("[]"), int(port))

    async def scan(self, message: MessageSource | bytes) -> ScanResult:
        """Never raises; never takes longer than the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._scan(message)
        except (TimeoutError, asyncio.TimeoutError):
            return self._failure(f"no answer within {self.timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - clamd down or confused: not the sender's fault
            return self._failure(f"{type(exc).__name__}: {exc}")

    def _failure(self, why: str) -> ScanResult:
        log.warning("clamd at %s could not scan a message: %s", self.address, why)
        return ScanResult("unknown", error=why)

    async def _scan(self, message: MessageSource | bytes) -> ScanResult:
        source = MessageSource.of(message)
        data = source.read() if source.in_memory else await asyncio.to_thread(source.read)
        reader, writer = await self._connect()
        try:
            writer.write(b"zINSTREAM\0")
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                chunk = view[start:start + CHUNK]
                writer.write(struct.pack(">I", len(chunk)))
                writer.write(chunk)
                await writer.drain()
            writer.write(struct.pack(">I", 0))
            await writer.drain()
            answer = (await reader.readuntil(b"\0")).rstrip(b"\0").decode("utf-8", "replace").strip()
        finally:
            writer.close()
        # "stream: OK", "stream: Eicar-Test-Signature FOUND", "INSTREAM size limit exceeded. ERROR"
        text = answer.partition(": ")[2] if answer.startswith("stream:") else answer
        if text == "OK":
            return ScanResult("clean")
        if text.endswith(" FOUND"):
            name = "".join(ch for ch in text[:-6].strip() if ch.isprintable())[:200]
            return ScanResult("infected", virus=name or "unknown")
        raise RuntimeError(f"clamd answered {answer[:200]!r}")
