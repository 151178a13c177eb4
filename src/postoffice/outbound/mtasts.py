"""MTA-STS (RFC 8461): policy discovery, fetching, parsing, caching and MX matching.

Fetching is injectable: :class:`MTASTS` takes a ``fetcher`` -- any ``async (domain) -> str``
returning the policy body -- so tests (and deployments behind a proxy) can serve policies from
elsewhere. :class:`HTTPSPolicyFetcher` is the real one (httpx, certificate verified, no redirects,
size limit).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from postoffice.dns import NoData, NXDomain, Resolver, TempDNSError

__all__ = [
    "MTASTSPolicy",
    "MTASTS",
    "HTTPSPolicyFetcher",
    "PolicyFetchError",
    "parse_policy",
    "lookup_sts_id",
    "mx_matches",
]

Mode = Literal["enforce", "testing", "none"]
Fetcher = Callable[[str], Awaitable[str]]
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: policies SHOULD be small; bound what we read
MAX_AGE_LIMIT = 31557600  # RFC 8461 3.2: max_age up to 31557600 (about one year)
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")


class PolicyFetchError(Exception):
    pass


@dataclass(frozen=True)
class MTASTSPolicy:
    version: str
    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    policy_id: str = ""
    fetched_at: float = 0.0

    @property
    def enforce(self) -> bool:
        return self.mode == "enforce"

    def matches(self, host: str) -> bool:
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.fetched_at + self.max_age


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: exact match, or ``*.example.com`` matching exactly one left-most label."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        if not host.endswith(suffix):
            return False
        label = host[: -len(suffix)]
        return bool(label) and "." not in label
    return pattern == host


def parse_policy(text: str, *, policy_id: str = "", fetched_at: float = 0.0) -> MTASTSPolicy:
    """Parse a policy body (RFC 8461 3.2). Raises ValueError if it is invalid."""
    fields: dict[str, list[str]] = {}
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"malformed policy line {line!r}")
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise ValueError("version must be STSv1")
    modes = fields.get("mode", [])
    if len(modes) != 1 or modes[0] not in ("enforce", "testing", "none"):
        raise ValueError("mode must be enforce, testing or none")
    mode: Mode = modes[0]  # type: ignore[assignment]
    ages = fields.get("max_age", [])
    if len(ages) != 1 or not ages[0].isdigit() or len(ages[0]) > 10:
        raise ValueError("max_age must be one non-negative integer")
    max_age = min(int(ages[0]), MAX_AGE_LIMIT)
    mx = tuple(m.lower().rstrip(".") for m in fields.get("mx", []))
    if mode != "none" and not mx:
        raise ValueError("mx is required unless mode is none")
    return MTASTSPolicy("STSv1", mode, mx, max_age, policy_id, fetched_at)


async def lookup_sts_id(resolver: Resolver, domain: str) -> str | None:
    """The ``id`` of the single ``v=STSv1`` TXT record at ``_mta-sts.<domain>``, or None.

    Raises TempDNSError on a temporary failure (the caller then keeps any cached policy)."""
    try:
        texts = await resolver.txt(f"_mta-sts.{domain}")
    except (NXDomain, NoData):
        return None
    records = [t for t in texts if t.split(";", 1)[0].strip() == "v=STSv1"]
    if len(records) != 1:
        return None  # RFC 8461 3.1: several records -> as if none
    for part in records[0].split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip() == "id" and _ID_RE.match(value.strip()):
            return value.strip()
    return None


class HTTPSPolicyFetcher:
    """GET ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (RFC 8461 3.3) with httpx.

    ``url_template`` (``{domain}`` placeholder) and ``verify`` (bool, CA path or SSLContext) are
    there for tests and special deployments; production keeps the defaults.
    """

    def __init__(
        self,
        *,
        url_template: str = "https://mta-sts.{domain}/.well-known/mta-sts.txt",
        verify: object = True,
        timeout: float = 20.0,
    ) -> None:
        self.url_template = url_template
        self.verify = verify
        self.timeout = timeout

    async def __call__(self, domain: str) -> str:
        import httpx  # imported lazily: only needed when MTA-STS is used

        url = self.url_template.format(domain=domain)
        try:
            async with httpx.AsyncClient(
                verify=self.verify,  # type: ignore[arg-type]
                timeout=self.timeout,
                follow_redirects=False,  # RFC 8461 3.3: redirects MUST NOT be followed
            ) as client:
                async with client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise PolicyFetchError(f"{url}: HTTP {resp.status_code}")
                    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if ctype != "text/plain":
                        raise PolicyFetchError(f"{url}: content-type {ctype!r}")
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > MAX_POLICY_BYTES:
                            raise PolicyFetchError(f"{url}: policy too large")
        except httpx.HTTPError as exc:
            raise PolicyFetchError(f"{url}: {exc}") from exc
        return body.decode("utf-8", "replace")


@dataclass
class MTASTS:
    """Policy discovery with an in-memory cache (RFC 8461 5.1)."""

    resolver: Resolver
    fetcher: Fetcher = field(default_factory=HTTPSPolicyFetcher)
    clock: Callable[[], float] = time.time
    _cache: dict[str, MTASTSPolicy] = field(default_factory=dict)

    def cached(self, domain: str) -> MTASTSPolicy | None:
        policy = self._cache.get(domain.lower())
        if policy is None or policy.expired(self.clock()):
            return None
        return policy

    async def get_policy(self, domain: str) -> MTASTSPolicy | None:
        """The policy to apply to ``domain`` now, or None when the domain has none.

        A cached, unexpired policy is used when the TXT id is unchanged, when the TXT record
        disappeared or DNS fails, and when refreshing it fails (5.1). Policies with mode "none"
        are returned too (callers treat them like no policy).
        """
        domain = domain.lower().rstrip(".")
        cached = self.cached(domain)
        try:
            sts_id = await lookup_sts_id(self.resolver, domain)
        except TempDNSError:
            return cached
        if sts_id is None:
            return cached
        if cached is not None and cached.policy_id == sts_id:
            return cached
        try:
            text = await self.fetcher(domain)
            policy = parse_policy(text, policy_id=sts_id, fetched_at=self.clock())
        except (PolicyFetchError, ValueError, OSError):
            return cached
        self._cache[domain] = policy
        return policy

    @staticmethod
    def filter_hosts(policy: MTASTSPolicy | None, hosts: list[str]) -> list[str]:
        """With an enforced policy, only MX hosts the policy names may be used (5.1, 4.1)."""
        if policy is None or not policy.enforce:
            return hosts
        return [h for h in hosts if policy.matches(h)]
