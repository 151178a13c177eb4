from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postoffice.outbound.client import SmarthostAuth, TLSPolicy, deliver_to_host

MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n.dot line\r\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    c = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    certfile, keyfile = d / "cert.pem", d / "key.pem"
    pem = c.public_bytes(serialization.Encoding.PEM)
    certfile.write_bytes(pem)
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile), pem


class Handler:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("busy"):
            return "450 4.2.1 Mailbox busy, try later"
        if address.startswith("nobody"):
            return "550 5.1.1 <%s>: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if "reject@" in ",".join(envelope.rcpt_tos):
            return "554 5.6.0 content rejected"
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                              session.ssl is not None))
        return "250 2.0.0 Ok: queued as 42"


def _controller(handler: Handler, **kw: Any) -> Controller:
    c = Controller(handler, hostname="127.0.0.1", port=_free_port(), ready_timeout=5, **kw)
    c.start()
    return c


@pytest.fixture
def smtpd(cert: tuple[str, str, bytes]) -> Iterator[tuple[Controller, Handler]]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert[0], cert[1])
    handler = Handler()
    c = _controller(handler, tls_context=ctx, require_starttls=False)
    yield c, handler
    c.stop()


async def test_mixed_recipients(smtpd: tuple[Controller, Handler]) -> None:
    c, handler = smtpd
    rcpts = ["ok@example.org", "busy@example.org", "nobody@example.org", "ok2@example.org"]
    results = await deliver_to_host("127.0.0.1", c.port, "a@example.com", rcpts, MESSAGE,
                                    helo_name="client.test", timeout=5)
    by = {r.recipient: r for r in results}
    assert [r.recipient for r in results] == rcpts
    assert by["ok@example.org"].delivered and by["ok2@example.org"].delivered
    assert by["ok@example.org"].status == "2.0.0" and by["ok@example.org"].tls
    assert by["busy@example.org"].temporary and by["busy@example.org"].code == 450
    assert by["busy@example.org"].status == "4.2.1"
    assert "Mailbox busy" in by["busy@example.org"].message
    assert by["nobody@example.org"].permanent and by["nobody@example.org"].status == "5.1.1"
    assert by["nobody@example.org"].diagnostic.startswith("smtp; 550 5.1.1")
    assert len(handler.messages) == 1
    mail_from, tos, content, tls = handler.messages[0]
    assert mail_from == "a@example.com" and tos == ["ok@example.org", "ok2@example.org"]
    assert tls  # STARTTLS was used opportunistically on a self-signed certificate
    assert content.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")


async def test_null_sender_and_no_tls(smtpd: tuple[Controller, Handler]) -> None:
    c, handler = smtpd
    results = await deliver_to_host("127.0.0.1", c.port, "", ["ok@example.org"], MESSAGE,
                                    helo_name="client.test", tls_policy=TLSPolicy.NONE, timeout=5)
    assert results[0].delivered and not results[0].tls
    assert handler.messages[0][0] == "<>"  # aiosmtpd keeps the null path as "<>"


async def test_all_refused_and_data_rejected(smtpd: tuple[Controller, Handler]) -> None:
    c, handler = smtpd
    results = await deliver_to_host("127.0.0.1", c.port, "a@example.com",
                                    ["nobody@example.org", "busy@example.org"], MESSAGE,
                                    helo_name="client.test", timeout=5)
    assert [(r.permanent, r.stage) for r in results] == [(True, "rcpt"), (False, "rcpt")]
    results = await deliver_to_host("127.0.0.1", c.port, "a@example.com",
                                    ["reject@example.org"], MESSAGE,
                                    helo_name="client.test", timeout=5)
    assert results[0].permanent and results[0].stage == "data" and results[0].code == 554
    assert handler.messages == []


async def test_verified_tls(smtpd: tuple[Controller, Handler], cert: tuple[str, str, bytes]) -> None:
    c, _ = smtpd
    trusted = ssl.create_default_context(cadata=cert[2].decode())
    ok = await deliver_to_host("127.0.0.1", c.port, "a@example.com", ["ok@example.org"], MESSAGE,
                               helo_name="client.test", tls_policy=TLSPolicy.VERIFY,
                               tls_context=trusted, tls_server_name="localhost", timeout=5)
    assert ok[0].delivered and ok[0].tls
    bad = await deliver_to_host("127.0.0.1", c.port, "a@example.com", ["ok@example.org"], MESSAGE,
                                helo_name="client.test", tls_policy=TLSPolicy.VERIFY,
                                tls_server_name="localhost", timeout=5)  # system CAs only
    assert bad[0].temporary and bad[0].stage == "tls" and bad[0].try_next_host


async def test_smarthost_auth(cert: tuple[str, str, bytes]) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert[0], cert[1])

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"relay" \
            and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)

    handler = Handler()
    c = _controller(handler, tls_context=ctx, require_starttls=True,
                    authenticator=authenticator, auth_require_tls=True)
    try:
        trusted = ssl.create_default_context(cadata=cert[2].decode())
        good = SmarthostAuth("relay", "s3cret")
        res = await deliver_to_host("127.0.0.1", c.port, "a@example.com", ["x@example.org"],
                                    MESSAGE, helo_name="client.test", smarthost_auth=good,
                                    tls_context=trusted, tls_server_name="localhost", timeout=5)
        assert res[0].delivered and res[0].tls
        bad = SmarthostAuth("relay", "wrong")
        res = await deliver_to_host("127.0.0.1", c.port, "a@example.com", ["x@example.org"],
                                    MESSAGE, helo_name="client.test", smarthost_auth=bad,
                                    tls_context=trusted, tls_server_name="localhost", timeout=5)
        assert res[0].temporary and res[0].stage == "auth" and res[0].code == 535
        assert len(handler.messages) == 1
    finally:
        c.stop()


async def _raw_server(script: Any) -> AsyncIterator[int]:
    server = await asyncio.start_server(script, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def dropping_server() -> AsyncIterator[int]:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 drop.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 drop.test\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                await reader.read(10)  # take a little of the message, then vanish
                writer.transport.abort()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    async for port in _raw_server(script):
        yield port


@pytest.fixture
async def garbage_server() -> AsyncIterator[int]:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HELLO THIS IS NOT SMTP\r\n")
        await writer.drain()
        await reader.read(100)
        writer.close()

    async for port in _raw_server(script):
        yield port


async def test_drop_mid_data_is_temporary(dropping_server: int) -> None:
    results = await deliver_to_host("127.0.0.1", dropping_server, "a@example.com",
                                    ["x@example.org", "y@example.org"], MESSAGE,
                                    helo_name="client.test", timeout=5)
    assert all(r.temporary and r.stage == "data" and r.code == 0 for r in results)


async def test_garbage_is_temporary(garbage_server: int) -> None:
    results = await deliver_to_host("127.0.0.1", garbage_server, "a@example.com",
                                    ["x@example.org"], MESSAGE, helo_name="client.test",
                                    timeout=5)
    assert results[0].temporary and results[0].stage == "connect"
    assert results[0].try_next_host


async def test_connection_refused_is_temporary() -> None:
    results = await deliver_to_host("127.0.0.1", _free_port(), "a@example.com",
                                    ["x@example.org"], MESSAGE, helo_name="client.test",
                                    timeout=2)
    assert results[0].temporary and results[0].stage == "connect"
    assert results[0].status == "4.4.1"
