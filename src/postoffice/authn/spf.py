"""SPF (RFC 7208) ``check_host()`` over :class:`postoffice.dns.Resolver`.

Implemented: every mechanism (all, include, a, mx, ptr, ip4, ip6, exists), the ``redirect``
modifier (``exp`` is parsed and ignored: we never build explanations), macros (section 7,
including the ``p`` letter answered as "unknown" without a look-up), the limit of 10 DNS-querying
terms (section 4.6.4), 10 MX / PTR names per mechanism and 2 void look-ups, all as ``permerror``.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field

from postoffice.dns import DNSError, NoData, NXDomain, Resolver, TempDNSError

__all__ = ["SPFResult", "SPFCheck", "check_host", "check_spf"]

MAX_DNS_TERMS = 10  # RFC 7208 4.6.4
MAX_VOID_LOOKUPS = 2  # RFC 7208 4.6.4
MAX_MX_OR_PTR_NAMES = 10  # RFC 7208 4.6.4


class SPFResult(enum.StrEnum):
    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True)
class SPFCheck:
    """Outcome of a check: the result, the domain checked and a short human reason."""

    result: SPFResult
    domain: str
    reason: str = ""
    mechanism: str | None = None


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


_QUALIFIERS = {
    "+": SPFResult.PASS,
    "-": SPFResult.FAIL,
    "~": SPFResult.SOFTFAIL,
    "?": SPFResult.NEUTRAL,
}
_MECHANISMS = {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"}
_MACRO_RE = re.compile(r"%(?:\{([A-Za-z])([0-9]*)(r?)([.\-+,/_=]*)\}|(.))")
_TOPLABEL_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?$")


@dataclass
class _Context:
    resolver: Resolver
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    dns_terms: int = 0
    void_lookups: int = 0
    depth: int = 0
    trail: list[str] = field(default_factory=list)

    def count_term(self) -> None:
        self.dns_terms += 1
        if self.dns_terms > MAX_DNS_TERMS:
            raise _PermError("more than 10 DNS-querying terms (RFC 7208 4.6.4)")

    def count_void(self) -> None:
        self.void_lookups += 1
        if self.void_lookups > MAX_VOID_LOOKUPS:
            raise _PermError("more than 2 void DNS look-ups (RFC 7208 4.6.4)")


# -- helpers -----------------------------------------------------------------------------------


def _normalise_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(ip.strip().strip("[]").removeprefix("IPv6:"))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # RFC 7208 5: treat IPv4-mapped addresses as IPv4
    return addr


def _valid_domain(domain: str) -> bool:
    """RFC 7208 4.3: a usable <domain> is a multi-label FQDN with sane label lengths."""
    d = domain.rstrip(".")
    if not d or len(d) > 253 or "." not in d:
        return False
    return all(0 < len(label) <= 63 for label in d.split("."))


def _split_sender(sender: str, helo: str) -> tuple[str, str]:
    """(local-part, domain) of the sender; 4.3: empty local-part means "postmaster"."""
    if "@" in sender:
        local, _, domain = sender.rpartition("@")
    else:
        local, domain = "", sender or helo
    return (local or "postmaster"), domain


def _truncate_domain(name: str) -> str:
    """RFC 7208 7.3: drop leftmost labels until the expanded name fits in 253 characters."""
    name = name.rstrip(".")
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name


def _ip_macro(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return ".".join(ip.exploded.replace(":", ""))  # 7.3: dot-separated nibbles


def _expand(spec: str, ctx: _Context, domain: str) -> str:
    """Expand a macro-string (RFC 7208 section 7); syntax errors are permerrors."""
    local, sender_domain = _split_sender(ctx.sender, ctx.helo)
    out: list[str] = []
    pos = 0
    for m in _MACRO_RE.finditer(spec):
        out.append(spec[pos : m.start()])
        pos = m.end()
        single = m.group(5)
        if single is not None:
            if single == "%":
                out.append("%")
            elif single == "_":
                out.append(" ")
            elif single == "-":
                out.append("%20")
            else:
                raise _PermError(f"invalid macro %{single}")
            continue
        letter, digits, reverse, delims = m.group(1), m.group(2), m.group(3), m.group(4)
        lower = letter.lower()
        values = {
            "s": f"{local}@{sender_domain}",
            "l": local,
            "o": sender_domain,
            "d": domain,
            "i": _ip_macro(ctx.ip),
            "p": "unknown",  # 7.3: allowed; we avoid the costly PTR validation here
            "v": "in-addr" if isinstance(ctx.ip, ipaddress.IPv4Address) else "ip6",
            "h": ctx.helo,
        }
        if lower not in values:  # c, r, t are only valid in exp= (which we ignore)
            raise _PermError(f"invalid macro letter {letter!r}")
        value = values[lower]
        parts = re.split("[" + re.escape(delims or ".") + "]", value)
        if reverse:
            parts.reverse()
        if digits:
            n = int(digits)
            if n == 0:
                raise _PermError("macro transformer of zero labels")
            parts = parts[-n:]
        value = ".".join(parts)
        if letter.isupper():
            value = urllib.parse.quote(value, safe="")
        out.append(value)
    rest = spec[pos:]
    if "%" in rest:
        raise _PermError("dangling % in macro-string")
    out.append(rest)
    return "".join(out)


def _check_macros(spec: str) -> None:
    """Reject bad macro syntax at parse time: 4.6 makes any syntax error a permerror, even in
    a term that evaluation would never reach."""
    pos = 0
    for m in _MACRO_RE.finditer(spec):
        if "%" in spec[pos : m.start()]:
            raise _PermError("dangling % in macro-string")
        pos = m.end()
        if m.group(5) is not None and m.group(5) not in "%_-":
            raise _PermError(f"invalid macro %{m.group(5)}")
        if m.group(1) is not None:
            if m.group(1).lower() not in "slodipvh":
                raise _PermError(f"invalid macro letter {m.group(1)!r}")
            if m.group(2) and int(m.group(2)) == 0:
                raise _PermError("macro transformer of zero labels")
    if "%" in spec[pos:]:
        raise _PermError("dangling % in macro-string")


def _check_domain_spec(spec: str) -> None:
    """domain-end = ( "." toplabel [ "." ] ) / macro-expand (RFC 7208 7.1)."""
    _check_macros(spec)
    if re.search(r"(%\{[^}]*\}|%[%_\-])$", spec):
        return
    s = spec[:-1] if spec.endswith(".") else spec
    if "." not in s:
        raise _PermError(f"domain-spec {spec!r} has no top label")
    top = s.rsplit(".", 1)[1]
    if not _TOPLABEL_RE.match(top):
        raise _PermError(f"domain-spec {spec!r} does not end in a valid top label")


def _parse_cidr(rest: str, allow_v4: bool = True) -> tuple[str, int | None, int | None]:
    """Split ``[domain-spec][/cidr4][//cidr6]`` into its parts."""
    cidr4: int | None = None
    cidr6: int | None = None
    m = re.search(r"(?:/([0-9]+))?(?://([0-9]+))?$", rest)
    assert m is not None
    spec = rest[: m.start()]
    for group, limit, name in ((m.group(1), 32, "ip4"), (m.group(2), 128, "ip6")):
        if group is None:
            continue
        if (len(group) > 1 and group.startswith("0")) or int(group) > limit:
            raise _PermError(f"invalid {name} CIDR length /{group}")
        if name == "ip4":
            cidr4 = int(group)
        else:
            cidr6 = int(group)
    if spec.endswith("/"):
        raise _PermError("malformed CIDR suffix")
    return spec, cidr4, cidr6


# -- record parsing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Term:
    qualifier: SPFResult
    name: str
    arg: str  # text after ":" or "=" (may be "")
    cidr4: int | None = None
    cidr6: int | None = None
    text: str = ""


def _parse_record(record: str) -> tuple[list[_Term], str | None]:
    """Return (mechanisms, redirect target). Any syntax error -> permerror (4.6)."""
    terms: list[_Term] = []
    redirect: str | None = None
    seen_exp = False
    for token in record.split(" ")[1:]:
        if not token:
            continue
        # Modifier: name "=" macro-string (name starts with ALPHA).
        mod = re.match(r"^([A-Za-z][A-Za-z0-9\-_.]*)=(.*)$", token)
        if mod:
            name, value = mod.group(1).lower(), mod.group(2)
            if name == "redirect":
                if redirect is not None:
                    raise _PermError("redirect= appears twice")
                _check_domain_spec(value)
                redirect = value
            elif name == "exp":
                if seen_exp:
                    raise _PermError("exp= appears twice")
                seen_exp = True
            # Unknown modifiers are ignored (6).
            continue
        qualifier = SPFResult.PASS
        if token[0] in _QUALIFIERS:
            qualifier = _QUALIFIERS[token[0]]
            token = token[1:]
        m = re.match(r"^([A-Za-z][A-Za-z0-9\-_.]*)(.*)$", token)
        if not m or m.group(1).lower() not in _MECHANISMS:
            raise _PermError(f"unknown mechanism {token!r}")
        name, rest = m.group(1).lower(), m.group(2)
        if name == "all":
            if rest:
                raise _PermError("'all' takes no argument")
            terms.append(_Term(qualifier, name, "", text=token))
        elif name in ("include", "exists"):
            if not rest.startswith(":") or len(rest) < 2:
                raise _PermError(f"{name} requires a domain-spec")
            _check_domain_spec(rest[1:])
            terms.append(_Term(qualifier, name, rest[1:], text=token))
        elif name in ("a", "mx"):
            spec, c4, c6 = _parse_cidr(rest)
            if spec and not spec.startswith(":"):
                raise _PermError(f"malformed {name} mechanism {token!r}")
            spec = spec[1:]
            if rest.startswith(":") and not spec:
                raise _PermError(f"empty domain-spec in {token!r}")
            if spec:
                _check_domain_spec(spec)
            terms.append(_Term(qualifier, name, spec, c4, c6, text=token))
        elif name == "ptr":
            if rest and (not rest.startswith(":") or len(rest) < 2):
                raise _PermError("malformed ptr mechanism")
            if rest:
                _check_domain_spec(rest[1:])
            terms.append(_Term(qualifier, name, rest[1:], text=token))
        elif name in ("ip4", "ip6"):
            if not rest.startswith(":"):
                raise _PermError(f"{name} requires a network")
            net = rest[1:]
            try:
                addr, _, length = net.partition("/")
                if length and (length.startswith("0") and length != "0"):
                    raise ValueError("leading zero")
                network: ipaddress.IPv4Network | ipaddress.IPv6Network
                if name == "ip4":
                    network = ipaddress.IPv4Network(net, strict=False)
                    ipaddress.IPv4Address(addr)
                else:
                    network = ipaddress.IPv6Network(net, strict=False)
                    ipaddress.IPv6Address(addr)
            except ValueError as exc:
                raise _PermError(f"invalid {name} network {net!r}: {exc}") from None
            terms.append(_Term(qualifier, name, str(network), text=token))
    return terms, redirect


# -- evaluation --------------------------------------------------------------------------------


def _in_network(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    addr: str,
    cidr4: int | None,
    cidr6: int | None,
) -> bool:
    try:
        candidate = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if candidate.version != ip.version:
        return False
    prefix = (cidr4 if cidr4 is not None else 32) if ip.version == 4 else (
        cidr6 if cidr6 is not None else 128
    )
    return ip in ipaddress.ip_network(f"{candidate}/{prefix}", strict=False)


async def _addresses_for(ctx: _Context, name: str, *, void_counts: bool) -> list[str]:
    rdtype = "A" if ctx.ip.version == 4 else "AAAA"
    try:
        if rdtype == "A":
            return await ctx.resolver.a(name)
        return await ctx.resolver.aaaa(name)
    except (NXDomain, NoData):
        if void_counts:
            ctx.count_void()
        return []
    except TempDNSError as exc:
        raise _TempError(str(exc)) from None


async def _eval_term(ctx: _Context, term: _Term, domain: str) -> bool:
    name = term.name
    if name == "all":
        return True
    if name == "ip4" or name == "ip6":
        net = ipaddress.ip_network(term.arg)
        return net.version == ctx.ip.version and ctx.ip in net
    # Every remaining term queries DNS (4.6.4).
    ctx.count_term()
    target = _truncate_domain(_expand(term.arg, ctx, domain)) if term.arg else domain
    if name == "include":
        sub = await _check(ctx, target)
        if sub.result == SPFResult.PASS:
            return True
        if sub.result in (SPFResult.FAIL, SPFResult.SOFTFAIL, SPFResult.NEUTRAL):
            return False
        if sub.result == SPFResult.TEMPERROR:
            raise _TempError(sub.reason)
        # permerror, and none (5.2: "none" in an include is a permerror)
        raise _PermError(f"include:{target} -> {sub.result.value} ({sub.reason})")
    if name == "a":
        addrs = await _addresses_for(ctx, target, void_counts=True)
        return any(_in_network(ctx.ip, a, term.cidr4, term.cidr6) for a in addrs)
    if name == "mx":
        try:
            mxs = await ctx.resolver.mx(target)
        except (NXDomain, NoData):
            ctx.count_void()
            return False
        except TempDNSError as exc:
            raise _TempError(str(exc)) from None
        hosts = [h for _, h in mxs if h]  # a null MX names no host
        if len(hosts) > MAX_MX_OR_PTR_NAMES:
            raise _PermError(f"mx:{target} has more than 10 MX names (RFC 7208 4.6.4)")
        for host in hosts:
            addrs = await _addresses_for(ctx, host, void_counts=False)
            if any(_in_network(ctx.ip, a, term.cidr4, term.cidr6) for a in addrs):
                return True
        return False
    if name == "exists":
        try:
            return bool(await ctx.resolver.a(target))  # 5.7: always an A query
        except (NXDomain, NoData):
            ctx.count_void()
            return False
        except TempDNSError as exc:
            raise _TempError(str(exc)) from None
    if name == "ptr":
        # 5.5: errors in the PTR look-up make the mechanism not match (no temperror).
        try:
            names = await ctx.resolver.ptr(str(ctx.ip))
        except (NXDomain, NoData):
            ctx.count_void()
            return False
        except DNSError:
            return False
        target_l = target.lower().rstrip(".")
        for ptr_name in names[:MAX_MX_OR_PTR_NAMES]:
            try:
                addrs = await _addresses_for(ctx, ptr_name, void_counts=False)
            except _TempError:
                continue
            if any(_in_network(ctx.ip, a, None, None) for a in addrs):
                if ptr_name == target_l or ptr_name.endswith("." + target_l):
                    return True
        return False
    raise _PermError(f"unknown mechanism {name}")  # pragma: no cover - parser rejects it


async def _check(ctx: _Context, domain: str) -> SPFCheck:
    domain = domain.rstrip(".").lower()
    if not _valid_domain(domain):
        return SPFCheck(SPFResult.NONE, domain, "not a valid domain")
    ctx.depth += 1
    try:
        if ctx.depth > MAX_DNS_TERMS + 1:  # loops are bounded by the term limit anyway
            raise _PermError("include/redirect loop")
        try:
            records = await ctx.resolver.txt(domain)
        except (NXDomain, NoData):
            return SPFCheck(SPFResult.NONE, domain, "no SPF record")
        except TempDNSError as exc:
            return SPFCheck(SPFResult.TEMPERROR, domain, str(exc))
        # 4.5: exactly "v=spf1" followed by a space or the end, case-insensitively.
        spf = [r for r in records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
        if not spf:
            return SPFCheck(SPFResult.NONE, domain, "no SPF record")
        if len(spf) > 1:
            return SPFCheck(SPFResult.PERMERROR, domain, "more than one SPF record")
        terms, redirect = _parse_record(spf[0])
        for term in terms:
            if await _eval_term(ctx, term, domain):
                return SPFCheck(term.qualifier, domain, f"matched {term.text}", term.text)
        # 6.1: redirect is ignored when the record contains "all" (which would have matched).
        if redirect is not None and not any(t.name == "all" for t in terms):
            ctx.count_term()
            target = _truncate_domain(_expand(redirect, ctx, domain))
            sub = await _check(ctx, target)
            if sub.result == SPFResult.NONE:  # 6.1: no record at the target -> permerror
                return SPFCheck(SPFResult.PERMERROR, target, f"redirect to {target}: no record")
            return sub
        return SPFCheck(SPFResult.NEUTRAL, domain, "no mechanism matched")
    finally:
        ctx.depth -= 1


async def check_host(
    resolver: Resolver, ip: str, domain: str, sender: str, helo: str = ""
) -> SPFCheck:
    """RFC 7208 section 4 ``check_host(<ip>, <domain>, <sender>)``.

    ``sender`` is the MAIL FROM address (or ``postmaster@helo`` for the HELO identity).
    """
    try:
        addr = _normalise_ip(ip)
    except ValueError:
        return SPFCheck(SPFResult.PERMERROR, domain, f"invalid client address {ip!r}")
    ctx = _Context(resolver=resolver, ip=addr, sender=sender, helo=helo)
    try:
        return await _check(ctx, domain)
    except _PermError as exc:
        return SPFCheck(SPFResult.PERMERROR, domain.lower(), str(exc))
    except _TempError as exc:
        return SPFCheck(SPFResult.TEMPERROR, domain.lower(), str(exc))


async def check_spf(resolver: Resolver, ip: str, helo: str, mail_from: str) -> tuple[SPFCheck, str]:
    """Check the MAIL FROM identity, or the HELO identity for the null reverse-path (RFC 7208
    2.4). Returns the check and the identity kind: ``"mailfrom"`` or ``"helo"``."""
    mail_from = mail_from.strip().strip("<>")
    if mail_from and "@" in mail_from:
        local, _, domain = mail_from.rpartition("@")
        return await check_host(resolver, ip, domain, mail_from, helo), "mailfrom"
    sender = f"postmaster@{helo}"
    return await check_host(resolver, ip, helo, sender, helo), "helo"
