from __future__ import annotations

import email
import random
from email import policy

import pytest
from tests.support.dns_server import DNSTestServer

from postoffice.authn import authenticate_inbound
from postoffice.authn.dkim import DKIMResult, generate_dkim_keys, sign, verify
from postoffice.authn.dmarc import DMARCPolicy, DMARCResult, parse_record
from postoffice.authn.orgdomain import organizational_domain
from postoffice.authn.results import strip_authentication_results
from postoffice.dns import Resolver

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: hello\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hi Bob,\r\nsee you.\r\n"
)

RSA_KEYS = generate_dkim_keys("rsa-sha256")
ED_KEYS = generate_dkim_keys("ed25519-sha256")


def signed(keys=RSA_KEYS, domain: str = "example.com", selector: str = "s1",
           message: bytes = MESSAGE) -> bytes:
    return sign(message, domain, selector, keys.private_key_pem, keys.algorithm) + message


@pytest.mark.parametrize("keys", [RSA_KEYS, ED_KEYS], ids=["rsa", "ed25519"])
async def test_sign_then_verify(dns_server: DNSTestServer, resolver: Resolver, keys) -> None:
    dns_server.add("s1._domainkey.example.com", "TXT", keys.dns_txt)
    msg = signed(keys)
    results = await verify(resolver, msg)
    assert [r.result for r in results] == [DKIMResult.PASS]
    assert results[0].domain == "example.com" and results[0].selector == "s1"
    assert results[0].algorithm == keys.algorithm

    tampered = msg.replace(b"see you.", b"see you!")
    assert [r.result for r in await verify(resolver, tampered)] == [DKIMResult.FAIL]
    tampered_header = msg.replace(b"Subject: hello", b"Subject: HELLO")
    assert [r.result for r in await verify(resolver, tampered_header)] == [DKIMResult.FAIL]


def test_key_record_shapes() -> None:
    assert RSA_KEYS.dns_txt.startswith("v=DKIM1; k=rsa; p=MII")
    assert ED_KEYS.dns_txt.startswith("v=DKIM1; k=ed25519; p=")
    import base64

    assert len(base64.b64decode(ED_KEYS.dns_txt.split("p=")[1])) == 32
    assert RSA_KEYS.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


async def test_two_signatures_and_missing_key(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("ed._domainkey.example.com", "TXT", ED_KEYS.dns_txt)
    msg = signed(RSA_KEYS, "example.com", "gone")  # key not published
    msg = sign(msg, "example.com", "ed", ED_KEYS.private_key_pem, "ed25519-sha256") + msg
    results = await verify(resolver, msg)
    assert [(r.result, r.selector) for r in results] == [
        (DKIMResult.PASS, "ed"),
        (DKIMResult.PERMERROR, "gone"),
    ]
    assert await verify(resolver, MESSAGE) == []


async def test_dkim_temperror(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.servfail("s1._domainkey.example.com")
    assert [r.result for r in await verify(resolver, signed())] == [DKIMResult.TEMPERROR]


def test_parse_record_and_orgdomain() -> None:
    r = parse_record("v=DMARC1; p=quarantine; sp=reject; pct=50; adkim=s")
    assert (r.p, r.sp, r.pct, r.adkim, r.aspf) == (
        DMARCPolicy.QUARANTINE, DMARCPolicy.REJECT, 50, "s", "r")
    with pytest.raises(ValueError):
        parse_record("v=DMARC1; p=bogus")
    assert parse_record("v=DMARC1; rua=mailto:x@example.com").p == DMARCPolicy.NONE
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("mail.example.com") == "example.com"


async def test_dmarc_pass_via_aligned_dkim(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("s1._domainkey.mail.example.com", "TXT", RSA_KEYS.dns_txt)
    dns_server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    # Signed by a subdomain: relaxed alignment; SPF for the bounce domain fails.
    msg = signed(RSA_KEYS, "mail.example.com")
    dns_server.add("bounces.other.example", "TXT", "v=spf1 -all")
    v = await authenticate_inbound(
        resolver, "mx.test", "192.0.2.1", "helo.other.example", "b@bounces.other.example", msg
    )
    assert v.spf.result == "fail"
    assert v.dmarc.result == DMARCResult.PASS and v.dmarc.dkim_aligned
    assert v.action == "accept"
    parsed = email.message_from_bytes(v.header + msg, policy=policy.default)
    ar = str(parsed["Authentication-Results"])
    assert ar.startswith("mx.test;")
    assert "spf=fail" in ar and "smtp.mailfrom=b@bounces.other.example" in ar
    assert "dkim=pass" in ar and "header.d=mail.example.com" in ar and "header.s=s1" in ar
    assert "dmarc=pass" in ar and "header.from=example.com" in ar


async def test_dmarc_strict_alignment_fails(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("s1._domainkey.mail.example.com", "TXT", RSA_KEYS.dns_txt)
    dns_server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; adkim=s")
    msg = signed(RSA_KEYS, "mail.example.com")
    v = await authenticate_inbound(resolver, "mx.test", "192.0.2.1", "h.example", "", msg)
    assert v.dmarc.result == DMARCResult.FAIL and v.action == "reject"


async def test_dmarc_reject_and_spf_alignment(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; rua=mailto:r@example.com")
    dns_server.add("example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    forged = await authenticate_inbound(
        resolver, "mx.test", "198.51.100.7", "evil.example", "x@example.com", MESSAGE
    )
    assert forged.dmarc.result == DMARCResult.FAIL
    assert forged.action == "reject"
    assert b"dmarc=fail (p=reject dis=reject)" in forged.header
    assert b"dkim=none" in forged.header
    legit = await authenticate_inbound(
        resolver, "mx.test", "192.0.2.8", "out.example.com", "x@example.com", MESSAGE
    )
    assert legit.dmarc.result == DMARCResult.PASS and legit.dmarc.spf_aligned
    assert legit.action == "accept"


async def test_dmarc_quarantine_subdomain_policy_and_pct(
    dns_server: DNSTestServer, resolver: Resolver
) -> None:
    dns_server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; sp=quarantine")
    msg = MESSAGE.replace(b"alice@example.com", b"alice@news.example.com")
    v = await authenticate_inbound(resolver, "mx.test", "192.0.2.1", "h.example", "", msg)
    assert v.dmarc.record_domain == "example.com"
    assert v.dmarc.policy == DMARCPolicy.QUARANTINE and v.action == "quarantine"

    dns_server.set("_dmarc.example.com", "TXT", ["v=DMARC1; p=quarantine; pct=0"])
    v = await authenticate_inbound(
        resolver, "mx.test", "192.0.2.1", "h.example", "", MESSAGE, rng=random.Random(1)
    )
    assert v.dmarc.result == DMARCResult.FAIL and v.action == "accept"


async def test_no_dmarc_record_and_temperror(dns_server: DNSTestServer, resolver: Resolver) -> None:
    v = await authenticate_inbound(resolver, "mx.test", "192.0.2.1", "h.example", "", MESSAGE)
    assert v.dmarc.result == DMARCResult.NONE and v.action == "accept"
    dns_server.servfail("_dmarc.example.com")
    v = await authenticate_inbound(resolver, "mx.test", "192.0.2.1", "h.example", "", MESSAGE)
    assert v.dmarc.result == DMARCResult.TEMPERROR and v.action == "accept"


def test_strip_forged_results() -> None:
    msg = (
        b"Authentication-Results: mx.test;\r\n\tdkim=pass header.d=bank.example\r\n"
        b"Authentication-Results: other.example; spf=pass\r\n" + MESSAGE
    )
    out = strip_authentication_results(msg, "MX.test")
    assert b"bank.example" not in out
    assert out.startswith(b"Authentication-Results: other.example; spf=pass\r\n")
    assert out.endswith(MESSAGE)
