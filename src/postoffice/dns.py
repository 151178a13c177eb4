"""Asynchronous DNS look-ups for SPF, DKIM, DMARC, MTA-STS and outbound MX routing.

One :class:`Resolver` wraps ``dns.asyncresolver`` and turns dnspython's many outcomes into three
exceptions the callers care about, because RFC 7208 (SPF), RFC 7489 (DMARC) and the queue treat
them differently:

* :class:`NXDomain` -- the name does not exist (RCODE 3). Permanent.
* :class:`NoData` -- the name exists but has no record of the asked type. Permanent.
* :class:`TempDNSError` -- SERVFAIL, REFUSED, timeouts, no reachable server. Try again later.

The nameserver can be pinned (``[outbound] dns = "127.0.0.1:5353"``), which is how the tests point
every look-up at their own server on loopback.
"""

from __future__ import annotations

import ipaddress

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

__all__ = [
    "DNSError",
    "NXDomain",
    "NoData",
    "TempDNSError",
    "Resolver",
    "parse_nameserver",
    "is_null_mx",
]


def is_ip(host: str) -> bool:
    """``host`` is an IPv4 or IPv6 address literal, not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class DNSError(Exception):
    """Base class of every look-up failure raised by :class:`Resolver`."""

    def __init__(self, name: str, rdtype: str, detail: str = "") -> None:
        self.name = name
        self.rdtype = rdtype
        self.detail = detail
        super().__init__(f"{rdtype} {name}: {detail or self.__class__.__name__}")


class NXDomain(DNSError):
    """The queried name does not exist (RCODE 3, "Name Error")."""


class NoData(DNSError):
    """The name exists but has no records of the requested type (NOERROR, empty answer)."""


class TempDNSError(DNSError):
    """SERVFAIL, REFUSED, timeout or no usable server: the answer may differ later."""


def parse_nameserver(spec: str) -> tuple[str, int]:
    """Parse ``"host"``, ``"host:port"``, ``"[v6]:port"`` or a bare IPv6 address."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
        return host, port
    if spec.count(":") == 1:
        host, _, port_s = spec.partition(":")
        return host, int(port_s)
    return spec, 53


def is_null_mx(records: list[tuple[int, str]]) -> bool:
    """RFC 7505: a single MX with preference 0 and the root as exchange means "no mail"."""
    return len(records) == 1 and records[0][1] == ""


def _host(name: dns.name.Name) -> str:
    """Lower-case presentation form without the trailing dot ("" for the root)."""
    text = name.to_text(omit_final_dot=True).lower()
    return "" if text in ("", ".") else text


class Resolver:
    """Async DNS resolver with the error model described in the module docstring.

    ``nameserver`` is ``"host:port"`` (or a list of them); ``None`` reads the system
    configuration (``/etc/resolv.conf``). ``timeout`` bounds each whole look-up.
    """

    def __init__(
        self,
        nameserver: str | list[str] | None = None,
        *,
        timeout: float = 5.0,
    ) -> None:
        self.timeout = timeout
        if nameserver is None:
            try:
                self._resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                self._resolver = dns.asyncresolver.Resolver(configure=False)
                self._resolver.nameservers = ["127.0.0.1"]
        else:
            specs = [nameserver] if isinstance(nameserver, str) else list(nameserver)
            parsed = [parse_nameserver(s) for s in specs]
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in parsed]
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 2.0)
        self._resolver.cache = None

    # -- core -----------------------------------------------------------------------------------

    async def query(self, name: str, rdtype: str) -> list[object]:
        """Return the rdata of ``rdtype`` at ``name`` (CNAMEs followed) or raise a DNSError."""
        try:
            qname = dns.name.from_text(name.rstrip(".") + ".") if name not in ("", ".") else None
        except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
            # A syntactically impossible name cannot exist.
            raise NXDomain(name, rdtype, f"invalid name: {exc}") from None
        if qname is None:
            raise NXDomain(name, rdtype, "empty name")
        try:
            answer = await self._resolver.resolve(
                qname, rdtype, search=False, raise_on_no_answer=True, lifetime=self.timeout
            )
        except dns.resolver.NXDOMAIN:
            raise NXDomain(name, rdtype) from None
        except dns.resolver.NoAnswer:
            raise NoData(name, rdtype) from None
        except dns.resolver.YXDOMAIN:
            raise NXDomain(name, rdtype, "YXDOMAIN") from None
        except dns.resolver.NoNameservers as exc:
            raise TempDNSError(name, rdtype, f"no server answered: {exc}") from None
        except dns.exception.Timeout:
            raise TempDNSError(name, rdtype, "timeout") from None
        except dns.exception.DNSException as exc:
            raise TempDNSError(name, rdtype, str(exc) or exc.__class__.__name__) from None
        except OSError as exc:
            raise TempDNSError(name, rdtype, f"network error: {exc}") from None
        return list(answer)

    # -- typed helpers --------------------------------------------------------------------------

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """MX records as ``(preference, host)`` sorted by preference then host.

        A null MX (RFC 7505) comes back as ``[(0, "")]``; test it with :func:`is_null_mx`.
        """
        records = await self.query(domain, "MX")
        result = sorted({(int(r.preference), _host(r.exchange)) for r in records})  # type: ignore[attr-defined]
        return result

    async def a(self, name: str) -> list[str]:
        return [r.address for r in await self.query(name, "A")]  # type: ignore[attr-defined]

    async def aaaa(self, name: str) -> list[str]:
        return [
            str(ipaddress.IPv6Address(r.address))  # type: ignore[attr-defined]
            for r in await self.query(name, "AAAA")
        ]

    async def addresses(self, name: str) -> list[str]:
        """A and AAAA together (AAAA first is not implied). Raises only if both fail alike.

        If one family answers and the other does not, the answer is returned. If neither has
        data, the "strongest" error is raised: TempDNSError over NXDomain over NoData.
        """
        found: list[str] = []
        errors: list[DNSError] = []
        for fn in (self.a, self.aaaa):
            try:
                found.extend(await fn(name))
            except DNSError as exc:
                errors.append(exc)
        if found:
            return found
        for kind in (TempDNSError, NXDomain, NoData):
            for exc in errors:
                if isinstance(exc, kind):
                    raise exc
        raise NoData(name, "A/AAAA")  # pragma: no cover - errors is never empty here

    async def txt(self, name: str) -> list[str]:
        """TXT records, each record's character-strings concatenated (RFC 7208 3.3).

        Decoded as latin-1 so that no byte is lost; the protocols that use TXT are ASCII.
        """
        records = await self.query(name, "TXT")
        return [b"".join(r.strings).decode("latin-1") for r in records]  # type: ignore[attr-defined]

    async def ptr(self, ip: str) -> list[str]:
        rev = dns.reversename.from_address(ip).to_text()
        return [_host(r.target) for r in await self.query(rev, "PTR")]  # type: ignore[attr-defined]

    async def cname(self, name: str) -> str:
        records = await self.query(name, "CNAME")
        return _host(records[0].target)  # type: ignore[attr-defined]
