"""RFC 3461 §5.2: the DSN parameters go on to a next hop that advertises DSN, and only then."""

from __future__ import annotations

import asyncio

from postoffice.outbound.client import TLSPolicy, deliver_to_host
from tests.outbound.worker_support import free_port, raw_server

MESSAGE = b"From: a@example.com\r\nSubject: x\r\n\r\nhi\r\n"


def recorder(dsn: bool, lines: list[bytes]):  # type: ignore[no-untyped-def]
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 next.test ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            lines.append(line.rstrip(b"\r\n"))
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-next.test\r\n" + (b"250-DSN\r\n" if dsn else b"") + b"250 8BITMIME\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                while (body := await reader.readline()) != b".\r\n":
                    pass
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    return script


async def send(dsn: bool) -> tuple[list[bytes], bool]:
    port = free_port("127.0.0.1")
    lines: list[bytes] = []
    server = await raw_server(port, recorder(dsn, lines))
    try:
        results = await deliver_to_host(
            "127.0.0.1", port, "a@example.com", ["b@example.org", "c@example.org"], MESSAGE,
            helo_name="mail.test", tls_policy=TLSPolicy.NONE, timeout=5, envid="id 1+x", ret="FULL",
            rcpt_dsn=[("SUCCESS,FAILURE", "rfc822;B+x@example.org"), (None, None)])
    finally:
        server.close()
        await server.wait_closed()
    assert all(r.delivered for r in results)
    return lines, results[0].dsn


async def test_parameters_pass_to_a_dsn_next_hop() -> None:
    lines, dsn = await send(True)
    assert dsn
    assert b"MAIL FROM:<a@example.com> RET=FULL ENVID=id+201+2Bx" in lines
    assert b"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Bx@example.org" in lines
    assert b"RCPT TO:<c@example.org>" in lines


async def test_no_parameters_without_dsn() -> None:
    lines, dsn = await send(False)
    assert not dsn
    assert b"MAIL FROM:<a@example.com>" in lines
    assert b"RCPT TO:<b@example.org>" in lines
