"""A real DNS server on a loopback UDP+TCP port for tests, built with dnslib.

Tests set records and point :class:`postoffice.dns.Resolver` at ``server.nameserver``::

    with DNSTestServer() as dns:
        dns.add("example.com", "MX", (10, "mx.example.com"))
        dns.add("mx.example.com", "A", "192.0.2.1")
        dns.add("example.com", "TXT", "v=spf1 -all")
        resolver = Resolver(dns.nameserver, timeout=2)

Unknown names answer NXDOMAIN; a known name without the asked type answers NOERROR with an empty
answer (NODATA). CNAMEs are followed within the zone, as a recursive server would. Names passed to
:meth:`servfail` answer SERVFAIL; names passed to :meth:`drop` are never answered (timeouts).
Every question is recorded in :attr:`queries` as ``(name, type)`` so tests can count look-ups.

The ``dns_server`` pytest fixture at the bottom yields a started server and stops it afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

__all__ = ["DNSTestServer", "dns_server"]


def _norm(name: str) -> str:
    return name.rstrip(".").lower() + "."


class _DropRequest(Exception):
    pass


class _Handler(DNSHandler):
    def get_reply(self, data: bytes) -> bytes:
        try:
            return super().get_reply(data)
        except _DropRequest:
            return b""

    def send_data(self, data: bytes) -> Any:
        if not data:
            return None
        return super().send_data(data)


class DNSTestServer(BaseResolver):
    """In-memory zone served over UDP and TCP on 127.0.0.1 (one port for both)."""

    TYPES = ("A", "AAAA", "MX", "TXT", "CNAME", "PTR")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, list[tuple[str, Any]]] = {}
        self._servfail: set[str] = set()
        self._drop: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._udp: DNSServer | None = None
        self._tcp: DNSServer | None = None
        self.port = 0

    # -- zone editing ---------------------------------------------------------------------------

    def add(self, name: str, rtype: str, value: Any) -> None:
        """Add one record. MX value: ``(preference, host)``; TXT value: str or list of strings
        (a str longer than 255 bytes is split into several character-strings)."""
        rtype = rtype.upper()
        if rtype not in self.TYPES:
            raise ValueError(f"unsupported type {rtype}")
        with self._lock:
            self.records.setdefault(_norm(name), []).append((rtype, value))

    def add_ptr(self, ip: str, host: str) -> None:
        import ipaddress

        self.add(ipaddress.ip_address(ip).reverse_pointer, "PTR", host)

    def set(self, name: str, rtype: str, values: list[Any]) -> None:
        """Replace all records of ``rtype`` at ``name``."""
        rtype = rtype.upper()
        with self._lock:
            kept = [r for r in self.records.get(_norm(name), []) if r[0] != rtype]
            self.records[_norm(name)] = kept
        for v in values:
            self.add(name, rtype, v)

    def servfail(self, name: str) -> None:
        with self._lock:
            self._servfail.add(_norm(name))

    def drop(self, name: str) -> None:
        with self._lock:
            self._drop.add(_norm(name))

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
            self._servfail.clear()
            self._drop.clear()
            self.queries.clear()

    def count(self, rtype: str | None = None) -> int:
        return sum(1 for _, t in self.queries if rtype is None or t == rtype.upper())

    # -- dnslib resolver ------------------------------------------------------------------------

    @staticmethod
    def _rdata(rtype: str, value: Any) -> Any:
        if rtype == "A":
            return A(value)
        if rtype == "AAAA":
            return AAAA(value)
        if rtype == "MX":
            pref, host = value
            return MX(host if host not in ("", ".") else ".", pref)
        if rtype == "CNAME":
            return CNAME(value)
        if rtype == "PTR":
            return PTR(value)
        if rtype == "TXT":
            if isinstance(value, str):
                raw = value.encode()
                chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
            else:
                chunks = [v.encode() if isinstance(v, str) else v for v in value]
            return TXT(chunks)
        raise ValueError(rtype)

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries.append((qname.rstrip("."), qtype))
            if qname in self._drop:
                raise _DropRequest()
            if qname in self._servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            name = qname
            for _ in range(8):  # follow CNAME chains inside the zone
                recs = self.records.get(name)
                if recs is None:
                    if name == qname:
                        reply.header.rcode = RCODE.NXDOMAIN
                    return reply
                cnames = [v for t, v in recs if t == "CNAME"]
                if cnames and qtype != "CNAME":
                    target = _norm(cnames[0])
                    reply.add_answer(
                        RR(DNSLabel(name), QTYPE.CNAME, rdata=CNAME(target), ttl=60)
                    )
                    name = target
                    continue
                for t, v in recs:
                    if t == qtype:
                        reply.add_answer(
                            RR(DNSLabel(name), getattr(QTYPE, t), rdata=self._rdata(t, v), ttl=60)
                        )
                return reply
        return reply

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DNSTestServer:
        logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        last: Exception | None = None
        for _ in range(20):
            udp = DNSServer(self, address="127.0.0.1", port=0, logger=logger, handler=_Handler)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    self, address="127.0.0.1", port=port, tcp=True, logger=logger, handler=_Handler
                )
            except OSError as exc:  # TCP port taken: try another
                udp.server.server_close()
                last = exc
                continue
            self._udp, self._tcp, self.port = udp, tcp, port
            for srv in (udp, tcp):  # short poll interval: stop() returns quickly
                threading.Thread(
                    target=srv.server.serve_forever,
                    kwargs={"poll_interval": 0.02},
                    daemon=True,
                    name=f"dns-test-{port}",
                ).start()
            return self
        raise RuntimeError(f"could not bind a DNS test port: {last}")

    def stop(self) -> None:
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.server.shutdown()
                srv.server.server_close()
        self._udp = self._tcp = None

    def __enter__(self) -> DNSTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def dns_server() -> Iterator[DNSTestServer]:
    server = DNSTestServer().start()
    try:
        yield server
    finally:
        server.stop()

