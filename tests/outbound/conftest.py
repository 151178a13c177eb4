from __future__ import annotations

import pytest

from postoffice.dns import Resolver
from tests.support.dns_server import DNSTestServer, dns_server  # noqa: F401  (fixture)


@pytest.fixture
def resolver(dns_server: DNSTestServer) -> Resolver:  # noqa: F811
    return Resolver(dns_server.nameserver, timeout=1.5)
