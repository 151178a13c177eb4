"""A raw IMAP test client: send exact bytes, read response lines (with literals) until a tag.

    wire = Wire.tls(srv)                     # or Wire.plain(srv) on 143
    wire.greeting                            # b"* OK [CAPABILITY ...] ..."
    lines = wire.cmd(b"a1 LOGIN alice@example.com password1")
    assert lines[-1].startswith(b"a1 OK")

``cmd`` returns every line up to and including the tagged one; a line announcing a literal
is returned joined with the literal's bytes and the rest of the line.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any

_LITERAL = re.compile(rb"~?\{(\d+)\}\r\n$")


class Wire:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.greeting = self.line()

    @classmethod
    def tls(cls, srv: Any, timeout: float = 10) -> Wire:
        raw = socket.create_connection(("127.0.0.1", srv.port("imaps")), timeout=timeout)
        return cls(srv.client_tls().wrap_socket(raw, server_hostname="localhost"))

    @classmethod
    def plain(cls, srv: Any, timeout: float = 10) -> Wire:
        return cls(socket.create_connection(("127.0.0.1", srv.port("imap")), timeout=timeout))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise
        except (ConnectionError, ssl.SSLError, OSError):
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def line(self) -> bytes:
        """One response line (CRLF stripped), literals included; b"" at EOF."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill():
                    rest, self.buf = self.buf, b""
                    return out + rest
            head, _, self.buf = self.buf.partition(b"\r\n")
            m = _LITERAL.search(head + b"\r\n")
            if m is None:
                return out + head
            size = int(m.group(1))
            while len(self.buf) < size:
                if not self._fill():
                    break
            out += head + b"\r\n" + self.buf[:size]
            self.buf = self.buf[size:]

    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if not line or line.startswith(tag + b" "):
                return lines

    def cmd(self, line: bytes, tag: bytes | None = None) -> list[bytes]:
        self.send(line + b"\r\n")
        return self.until(tag or line.split(b" ", 1)[0])

    def login(self, address: str, password: str) -> list[bytes]:
        lines = self.cmd(b"L1 LOGIN " + address.encode() + b" " + password.encode())
        assert lines[-1].startswith(b"L1 OK"), lines
        return lines

    def closed(self, timeout: float = 5) -> bool:
        """True if the server closed the connection (reads to EOF, dropping data)."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except socket.timeout:
            return False
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
