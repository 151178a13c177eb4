"""Mail authentication for the SMTP server: inbound SPF/DKIM/DMARC checks and outbound DKIM signing.

* :class:`InboundChecker` -- called by the port-25 server once a message has been received and
  before it is delivered. It strips Authentication-Results fields that claim to be ours (RFC 8601
  5), runs SPF (RFC 7208), DKIM (RFC 6376/8463) and DMARC (RFC 7489) and says what to do:
  ``accept``, ``quarantine`` (deliver to Junk) or ``reject`` (``550 5.7.1``). The operator may turn
  DMARC rejections into quarantine (``[outbound] dmarc_reject_action``) and switch the checks off
  (``[inbound] verify``). Trouble inside the checks never rejects mail: it is accepted and logged.
* :class:`DkimSigner` -- signs every message our users submit, for a domain we host, with an
  RSA-2048 and an Ed25519 signature (RFC 8463 recommends both). The key pairs live in the
  database (table ``dkim_keys``) and are generated on first use.
* :func:`dkim_records` -- the TXT records a domain must publish (for the CLI and the panel's DNS
  page).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from ..authn import dkim as dkim_mod
from ..authn.inbound import InboundVerdict, authenticate_inbound
from ..authn.results import strip_authentication_results
from ..config import Config
from ..dns import Resolver
from .. import cpu
from ..mail.mime import canonicalize_crlf
from ..store.spool import MessageSource, needs_process

__all__ = [
    "InboundChecker",
    "InboundResult",
    "DkimSigner",
    "dkim_records",
    "ensure_dkim_keys",
    "make_resolver",
]

log = logging.getLogger(__name__)

Action = Literal["accept", "quarantine", "reject"]

# When no resolver is pinned the system one is used with a short timeout: a message must not
# wait long on a slow DNS server, and a test that forgot to pin one fails fast.
SYSTEM_RESOLVER_TIMEOUT = 3.0
INBOUND_CHECK_TIMEOUT = 30.0
#: Header blocks larger than this are rewritten in a worker process, not on the event loop.
HEADER_INLINE_LIMIT = 64 * 1024


def make_resolver(config: Config, *, timeout: float | None = None) -> Resolver:
    """The resolver for SPF/DKIM/DMARC/MX: ``[outbound] dns`` if set, else the system's."""
    if config.outbound.dns:
        return Resolver(config.outbound.dns, timeout=timeout or 5.0)
    return Resolver(None, timeout=timeout or SYSTEM_RESOLVER_TIMEOUT)


# -- inbound ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundResult:
    """What the port-25 server does with a received message.

    ``message`` is the message to store: forged Authentication-Results removed and ours
    (``header``) prepended. On ``reject`` answer ``f"{reject_code} {reject_reply}"`` to the final
    dot and store nothing; on ``quarantine`` deliver ``message`` to the recipients' Junk folder.
    """

    action: Action
    header: bytes  # our Authentication-Results field, CRLF-terminated ("" when checks are off)
    message: Any  # bytes, or a MessageSource when the checker was given one
    reject_code: int = 550
    reject_reply: str = ""  # "5.7.1 ..." (without the code)
    verdict: InboundVerdict | None = None

    @property
    def stripped(self) -> Any:
        """The received message without forged Authentication-Results and without ``header``
        (for a server that prepends ``header`` itself)."""
        if isinstance(self.message, MessageSource):
            return MessageSource(self.message.header[len(self.header):], self.message.body)
        return self.message[len(self.header):]

    @property
    def reply(self) -> str:
        """The full SMTP reply line for a rejection (``550 5.7.1 ...``)."""
        return f"{self.reject_code} {self.reject_reply}"


class InboundChecker:
    """``await checker(client_ip, helo, mail_from, raw) -> InboundResult``.

    ``mail_from`` is the reverse-path without angle brackets ("" for the null path).
    """

    accepts_source = True  # the SMTP server may pass a spooled MessageSource

    def __init__(self, config: Config, resolver: Resolver | None = None) -> None:
        self.config = config
        self.enabled = config.inbound.verify
        self.hostname = config.hostname
        self._resolver = resolver

    @property
    def resolver(self) -> Resolver:
        if self._resolver is None:
            self._resolver = make_resolver(self.config)
        return self._resolver

    async def __call__(self, client_ip: str, helo: str, mail_from: str, raw: bytes | MessageSource) -> InboundResult:
        """``raw`` as bytes gives ``message`` as bytes; a `MessageSource` gives a MessageSource
        (the body is never copied: only the header block is rewritten)."""
        mail_from = mail_from.strip()
        if mail_from.startswith("<") and mail_from.endswith(">"):
            mail_from = mail_from[1:-1]
        source = MessageSource.of(raw)
        block = source.header_block()
        if len(block) > HEADER_INLINE_LIMIT:  # a large header block is Python work: elsewhere
            stripped = await cpu.in_process(strip_authentication_results, block, self.hostname)
        else:
            stripped = strip_authentication_results(block, self.hostname)
        clean_source = source.replace_header(stripped) if stripped != block else source
        clean: Any = clean_source if isinstance(raw, MessageSource) else clean_source.read()
        if not self.enabled:
            return InboundResult("accept", b"", clean)
        try:
            verdict = await asyncio.wait_for(
                authenticate_inbound(
                    self.resolver, self.hostname, client_ip, helo, mail_from, clean,
                    reject_spf_fail=self.config.inbound.reject_spf_fail,
                ),
                INBOUND_CHECK_TIMEOUT,
            )
        except Exception as exc:  # noqa: BLE001 - never lose mail because a check broke
            log.exception("authentication checks failed for mail from %r via %s", mail_from, client_ip)
            header = (f"Authentication-Results: {self.hostname}; none "
                      f"(checks failed: {exc.__class__.__name__})\r\n").encode("ascii", "replace")
            return InboundResult("accept", header, _prepend(header, clean))
        action: Action = verdict.action
        if action == "reject" and self.config.outbound.dmarc_reject_action == "quarantine":
            action = "quarantine"
        log.info("inbound %s from %r via %s helo %r: spf=%s dkim=%s dmarc=%s -> %s",
                 verdict.dmarc.from_domain or "-", mail_from, client_ip, helo, verdict.spf.result,
                 ",".join(s.result.value for s in verdict.dkim) or "none", verdict.dmarc.result, action)
        return InboundResult(
            action, verdict.header, _prepend(verdict.header, clean),
            reject_reply=verdict.reject_reply if action == "reject" else "", verdict=verdict,
        )


def _prepend(header: bytes, message: Any) -> Any:
    return message.prepend(header) if isinstance(message, MessageSource) else header + message


# -- DKIM keys and signing -----------------------------------------------------------------------


async def ensure_dkim_keys(store: Any, config: Config | None, domain: str) -> list[dict[str, Any]]:
    """The domain's DKIM keys, generating an RSA-2048 and an Ed25519 pair when it has none."""
    domain = domain.strip().rstrip(".").lower()
    keys: list[dict[str, Any]] = await store.dkim_keys(domain)
    if keys:
        return keys
    sel_rsa = config.outbound.dkim_selector_rsa if config else "po-rsa"
    sel_ed = config.outbound.dkim_selector_ed25519 if config else "po-ed25519"

    def generate() -> list[tuple[str, str, str, str]]:
        rsa = dkim_mod.generate_dkim_keys("rsa-sha256", 2048)
        ed = dkim_mod.generate_dkim_keys("ed25519-sha256")
        return [
            (sel_rsa, rsa.algorithm, rsa.private_key_pem.decode("ascii"), rsa.dns_txt),
            (sel_ed, ed.algorithm, ed.private_key_pem.decode("ascii"), ed.dns_txt),
        ]
    new = await asyncio.to_thread(generate)
    log.info("generated DKIM keys for %s (selectors %s, %s)", domain, sel_rsa, sel_ed)
    return await store.dkim_add_keys(domain, new)  # type: ignore[no-any-return]


async def dkim_records(store: Any, domain: str, config: Config | None = None) -> list[tuple[str, str]]:
    """``[(name, TXT value), ...]`` to publish for ``domain`` (keys are generated if missing).

    RSA values are longer than 255 bytes: DNS tools split them into several character-strings
    of one TXT record, which verifiers join again (RFC 6376 3.6.2.2)."""
    domain = domain.strip().rstrip(".").lower()
    keys = await ensure_dkim_keys(store, config, domain)
    return [(f"{k['selector']}._domainkey.{domain}", k["public_txt"]) for k in keys]


class DkimSigner:
    """``await signer.sign(raw, from_domain) -> bytes``: the message with DKIM-Signature fields.

    Only domains we host are signed (a key is never generated for a stranger's domain); a message
    that cannot be signed (no From field, unusable key) goes out unsigned and is logged. The
    returned message is in canonical CRLF form -- the form the queue stores and sends, so the
    body hash stays valid.
    """

    CACHE_SECONDS = 60.0

    def __init__(self, store: Any, config: Config) -> None:
        self.store = store
        self.config = config
        self.enabled = config.outbound.dkim_sign
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _keys(self, domain: str) -> list[dict[str, Any]]:
        now = time.monotonic()
        hit = self._cache.get(domain)
        if hit is not None and now - hit[0] < self.CACHE_SECONDS:
            return hit[1]
        lock = self._locks.setdefault(domain, asyncio.Lock())
        async with lock:  # one generation per domain even when many messages arrive at once
            hit = self._cache.get(domain)
            if hit is not None and now - hit[0] < self.CACHE_SECONDS:
                return hit[1]
            keys = await ensure_dkim_keys(self.store, self.config, domain)
            self._cache[domain] = (time.monotonic(), keys)
            return keys

    async def sign(self, raw: bytes | MessageSource, from_domain: str) -> bytes | MessageSource:
        """Bytes in, the signed message as bytes out; a `MessageSource` in, the same source with
        the DKIM-Signature fields in front (the store writes it in canonical form, which is
        what was signed). A large message is signed in a worker process."""
        domain = from_domain.strip().rstrip(".").lower()
        if not self.enabled or not domain:
            return raw if isinstance(raw, MessageSource) else canonicalize_crlf(raw)
        if await self.store.get_domain(domain) is None:
            log.debug("not DKIM-signing for %s: not a hosted domain", domain)
            return raw if isinstance(raw, MessageSource) else canonicalize_crlf(raw)
        keys = await self._keys(domain)
        # RSA first in the list, so its header ends up on top; both sign the same message.
        keys = sorted(keys, key=lambda k: 0 if k["algorithm"].startswith("rsa") else 1)
        wanted = [(k["selector"], k["private_key"], k["algorithm"]) for k in keys]
        headers, errors = await cpu.offload(needs_process(raw), sign_message, raw, domain, wanted)
        for selector, error in errors:
            log.warning("DKIM signing for %s with %s failed: %s", domain, selector, error)
        if isinstance(raw, MessageSource):
            return raw.prepend(headers)
        return headers + canonicalize_crlf(raw)


def sign_message(raw: bytes | MessageSource, domain: str,
                 keys: list[tuple[str, str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
    """The DKIM-Signature fields for ``raw`` in canonical CRLF form, one per (selector, private
    key PEM, algorithm), and the (selector, error) pairs of those that failed. Blocking and
    CPU-bound: a thread or a worker process (``DkimSigner.sign``)."""
    message = canonicalize_crlf(raw.read() if isinstance(raw, MessageSource) else raw)
    headers: list[bytes] = []
    errors: list[tuple[str, str]] = []
    for selector, pem, algorithm in keys:
        try:
            headers.append(dkim_mod.sign(message, domain, selector, pem.encode("ascii"), algorithm))
        except Exception as exc:  # noqa: BLE001 - send unsigned rather than not at all
            errors.append((selector, str(exc)))
    return b"".join(headers), errors
