from __future__ import annotations

import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tests.support.dns_server import DNSTestServer

from postoffice.dns import Resolver
from postoffice.outbound.mtasts import MTASTS, HTTPSPolicyFetcher, mx_matches, parse_policy
from postoffice.outbound.mx import MXError, NullMXError, delivery_hosts


async def test_mx_preference_order(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "MX", (20, "b.example.com"))
    dns_server.add("example.com", "MX", (10, "A.example.com."))
    dns_server.add("example.com", "MX", (30, "c.example.com"))
    assert await delivery_hosts(resolver, "example.com") == [
        "a.example.com", "b.example.com", "c.example.com"]


async def test_equal_preferences_are_shuffled(dns_server: DNSTestServer, resolver: Resolver) -> None:
    for h in ("m1", "m2", "m3"):
        dns_server.add("example.com", "MX", (10, f"{h}.example.com"))
    dns_server.add("example.com", "MX", (5, "first.example.com"))
    rng = random.Random(7)
    seen = Counter()
    for _ in range(12):
        hosts = await delivery_hosts(resolver, "example.com", rng=rng)
        assert hosts[0] == "first.example.com" and len(hosts) == 4
        seen[hosts[1]] += 1
    assert len(seen) > 1  # not always the same order


async def test_a_fallback_and_errors(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("plain.example", "A", "192.0.2.5")
    assert await delivery_hosts(resolver, "plain.example") == ["plain.example"]
    dns_server.add("v6only.example", "AAAA", "2001:db8::5")
    assert await delivery_hosts(resolver, "v6only.example") == ["v6only.example"]

    with pytest.raises(MXError) as nx:
        await delivery_hosts(resolver, "nowhere.example")
    assert nx.value.permanent and nx.value.status == "5.1.2"

    dns_server.add("textonly.example", "TXT", "hello")
    with pytest.raises(MXError) as nodata:
        await delivery_hosts(resolver, "textonly.example")
    assert nodata.value.permanent

    dns_server.servfail("broken.example")
    with pytest.raises(MXError) as temp:
        await delivery_hosts(resolver, "broken.example")
    assert not temp.value.permanent and temp.value.status.startswith("4.")


async def test_null_mx(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("nomail.example", "MX", (0, "."))
    dns_server.add("nomail.example", "A", "192.0.2.9")
    with pytest.raises(NullMXError) as exc:
        await delivery_hosts(resolver, "nomail.example")
    assert exc.value.permanent and exc.value.status == "5.1.10"


async def test_local_names_and_literals(dns_server: DNSTestServer, resolver: Resolver) -> None:
    dns_server.add("example.com", "MX", (10, "primary.example.com"))
    dns_server.add("example.com", "MX", (20, "me.example.net"))
    dns_server.add("example.com", "MX", (30, "other.example.com"))
    hosts = await delivery_hosts(resolver, "example.com", local_names=["me.example.net"])
    assert hosts == ["primary.example.com"]
    assert await delivery_hosts(resolver, "[192.0.2.1]") == ["192.0.2.1"]
    assert await delivery_hosts(resolver, "[IPv6:2001:db8::1]") == ["2001:db8::1"]


def test_policy_parse_and_match() -> None:
    p = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                     "mx: *.example.net\r\nmax_age: 86400\r\n")
    assert p.enforce and p.max_age == 86400
    assert p.matches("mail.example.com") and p.matches("MX1.example.net.")
    assert not p.matches("a.b.example.net") and not p.matches("example.net")
    assert not mx_matches("*.example.net", "evilexample.net")
    for bad in ("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1",
                "version: STSv1\nmode: sometimes\nmx: a\nmax_age: 1",
                "version: STSv1\nmode: enforce\nmax_age: 1",
                "version: STSv1\nmode: enforce\nmx: a\nmax_age: -1"):
        with pytest.raises(ValueError):
            parse_policy(bad)


class _PolicyHandler(BaseHTTPRequestHandler):
    body = b""
    ctype = "text/plain"
    hits = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", self.ctype)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


async def test_policy_fetch_from_local_server(dns_server: DNSTestServer, resolver: Resolver) -> None:
    _PolicyHandler.body = b"version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 600\n"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _PolicyHandler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        port = httpd.server_address[1]
        fetcher = HTTPSPolicyFetcher(
            url_template=f"http://127.0.0.1:{port}/{{domain}}/.well-known/mta-sts.txt")
        sts = MTASTS(resolver, fetcher)
        assert await sts.get_policy("example.com") is None  # no _mta-sts record
        dns_server.add("_mta-sts.example.com", "TXT", "v=STSv1; id=20240101")
        policy = await sts.get_policy("example.com")
        assert policy is not None and policy.enforce and policy.policy_id == "20240101"
        assert MTASTS.filter_hosts(policy, ["mx1.example.com", "mx.evil.example"]) == [
            "mx1.example.com"]
        await sts.get_policy("example.com")
        assert _PolicyHandler.hits == 1  # same id: served from the cache
        dns_server.servfail("_mta-sts.example.com")
        assert await sts.get_policy("example.com") == policy  # DNS trouble: keep the cache
    finally:
        httpd.shutdown()
        httpd.server_close()
