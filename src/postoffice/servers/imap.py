"""IMAP listener placeholder: greets and says goodbye (the IMAP server replaces it)."""

from __future__ import annotations

from typing import Any

from .listener import Connection


class ImapServer:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def handle(self, conn: Connection) -> None:
        await conn.send(b"* OK postoffice IMAP ready\r\n")
        while data := await conn.read(1800):
            tag = data.split(b" ", 1)[0]
            if b"LOGOUT" in data.upper():
                await conn.send(b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
                return
            await conn.send(tag + b" BAD not implemented yet\r\n")
