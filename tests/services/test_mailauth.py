"""InboundChecker (SPF, DKIM, DMARC verdicts) and DkimSigner against a real DNS server on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dkim as dkimpy
import dns.resolver
import pytest

from postoffice.authn import dkim as dkim_mod
from postoffice.dns import Resolver, parse_nameserver
from postoffice.services.mailauth import DkimSigner, InboundChecker, dkim_records
from tests.support.dns_server import DNSTestServer, dns_server  # noqa: F401  (fixture)
from tests.support.server import make_config

MSG = (b"From: Sam <sam@sender.test>\r\nTo: bob@mail.test\r\nSubject: hello\r\n"
       b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <x1@sender.test>\r\n"
       b"Authentication-Results: mail.test; spf=pass; dkim=pass; dmarc=pass\r\n\r\nHi Bob.\r\n")


def checker(tmp_path: Path, dns: DNSTestServer, **outbound: Any) -> InboundChecker:
    config = make_config(tmp_path, inbound={"verify": True}, outbound={"dns": dns.nameserver, **outbound})
    return InboundChecker(config, Resolver(dns.nameserver, timeout=1.5))


@pytest.fixture
def sender(dns_server: DNSTestServer) -> bytes:  # noqa: F811
    """sender.test: SPF allows 192.0.2.10, DMARC p=reject, a DKIM key; returns a signed MSG."""
    keys = dkim_mod.generate_dkim_keys("ed25519-sha256")
    dns_server.add("sender.test", "TXT", "v=spf1 ip4:192.0.2.10 -all")
    dns_server.add("_dmarc.sender.test", "TXT", "v=DMARC1; p=reject")
    dns_server.add("s1._domainkey.sender.test", "TXT", keys.dns_txt)
    return dkim_mod.sign(MSG, "sender.test", "s1", keys.private_key_pem, keys.algorithm) + MSG


async def test_passing_message(tmp_path: Path, dns_server: DNSTestServer, sender: bytes) -> None:  # noqa: F811
    result = await checker(tmp_path, dns_server)("192.0.2.10", "mx.sender.test", "sam@sender.test", sender)
    assert result.action == "accept"
    header = result.header.decode()
    assert header.startswith("Authentication-Results: mail.test;")
    assert "spf=pass" in header and "dkim=pass" in header and "dmarc=pass" in header
    # the forged verdict is gone, ours is on top, the rest is untouched
    assert result.message.count(b"Authentication-Results: mail.test") == 1
    assert result.message.startswith(result.header) and result.message.endswith(b"Hi Bob.\r\n")
    assert result.header + result.stripped == result.message and b"dmarc=pass;" not in result.stripped


async def test_failing_message_is_rejected(tmp_path: Path, dns_server: DNSTestServer, sender: bytes) -> None:  # noqa: F811
    tampered = sender.replace(b"Hi Bob.", b"Send money.")
    result = await checker(tmp_path, dns_server)("198.51.100.7", "evil.test", "sam@sender.test", tampered)
    assert result.action == "reject"
    assert result.reply == "550 5.7.1 Email rejected per DMARC policy for sender.test"
    header = result.header.decode()
    assert "spf=fail" in header and "dkim=fail" in header and "dmarc=fail" in header


async def test_reject_can_become_quarantine(tmp_path: Path, dns_server: DNSTestServer, sender: bytes) -> None:  # noqa: F811
    unsigned = MSG
    check = checker(tmp_path, dns_server, dmarc_reject_action="quarantine")
    result = await check("198.51.100.7", "evil.test", "sam@sender.test", unsigned)
    assert result.action == "quarantine" and result.reject_reply == ""
    assert b"dmarc=fail" in result.header and b"dkim=none" in result.header


async def test_no_policy_means_accept(tmp_path: Path, dns_server: DNSTestServer) -> None:  # noqa: F811
    msg = MSG.replace(b"sender.test", b"nopolicy.test")
    result = await checker(tmp_path, dns_server)("198.51.100.7", "x.test", "sam@nopolicy.test", msg)
    assert result.action == "accept" and b"spf=none" in result.header and b"dmarc=none" in result.header


async def test_verification_switched_off(tmp_path: Path, dns_server: DNSTestServer) -> None:  # noqa: F811
    config = make_config(tmp_path, outbound={"dns": dns_server.nameserver})  # tests default: off
    result = await InboundChecker(config)("198.51.100.7", "x.test", "sam@sender.test", MSG)
    assert result.action == "accept" and result.header == b""
    assert b"Authentication-Results: mail.test" not in result.message  # still stripped
    assert dns_server.queries == []


async def test_dns_trouble_never_rejects(tmp_path: Path, dns_server: DNSTestServer) -> None:  # noqa: F811
    dns_server.servfail("sender.test")
    dns_server.servfail("_dmarc.sender.test")
    result = await checker(tmp_path, dns_server)("198.51.100.7", "x.test", "sam@sender.test", MSG)
    assert result.action == "accept" and b"temperror" in result.header


# -- DKIM signing ----------------------------------------------------------------------------------

OUT = b"From: Alice <alice@local.test>\nTo: bob@remote.test\nSubject: signed\n\nbody line\n"


async def test_signer_signs_with_rsa_and_ed25519(store: Any, tmp_path: Path, dns_server: DNSTestServer) -> None:  # noqa: F811
    await store.add_domain("local.test")
    config = make_config(tmp_path)
    signer = DkimSigner(store, config)
    signed = await signer.sign(OUT, "local.test")
    assert signed.count(b"DKIM-Signature:") == 2 and b"\r\nbody line\r\n" in signed
    assert signed.index(b"a=rsa-sha256") < signed.index(b"a=ed25519-sha256")

    records = await dkim_records(store, "local.test", config)
    assert [name for name, _ in records] == ["po-rsa._domainkey.local.test", "po-ed25519._domainkey.local.test"]
    assert records[0][1].startswith("v=DKIM1; k=rsa; p=") and records[1][1].startswith("v=DKIM1; k=ed25519; p=")
    for name, value in records:
        dns_server.add(name, "TXT", value)

    # dkimpy itself, fetching the published keys from the DNS server
    host, port = parse_nameserver(dns_server.nameserver)
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port = [host], port

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        answer = res.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(next(iter(answer)).strings)
    d = dkimpy.DKIM(signed)
    assert d.verify(0, dnsfunc=dnsfunc) and d.verify(1, dnsfunc=dnsfunc)
    # and through our own verifier, as a receiving postoffice would
    results = await dkim_mod.verify(Resolver(dns_server.nameserver, timeout=1.5), signed)
    assert [r.result.value for r in results] == ["pass", "pass"]

    # keys are kept: a second signer (another process) uses the same ones
    again = await DkimSigner(store, config).sign(OUT, "local.test")
    assert d.verify(0, dnsfunc=dnsfunc)
    assert await dkim_records(store, "local.test") == records
    assert dkimpy.DKIM(again).verify(0, dnsfunc=dnsfunc)


async def test_signer_leaves_foreign_domains_and_broken_messages_alone(store: Any, tmp_path: Path) -> None:
    await store.add_domain("local.test")
    signer = DkimSigner(store, make_config(tmp_path))
    assert await signer.sign(OUT, "stranger.test") == OUT.replace(b"\n", b"\r\n")
    assert await store.dkim_keys("stranger.test") == []
    no_from = b"To: bob@remote.test\r\nSubject: x\r\n\r\nbody\r\n"
    assert await signer.sign(no_from, "local.test") == no_from  # sent unsigned, logged
