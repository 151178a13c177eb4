"""DKIM verification parses a message once, whatever the number of signatures (issue 10)."""

from __future__ import annotations

import dkim as dkimpy
import pytest

from postoffice.authn import dkim as dkim_mod
from postoffice.authn.dkim import DKIMResult, generate_dkim_keys, sign, verify
from postoffice.dns import Resolver
from postoffice.store.spool import MessageSource
from tests.support.dns_server import DNSTestServer

MESSAGE = (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
           b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHi Bob,\r\n")
KEYS = generate_dkim_keys("rsa-sha256", 1024)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []

    class Counting(dkimpy.DKIM):  # type: ignore[misc]
        def __init__(self, message: bytes, *args: object, **kw: object) -> None:
            made.append(len(message))
            super().__init__(message, *args, **kw)
    monkeypatch.setattr(dkim_mod._dkim, "DKIM", Counting)
    return made


async def test_three_signatures_one_parse(dns_server: DNSTestServer, resolver: Resolver, parses: list[int]) -> None:
    dns_server.add("s1._domainkey.example.com", "TXT", KEYS.dns_txt)
    message = MESSAGE
    for selector in ("s1", "s1", "missing"):
        message = sign(message, "example.com", selector, KEYS.private_key_pem) + message
    parses.clear()
    results = await verify(resolver, message)
    assert [r.result for r in results] == [DKIMResult.PERMERROR, DKIMResult.PASS, DKIMResult.PASS]
    assert results[0].reason == "no key at missing._domainkey.example.com"
    assert parses == [len(message)]  # one verifier for the two signatures that have a key


async def test_unsigned_message_is_not_parsed_at_all(resolver: Resolver, parses: list[int]) -> None:
    assert await verify(resolver, MESSAGE) == []
    assert await verify(resolver, MessageSource(MESSAGE[:40], (MESSAGE[40:],))) == []
    assert parses == []


async def test_a_source_with_the_body_elsewhere_verifies(dns_server: DNSTestServer, resolver: Resolver,
                                                          tmp_path) -> None:
    dns_server.add("s1._domainkey.example.com", "TXT", KEYS.dns_txt)
    message = sign(MESSAGE, "example.com", "s1", KEYS.private_key_pem) + MESSAGE
    from postoffice.store.spool import Spool
    split = message.index(b"\r\n\r\n") + 4
    spooled = Spool(tmp_path).write(MessageSource(message[split:]))
    source = MessageSource(message[:split], spooled.body)
    assert [r.result for r in await verify(resolver, source)] == [DKIMResult.PASS]
    tampered = MessageSource(message[:split], (b"Hi Eve,\r\n",))
    assert [r.result for r in await verify(resolver, tampered)] == [DKIMResult.FAIL]
