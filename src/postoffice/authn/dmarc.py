"""DMARC (RFC 7489): policy discovery, identifier alignment and the disposition to apply."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from email.utils import getaddresses

from postoffice.authn.dkim import DKIMResult, DKIMSignatureResult
from postoffice.authn.orgdomain import organizational_domain
from postoffice.authn.spf import SPFCheck, SPFResult
from postoffice.dns import NoData, NXDomain, Resolver, TempDNSError

__all__ = [
    "DMARCResult",
    "DMARCPolicy",
    "DMARCRecord",
    "DMARCCheck",
    "parse_record",
    "discover_policy",
    "check_dmarc",
    "from_domains",
]


class DMARCResult(enum.StrEnum):
    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class DMARCPolicy(enum.StrEnum):
    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


@dataclass(frozen=True)
class DMARCRecord:
    p: DMARCPolicy
    sp: DMARCPolicy
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: str = ""
    ruf: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DMARCCheck:
    result: DMARCResult
    from_domain: str
    policy: DMARCPolicy = DMARCPolicy.NONE  # the published policy that applies (p or sp)
    disposition: DMARCPolicy = DMARCPolicy.NONE  # what to do after pct sampling
    record_domain: str = ""  # where the record was found
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""


class _BadRecord(Exception):
    pass


def parse_record(text: str) -> DMARCRecord:
    """Parse a DMARC TXT record (RFC 7489 6.3/6.4). Raises ValueError when unusable."""
    tags: dict[str, str] = {}
    parts = [p.strip() for p in text.split(";")]
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        raise ValueError("record does not start with v=DMARC1")
    for part in parts[1:]:
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"malformed tag {part!r}")
        key = key.strip().lower()
        tags.setdefault(key, value.strip())
    policies = {p.value: p for p in DMARCPolicy}
    p_raw = tags.get("p", "").lower()
    if p_raw in policies:
        p = policies[p_raw]
    elif "rua" in tags:
        p = DMARCPolicy.NONE  # 6.6.3 step 6: invalid/missing p with rua -> treat as p=none
    else:
        raise ValueError("missing or invalid p= tag")
    sp = policies.get(tags.get("sp", "").lower(), p)
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    adkim = adkim if adkim in ("r", "s") else "r"
    aspf = aspf if aspf in ("r", "s") else "r"
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return DMARCRecord(p, sp, adkim, aspf, pct, tags.get("rua", ""), tags.get("ruf", ""), tags)


async def _fetch(resolver: Resolver, domain: str) -> DMARCRecord | None:
    """One look-up of _dmarc.<domain>: a record, or None when there is no usable single record."""
    try:
        texts = await resolver.txt(f"_dmarc.{domain}")
    except (NXDomain, NoData):
        return None
    # TempDNSError propagates
    # 6.6.3 step 2: records not starting with "v=DMARC1" are discarded.
    candidates = [t for t in texts if t.split(";", 1)[0].replace(" ", "") == "v=DMARC1"]
    if len(candidates) != 1:
        return None  # 6.6.3 step 2: zero or several records -> no policy here
    try:
        return parse_record(candidates[0])
    except ValueError:
        return None


async def discover_policy(resolver: Resolver, from_domain: str) -> tuple[DMARCRecord, str] | None:
    """RFC 7489 6.6.3: _dmarc.<From domain>, then _dmarc.<organizational domain>.

    Returns (record, domain where found) or None. Raises TempDNSError on a temporary failure.
    """
    record = await _fetch(resolver, from_domain)
    if record is not None:
        return record, from_domain
    org = organizational_domain(from_domain)
    if org != from_domain:
        record = await _fetch(resolver, org)
        if record is not None:
            return record, org
    return None


def from_domains(message: bytes) -> list[str]:
    """Domains of the RFC5322.From addresses (header section only, bounded)."""
    head = message[: 1024 * 1024 + 4]  # the SMTP server refuses larger header blocks (552)
    head = head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    lines = head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    fields: list[str] = []
    i = 0
    while i < len(lines):
        name, colon, value = lines[i].partition(":")
        i += 1
        if colon and name.strip().lower() == "from":
            while i < len(lines) and lines[i][:1] in (" ", "\t"):  # unfold
                value += " " + lines[i].strip()
                i += 1
            fields.append(value.strip())
    domains: list[str] = []
    for _, addr in getaddresses(fields):
        if "@" in addr:
            domains.append(addr.rpartition("@")[2].strip().rstrip(".").lower())
    return domains


def _aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


_WEAKER = {
    DMARCPolicy.REJECT: DMARCPolicy.QUARANTINE,
    DMARCPolicy.QUARANTINE: DMARCPolicy.NONE,
    DMARCPolicy.NONE: DMARCPolicy.NONE,
}


async def check_dmarc(
    resolver: Resolver,
    message: bytes,
    spf: SPFCheck,
    spf_domain: str,
    dkim: list[DKIMSignatureResult],
    *,
    rng: random.Random | None = None,
) -> DMARCCheck:
    """Evaluate DMARC for ``message``.

    ``spf_domain`` is the domain SPF authenticated (MAIL FROM domain, or HELO for the null path).
    ``rng`` decides pct sampling (7.1: messages outside pct get the next weaker policy).
    """
    domains = from_domains(message)
    if not domains:
        return DMARCCheck(DMARCResult.NONE, "", reason="no RFC5322.From domain")
    if len(set(domains)) > 1:
        # 6.6.1: several From domains -- we cannot pick one; report it, do not act on it.
        return DMARCCheck(DMARCResult.PERMERROR, domains[0], reason="several From domains")
    from_domain = domains[0]
    try:
        found = await discover_policy(resolver, from_domain)
    except TempDNSError as exc:
        return DMARCCheck(DMARCResult.TEMPERROR, from_domain, reason=str(exc))
    if found is None:
        return DMARCCheck(DMARCResult.NONE, from_domain, reason="no DMARC record")
    record, where = found
    # sp applies when the record came from the organizational domain for a subdomain (6.3).
    policy = record.p if where == from_domain else record.sp
    spf_ok = spf.result == SPFResult.PASS and _aligned(spf_domain, from_domain, record.aspf)
    dkim_ok = any(
        s.result == DKIMResult.PASS and _aligned(s.domain, from_domain, record.adkim) for s in dkim
    )
    if spf_ok or dkim_ok:
        return DMARCCheck(
            DMARCResult.PASS, from_domain, policy, DMARCPolicy.NONE, where, spf_ok, dkim_ok,
            "aligned " + ("dkim" if dkim_ok else "spf"),
        )
    disposition = policy
    if record.pct < 100 and (rng or random).randrange(100) >= record.pct:
        disposition = _WEAKER[policy]  # 6.6.4 / 7.1: outside the sample
    return DMARCCheck(
        DMARCResult.FAIL, from_domain, policy, disposition, where, False, False,
        "no aligned SPF or DKIM pass",
    )
