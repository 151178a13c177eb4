from __future__ import annotations

import pathlib
import sys

import pytest

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # make `tests.support` importable without a pytest pythonpath setting
    sys.path.insert(0, _ROOT)

from tests.support.dns_server import DNSTestServer, dns_server  # noqa: E402,F401

from postoffice.dns import Resolver  # noqa: E402


@pytest.fixture
def resolver(dns_server: DNSTestServer) -> Resolver:
    return Resolver(dns_server.nameserver, timeout=1.5)
