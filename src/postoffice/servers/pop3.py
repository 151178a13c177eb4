"""POP3 listener placeholder: greets and says goodbye (the POP3 server replaces it)."""

from __future__ import annotations

from typing import Any

from .listener import Connection


class Pop3Server:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def handle(self, conn: Connection) -> None:
        await conn.send(b"+OK postoffice POP3 server ready\r\n")
        while data := await conn.read(600):
            if data.strip().upper().startswith(b"QUIT"):
                await conn.send(b"+OK bye\r\n")
                return
            await conn.send(b"-ERR not implemented yet\r\n")
