"""SMTP listener placeholder: greets and says goodbye (the SMTP server replaces it)."""

from __future__ import annotations

from typing import Any

from .listener import Connection


class SmtpServer:
    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode

    async def handle(self, conn: Connection) -> None:
        await conn.send(f"220 {self.app.config.hostname} ESMTP postoffice\r\n".encode())
        while data := await conn.read(300):
            if data.strip().upper().startswith(b"QUIT"):
                await conn.send(b"221 2.0.0 Bye\r\n")
                return
            await conn.send(b"502 5.5.1 Not implemented yet\r\n")
