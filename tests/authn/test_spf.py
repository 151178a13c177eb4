from __future__ import annotations

import pytest
from tests.support.dns_server import DNSTestServer

from postoffice.authn.spf import SPFResult, check_host, check_spf
from postoffice.dns import Resolver

IP = "192.0.2.10"


async def spf(resolver: Resolver, domain: str = "example.com", ip: str = IP) -> SPFResult:
    return (await check_host(resolver, ip, domain, f"alice@{domain}", "mail.example.net")).result


async def test_ip4_pass_and_fail(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    assert await spf(resolver) == SPFResult.PASS
    assert await spf(resolver, ip="198.51.100.1") == SPFResult.FAIL


async def test_softfail_neutral_and_none(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("soft.example", "TXT", "v=spf1 ~all")
    dns_server.add("neutral.example", "TXT", "v=spf1 ?all")
    dns_server.add("nothing.example", "TXT", "v=spf1")
    dns_server.add("other.example", "TXT", "google-site-verification=abc")
    assert await spf(resolver, "soft.example") == SPFResult.SOFTFAIL
    assert await spf(resolver, "neutral.example") == SPFResult.NEUTRAL
    assert await spf(resolver, "nothing.example") == SPFResult.NEUTRAL
    assert await spf(resolver, "other.example") == SPFResult.NONE
    assert await spf(resolver, "missing.example") == SPFResult.NONE


async def test_ip6_and_mapped_address(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 ip6:2001:db8::/32 ip4:192.0.2.10 -all")
    assert await spf(resolver, ip="2001:db8::25") == SPFResult.PASS
    assert await spf(resolver, ip="2001:db9::25") == SPFResult.FAIL
    assert await spf(resolver, ip="::ffff:192.0.2.10") == SPFResult.PASS


async def test_a_mx_and_cidr(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 a mx/28 a:relay.example.org -all")
    dns_server.add("example.com", "A", "203.0.113.5")
    dns_server.add("example.com", "MX", (10, "mx.example.com"))
    dns_server.add("mx.example.com", "A", "198.51.100.1")
    dns_server.add("relay.example.org", "A", "192.0.2.77")
    assert await spf(resolver, ip="203.0.113.5") == SPFResult.PASS
    assert await spf(resolver, ip="198.51.100.14") == SPFResult.PASS  # inside mx/28
    assert await spf(resolver, ip="198.51.100.16") == SPFResult.FAIL
    assert await spf(resolver, ip="192.0.2.77") == SPFResult.PASS


async def test_include_and_redirect(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 include:_spf.provider.example -all")
    dns_server.add("_spf.provider.example", "TXT", "v=spf1 ip4:192.0.2.0/24 ~all")
    assert await spf(resolver) == SPFResult.PASS
    # A softfail inside an include is "no match": the outer -all decides.
    assert await spf(resolver, ip="198.51.100.9") == SPFResult.FAIL

    dns_server.add("redir.example", "TXT", "v=spf1 redirect=example.com")
    assert await spf(resolver, "redir.example") == SPFResult.PASS
    assert await spf(resolver, "redir.example", ip="198.51.100.9") == SPFResult.FAIL

    dns_server.add("badinc.example", "TXT", "v=spf1 include:nospf.example -all")
    assert await spf(resolver, "badinc.example") == SPFResult.PERMERROR  # include -> none
    dns_server.add("badredir.example", "TXT", "v=spf1 redirect=nospf.example")
    assert await spf(resolver, "badredir.example") == SPFResult.PERMERROR


async def test_exists_with_macros(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 exists:%{ir}.%{l1r-}.%{d}.list.example -all")
    # alice -> %{l1r-} = "alice"; 192.0.2.10 reversed = 10.2.0.192
    dns_server.add("10.2.0.192.alice.example.com.list.example", "A", "127.0.0.2")
    assert await spf(resolver) == SPFResult.PASS
    assert await spf(resolver, ip="192.0.2.11") == SPFResult.FAIL
    assert ("10.2.0.192.alice.example.com.list.example", "A") in dns_server.queries


async def test_macro_letters(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add(
        "example.com", "TXT", "v=spf1 exists:%{s}.%{o}.%{h}.%{v}.m.example -all"
    )
    name = "alice@example.com.example.com.mail.example.net.in-addr.m.example"
    dns_server.add(name, "A", "127.0.0.2")
    assert await spf(resolver) == SPFResult.PASS


async def test_dns_lookup_limit(dns_server: DNSTestServer, resolver: Resolver) -> None:
    chain = [f"l{i}.example" for i in range(12)]
    for i, name in enumerate(chain[:-1]):
        dns_server.add(name, "TXT", f"v=spf1 include:{chain[i + 1]} -all")
    dns_server.add(chain[-1], "TXT", "v=spf1 +all")
    assert await spf(resolver, chain[0]) == SPFResult.PERMERROR
    # Ten terms are still fine.
    assert await spf(resolver, chain[2]) == SPFResult.PASS


async def test_void_lookup_limit(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add(
        "void.example", "TXT", "v=spf1 a:n1.example a:n2.example a:n3.example ?all"
    )
    dns_server.add("two.example", "TXT", "v=spf1 a:n1.example a:n2.example ?all")
    assert await spf(resolver, "void.example") == SPFResult.PERMERROR
    assert await spf(resolver, "two.example") == SPFResult.NEUTRAL


async def test_temperror(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.servfail("broken.example")
    assert await spf(resolver, "broken.example") == SPFResult.TEMPERROR
    dns_server.add("inc.example", "TXT", "v=spf1 include:broken.example -all")
    assert await spf(resolver, "inc.example") == SPFResult.TEMPERROR
    dns_server.add("amech.example", "TXT", "v=spf1 a:broken.example -all")
    assert await spf(resolver, "amech.example") == SPFResult.TEMPERROR


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 foo -all",  # unknown mechanism
        "v=spf1 ip4:300.1.1.1 -all",
        "v=spf1 ip4:192.0.2.0/33 -all",
        "v=spf1 redirect=a.example redirect=b.example",
        "v=spf1 a:%{x}.example -all",  # unknown macro letter
        "v=spf1 include -all",
        "v=spf1 -all exists:foo",  # syntax errors anywhere are errors (4.6)
        "v=spf1 -all a:%{z}.example.com",  # ... including bad macros in unreached terms
        "v=spf1 -all exists:50%.example.com",
    ],
)
async def test_syntax_errors(dns_server: DNSTestServer, resolver: Resolver, record: str) -> None:
    dns_server.add("example.com", "TXT", record)
    assert await spf(resolver) == SPFResult.PERMERROR


async def test_two_records_is_permerror(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 -all")
    dns_server.add("example.com", "TXT", "v=spf1 +all")
    assert await spf(resolver) == SPFResult.PERMERROR


async def test_ptr_mechanism(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 ptr -all")
    dns_server.add_ptr(IP, "out.example.com")
    dns_server.add("out.example.com", "A", IP)
    assert await spf(resolver) == SPFResult.PASS
    assert await spf(resolver, ip="192.0.2.99") == SPFResult.FAIL


async def test_helo_identity_for_null_sender(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("mail.example.net", "TXT", "v=spf1 ip4:192.0.2.10 -all")
    check, identity = await check_spf(resolver, IP, "mail.example.net", "")
    assert identity == "helo"
    assert check.result == SPFResult.PASS
