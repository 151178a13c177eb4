"""Where to deliver mail for a domain: MX look-up with RFC 5321 5.1 rules and RFC 7505 null MX."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable

from postoffice.dns import NoData, NXDomain, Resolver, TempDNSError, is_null_mx

__all__ = ["MXError", "NullMXError", "delivery_hosts", "order_mx"]


class MXError(Exception):
    """Routing failed. ``permanent`` decides bounce (True) or retry (False); ``status`` is the
    RFC 3463 enhanced status code for the DSN."""

    def __init__(self, domain: str, reason: str, *, permanent: bool, status: str) -> None:
        super().__init__(f"{domain}: {reason}")
        self.domain = domain
        self.reason = reason
        self.permanent = permanent
        self.status = status


class NullMXError(MXError):
    """RFC 7505: the domain publishes a null MX and accepts no mail."""

    def __init__(self, domain: str) -> None:
        super().__init__(
            domain, "domain does not accept mail (null MX, RFC 7505)", permanent=True,
            status="5.1.10",
        )


def order_mx(records: Iterable[tuple[int, str]], rng: random.Random | None = None) -> list[str]:
    """Sort by preference; shuffle hosts of equal preference (RFC 5321 5.1); drop duplicates."""
    r = rng or random
    by_pref: dict[int, list[str]] = {}
    for pref, host in records:
        if host:
            by_pref.setdefault(pref, []).append(host.lower().rstrip("."))
    hosts: list[str] = []
    seen: set[str] = set()
    for pref in sorted(by_pref):
        group = by_pref[pref]
        r.shuffle(group)
        for h in group:
            if h not in seen:
                seen.add(h)
                hosts.append(h)
    return hosts


async def delivery_hosts(
    resolver: Resolver,
    domain: str,
    *,
    local_names: Iterable[str] = (),
    rng: random.Random | None = None,
) -> list[str]:
    """Hosts to try for ``domain``, most preferred first.

    * an address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``) is returned as the address;
    * MX records: sorted by preference, random among equals; a null MX raises NullMXError;
    * no MX records but the name exists: the domain itself if it has A/AAAA (implicit MX);
    * NXDOMAIN: permanent MXError; DNS trouble: temporary MXError.

    ``local_names`` are our own host names: when one of them is among the MX hosts, only hosts
    with a strictly lower preference value are kept (RFC 5321 5.1, loop avoidance).
    """
    domain = domain.strip().rstrip(".").lower()
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal.lower().startswith("ipv6:"):
            literal = literal[5:]
        try:
            return [str(ipaddress.ip_address(literal))]
        except ValueError:
            raise MXError(domain, "invalid address literal", permanent=True, status="5.1.2") from None
    try:
        records = await resolver.mx(domain)
    except NXDomain:
        raise MXError(domain, "domain does not exist", permanent=True, status="5.1.2") from None
    except TempDNSError as exc:
        raise MXError(domain, f"MX look-up failed: {exc.detail}", permanent=False, status="4.4.3") from None
    except NoData:
        records = []
    if records:
        if is_null_mx(records):
            raise NullMXError(domain)
        local = {n.lower().rstrip(".") for n in local_names}
        mine = [pref for pref, host in records if host in local]
        if mine:
            cutoff = min(mine)
            records = [(p, h) for p, h in records if p < cutoff]
            if not records:
                raise MXError(
                    domain, "we are the best MX but the domain is not local (mail loop)",
                    permanent=True, status="5.4.6",
                )
        hosts = order_mx(records, rng)
        if hosts:
            return hosts
        raise NullMXError(domain)  # only root exchanges: treat like null MX
    # RFC 5321 5.1: no MX -> the domain itself is the implicit MX, if it has an address.
    try:
        await resolver.addresses(domain)
    except (NXDomain, NoData):
        raise MXError(domain, "no MX and no address records", permanent=True, status="5.1.2") from None
    except TempDNSError as exc:
        raise MXError(domain, f"address look-up failed: {exc.detail}", permanent=False, status="4.4.3") from None
    return [domain]
