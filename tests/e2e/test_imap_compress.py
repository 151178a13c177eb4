"""COMPRESS=DEFLATE (RFC 4978) end to end: imaplib over TLS with its socket wrapped in raw
DEFLATE (zlib wbits -15) after the tagged OK, both directions, literals included."""

from __future__ import annotations

import imaplib
import itertools
import socket
import zlib
from collections.abc import Iterator

import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))  # imaplib does not know RFC 4978
_numbers = itertools.count(1)


class DeflateIMAP(imaplib.IMAP4_SSL):
    """imaplib with RFC 4978 compression: ``compress()`` sends COMPRESS DEFLATE and from its OK
    on every byte read and written goes through raw DEFLATE."""

    deflate = inflate = None
    wire_in = wire_out = 0  # compressed octets actually received / sent

    def compress(self) -> tuple[str, list[bytes]]:
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.inflate = zlib.decompressobj(-15)
            self.pending = b""
        return typ, data

    def send(self, data: bytes) -> None:
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
            self.wire_out += len(data)
        super().send(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort("socket closed")
        self.wire_in += len(chunk)
        assert self.inflate is not None
        self.pending += self.inflate.decompress(chunk)

    def readline(self) -> bytes:
        if self.inflate is None:
            return super().readline()
        while b"\n" not in self.pending:
            self._fill()
        line, _, self.pending = self.pending.partition(b"\n")
        return line + b"\n"

    def read(self, size: int) -> bytes:
        if self.inflate is None:
            return super().read(size)
        while len(self.pending) < size:
            self._fill()
        out, self.pending = self.pending[:size], self.pending[size:]
        return out


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapcompress") / "data") as server:
        yield server


BODY = ("A line of text that compresses well, as mail does. " * 2000).encode()


@pytest.fixture
def address(srv: RunningServer) -> str:
    address = f"z{next(_numbers)}@example.com"
    acct = srv.add_account(address, PASSWORD)
    raw = b"From: a@example.org\r\nSubject: big\r\n\r\n" + BODY + b"\r\n"
    srv.call(srv.store.deliver([(acct.id, "INBOX")], raw))
    return address


def test_compress_deflate_with_imaplib_over_tls(srv: RunningServer, address: str) -> None:
    m = DeflateIMAP("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    try:
        assert "COMPRESS=DEFLATE" in m.capabilities
        m.login(address, PASSWORD)
        assert m.compress() == ("OK", [b"DEFLATE active"])
        assert m.select("INBOX") == ("OK", [b"1"])
        typ, data = m.fetch("1", "(BODY[TEXT])")
        assert typ == "OK" and data[0][1] == BODY + b"\r\n"  # type: ignore[index]
        assert m.wire_in < len(BODY) / 10  # it really was compressed on the wire
        # client -> server: a compressed literal
        msg = b"Subject: up\r\n\r\n" + b"compressed upload " * 500 + b"\r\n"
        typ, data = m.append("INBOX", None, None, msg)
        assert typ == "OK"
        typ, data = m.fetch("2", "(RFC822)")
        assert data[0][1] == msg  # type: ignore[index]
        assert m.wire_out < len(msg) / 5
        # a second COMPRESS: NO [COMPRESSIONACTIVE] (RFC 4978 section 3), still compressed
        typ, data = m._simple_command("COMPRESS", "DEFLATE")
        assert typ == "NO" and data[-1].startswith(b"[COMPRESSIONACTIVE]")
        assert m.noop()[0] == "OK"
        assert m.logout()[0] == "BYE"
    except BaseException:
        m.shutdown()
        raise


def test_compress_refusals(srv: RunningServer, address: str) -> None:
    w = Wire.tls(srv)
    try:
        assert w.cmd(b"a COMPRESS DEFLATE")[-1].startswith(b"a BAD")  # not before login
        assert w.cmd(b"b LOGIN %s %s" % (address.encode(), PASSWORD.encode()))[-1].startswith(b"b OK")
        assert w.cmd(b"c COMPRESS LZMA")[-1].startswith(b"c NO")
        assert w.cmd(b"d COMPRESS")[-1].startswith(b"d BAD")
        assert w.cmd(b"e NOOP")[-1].startswith(b"e OK")  # still uncompressed
    finally:
        w.close()


def test_compressed_bytes_pipelined_with_the_command(srv: RunningServer, address: str) -> None:
    """Bytes that arrive in the same packet as COMPRESS are already compressed: they are
    inflated, not parsed as text."""
    w = Wire.tls(srv)
    try:
        assert w.cmd(b"a LOGIN %s %s" % (address.encode(), PASSWORD.encode()))[-1].startswith(b"a OK")
        out = zlib.compressobj(6, zlib.DEFLATED, -15)
        inflate = zlib.decompressobj(-15)
        w.send(b"b COMPRESS DEFLATE\r\n" + out.compress(b"c NOOP\r\n") + out.flush(zlib.Z_SYNC_FLUSH))
        assert w.line() == b"b OK DEFLATE active"
        got = inflate.decompress(w.buf)
        w.sock.settimeout(10)
        while b"c OK" not in got:
            chunk = w.sock.recv(65536)
            assert chunk, got
            got += inflate.decompress(chunk)
        assert got.endswith(b"c OK NOOP completed\r\n")

        def send(data: bytes) -> None:
            w.sock.sendall(out.compress(data) + out.flush(zlib.Z_SYNC_FLUSH))

        def until(needle: bytes) -> bytes:
            text = b""
            while needle not in text:
                chunk = w.sock.recv(65536)
                assert chunk, text
                text += inflate.decompress(chunk)
            return text
        # IDLE under compression: the new message is pushed compressed, DONE is read inflated
        send(b"d SELECT INBOX\r\n")
        until(b"d OK")
        send(b"e IDLE\r\n")
        until(b"+ idling")
        acct = srv.call(srv.store.get_account(address))
        srv.call(srv.store.deliver([(acct.id, "INBOX")], b"Subject: pushed\r\n\r\nx\r\n"))
        assert b"* 2 EXISTS" in until(b"EXISTS")
        send(b"DONE\r\n")
        assert b"e OK" in until(b"e OK")
        # garbage that is not DEFLATE ends the connection instead of being parsed
        w.sock.sendall(b"\xff\xff\xff\xff not deflate")
        w.sock.settimeout(5)
        try:
            assert w.sock.recv(65536) == b""
        except (ConnectionError, socket.timeout, OSError):
            pass
    finally:
        w.close()
