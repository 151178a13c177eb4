"""Where mail goes: recipient resolution, trace headers, local delivery and queueing.

Shared by the SMTP server (port 25 and submission) and anything else that injects mail.
Nothing here speaks SMTP; the server turns the outcomes into replies.

Recipient resolution (:meth:`Delivery.route`), for an address in a hosted domain, in order:

1. an account with exactly that address (after :func:`normalize_address`, THE policy);
2. an alias with that address: each target is resolved again (recursively);
3. plus-addressing: ``user+tag@domain`` resolves as ``user@domain`` (account or alias);
4. the domain's catch-all target, when one is set.

An account that has ``forward_to`` addresses gets its own copy *and* each forward target is
resolved too: local targets are delivered locally, the others are queued. Expansion is
iterative with a ``seen`` set (an alias loop or a forward loop ends, never recurses), a depth
cap and a cap on the number of targets. A dangling target (an alias pointing at an address
that no longer exists and no catch-all) is skipped; if nothing at all is left the recipient
is unknown. Remote targets reached through expansion keep the original envelope sender (as
an MTA's alias or .forward does; SRS is not done).

Addresses outside the hosted domains are *foreign*: port 25 refuses them (never an open relay),
submission queues them.

Trace headers (RFC 5321 §4.4): every message gets a ``Received`` line; a copy stored in a
local mailbox (final delivery) also gets ``Return-Path: <reverse-path>`` on top. Queued copies
get no Return-Path (a relay must not add one). The ``for <address>`` clause is written only
for a single-recipient transaction, so Bcc recipients are not disclosed to each other.

DSN (RFC 3461): the envelope's ENVID/RET and each recipient's NOTIFY/ORCPT go into the queue
with the remote recipients; a remote copy reached through an alias or a forward carries the
original RCPT address as its ORCPT when the client gave none (RFC 3461 §4.2, §6.2), so reports
name the address the sender used. A recipient delivered to a local mailbox with NOTIFY=SUCCESS
earns a "delivered" report (RFC 3464 §2.3.3) to the sender: into its INBOX when the sender is
one of our accounts, else queued with the null sender.

Durability: :meth:`Delivery.commit` returns only after the store committed the local copies
(``Store.deliver``) and the queue entry (``Store.enqueue``), both fsynced: the caller may say
250 then, not before.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from dataclasses import dataclass, field, replace
from email.utils import format_datetime
from datetime import datetime, timezone

from ..mail.address import (
    InvalidAddress, is_valid_address, normalize_address, normalize_domain, split_address, split_plus,
)
from ..mail.dsn import DSNRecipient, build_success_notice, is_bounce
from ..mail.headers import decode_words, find_header_end, memo_fields, split_fields, unfold
from ..mail.imapfmt import MISSING_DOMAIN, MISSING_MAILBOX, parse_address_list
from ..store import Account, AccountChanged, Domain, Store
from ..store.sieve import SieveScriptChanged
from ..store.spool import MessageSource
from .sieve import Plan, SieveFilter

log = logging.getLogger(__name__)

MAX_EXPANSION_DEPTH = 10
MAX_EXPANSION_TARGETS = 1000
#: RFC 5321 §6.3: a message with this many Received fields is looping.
MAX_HOPS = 100
#: How long a hosted-domain lookup is trusted (domains change rarely; a removed account is
#: caught by the store at delivery time anyway).
DOMAIN_CACHE_SECONDS = 5.0
#: How long a resolved (existing) recipient is reused: busy senders hit the same addresses, and
#: this spares the RCPT a trip to the database thread (which may be busy committing). Account
#: and domain changes clear it at once (store events); alias edits are seen within this time.
ROUTE_CACHE_SECONDS = 2.0
_CACHE_LIMIT = 10000

_SAFE_HELO = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
_RECEIVED = re.compile(rb"(?im)^received[ \t]*:")


@dataclass
class Route:
    """Where one recipient's copies go.

    ``foreign``: the domain is not hosted here. ``unknown``: hosted domain, no such address.
    Otherwise ``accounts`` (account ids) get a local copy and ``remote`` addresses are queued.
    ``via_catch_all`` says the catch-all was needed (sender checks ignore such routes).
    """

    address: str
    foreign: bool = False
    unknown: bool = False
    accounts: list[int] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    via_catch_all: bool = False
    quota: dict[int, int] = field(default_factory=dict)  # account id -> quota bytes (0: none)
    #: RFC 3461 RCPT parameters: NOTIFY (None: not given) and ORCPT as "addr-type;address"
    notify: frozenset[str] | None = None
    orcpt: str | None = None


@dataclass
class Envelope:
    """One mail transaction: the reverse-path and the accepted recipients' routes."""

    mail_from: str  # "" for the null reverse-path
    routes: list[Route] = field(default_factory=list)
    account: Account | None = None  # the authenticated sender (submission)
    envid: str | None = None  # RFC 3461 ENVID (decoded)
    ret: str | None = None  # RFC 3461 RET: "FULL" or "HDRS"

    def local_accounts(self) -> list[int]:
        seen: dict[int, None] = {}
        for route in self.routes:
            for account_id in route.accounts:
                seen.setdefault(account_id, None)
        return list(seen)

    def remote_recipients(self) -> list[str]:
        seen: dict[str, str] = {}
        for route in self.routes:
            for address in route.remote:
                seen.setdefault(_key(address), address)
        return list(seen.values())

    def remote_recipients_dsn(self) -> list[tuple[str, str | None, str | None]]:
        """:meth:`remote_recipients` as (address, notify, orcpt) for ``Store.enqueue``."""
        seen: dict[str, tuple[str, str | None, str | None]] = {}
        for route in self.routes:
            notify = ",".join(sorted(route.notify)) if route.notify else None
            for address in route.remote:
                orcpt = route.orcpt
                if orcpt is None and _key(address) != _key(route.address) and route.address.isascii():
                    # Reached through an alias or a forward: keep the address the sender used
                    # (RFC 3461 §4.2 allows adding ORCPT when relaying; §6.2).
                    orcpt = f"rfc822;{route.address}"
                seen.setdefault(_key(address), (address, notify, orcpt))
        return list(seen.values())

    @property
    def recipient_count(self) -> int:
        return len(self.routes)


@dataclass(frozen=True)
class Trace:
    """What the Received line says about the session."""

    helo: str
    remote_ip: str
    protocol: str  # RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTPS...
    queue_id: str
    tls_version: str = ""


@dataclass(frozen=True)
class Committed:
    queue_id: str
    delivered: int  # local copies stored
    queued: int  # remote recipients queued (0: no queue entry)


def _key(address: str) -> str:
    try:
        return normalize_address(address)
    except InvalidAddress:
        return address.lower()


_ID_PREFIX = secrets.token_hex(3).upper()
_id_counter = itertools.count(int(time.time() * 1000) % 0x1000000)


def new_queue_id() -> str:
    """A short transaction id for logs, the Received line and the 250 reply: a random
    per-process prefix and a counter (unique, and no system call per message)."""
    return f"{_ID_PREFIX}{next(_id_counter) % 0x1000000:06X}"


class Delivery:
    """Recipient resolution and durable hand-off to the store (see module docstring)."""

    def __init__(self, store: Store, hostname: str) -> None:
        self.store = store
        self.hostname = hostname
        self._domains: dict[str, tuple[Domain | None, float]] = {}
        self._routes: dict[tuple[str, bool, bool], tuple[Route, float]] = {}
        self.sieve = SieveFilter(store, hostname)

    def on_event(self, event: object) -> None:
        """Event-bus listener: forget cached lookups when an account or a domain changes."""
        if isinstance(event, AccountChanged):
            self.forget_domains()
            if event.account_id is None:
                self.sieve.forget()  # (another process committed: scripts may have changed too)
        elif isinstance(event, SieveScriptChanged):
            self.sieve.forget(event.account_id)

    # -- lookups ------------------------------------------------------------------------

    async def hosted_domain(self, name: str) -> Domain | None:
        now = time.monotonic()
        hit = self._domains.get(name)
        if hit is not None and hit[1] > now:
            return hit[0]
        domain = await self.store.get_domain(name)
        if len(self._domains) > 10000:
            self._domains.clear()
        self._domains[name] = (domain, now + DOMAIN_CACHE_SECONDS)
        return domain

    def forget_domains(self) -> None:
        """Drop every cached lookup (domains and resolved recipients)."""
        self._domains.clear()
        self._routes.clear()

    async def postmaster_address(self) -> str | None:
        """RFC 5321 §4.1.1.3: ``RCPT TO:<Postmaster>`` with no domain must be accepted; it
        names postmaster at the server's host name or, failing that, at its parent domain."""
        labels = self.hostname.lower().split(".")
        for i in range(len(labels) - 1):
            domain = ".".join(labels[i:])
            if await self.hosted_domain(domain) is not None:
                return f"postmaster@{domain}"
        # The host name is not a hosted domain: the first hosted domain stands in for it.
        domains = await self.store.list_domains()
        return f"postmaster@{domains[0].name}" if domains else None

    # -- resolution ---------------------------------------------------------------------

    async def route(self, address: str, *, catch_all: bool = True, forwards: bool = True) -> Route:
        """Resolve one recipient address (as given in RCPT TO)."""
        key = (address, catch_all, forwards)
        now = time.monotonic()
        hit = self._routes.get(key)
        if hit is not None and hit[1] > now:
            return replace(hit[0], accounts=list(hit[0].accounts), remote=list(hit[0].remote),
                           quota=dict(hit[0].quota))
        route = await self._resolve(address, catch_all=catch_all, forwards=forwards)
        if not route.unknown and not route.foreign:
            if len(self._routes) >= _CACHE_LIMIT:
                self._routes.clear()
            self._routes[key] = (route, now + ROUTE_CACHE_SECONDS)
            route = replace(route, accounts=list(route.accounts), remote=list(route.remote), quota=dict(route.quota))
        return route

    async def _resolve(self, address: str, *, catch_all: bool, forwards: bool) -> Route:
        try:
            norm = normalize_address(address)
        except InvalidAddress:
            # A local part our policy refuses (invisible or compatibility characters) names
            # no mailbox here; at another domain it is that domain's business.
            try:
                foreign = is_valid_address(address) and await self.hosted_domain(
                    normalize_domain(split_address(address)[1])) is None
            except InvalidAddress:
                foreign = False
            return Route(address, foreign=True, remote=[address]) if foreign else Route(address, unknown=True)
        domain_name = norm.rpartition("@")[2]
        if await self.hosted_domain(domain_name) is None:
            return Route(address, foreign=True, remote=[address])
        route = Route(address)
        seen: set[str] = set()
        work: deque[tuple[str, int, bool]] = deque([(norm, 0, True)])
        targets = 0
        while work:
            current, depth, top = work.popleft()
            if current in seen:
                continue
            seen.add(current)
            targets += 1
            if depth > MAX_EXPANSION_DEPTH or targets > MAX_EXPANSION_TARGETS:
                log.warning("expansion of %s stopped at %s (too deep or too wide)", norm, current)
                continue
            local, _, dom = current.rpartition("@")
            domain = await self.hosted_domain(dom)
            if domain is None:
                route.remote.append(current)
                continue
            account = await self.store.get_account(current)
            if account is not None:
                if account.id not in route.accounts:
                    route.accounts.append(account.id)
                    route.quota[account.id] = account.quota_bytes
                if forwards and account.forward_to:
                    work.extend((t, depth + 1, False) for t in account.forward_to.split())
                continue
            alias = await self.store.get_alias(current)
            if alias is not None:
                work.extend((t, depth + 1, False) for t in alias.targets)
                continue
            base, tag = split_plus(local)
            if tag is not None:
                # user+tag@domain -> user@domain (same depth: it is the same recipient)
                work.appendleft((f"{base}@{dom}", depth, top))
                continue
            if catch_all and domain.catch_all and domain.catch_all not in seen:
                route.via_catch_all = True
                work.append((domain.catch_all, depth + 1, False))
                continue
            if not top:
                log.warning("%s: target %s does not exist; skipped", norm, current)
        if not route.accounts and not route.remote and catch_all and norm.partition("@")[0] == "postmaster":
            # RFC 5321 §4.5.1: postmaster at every domain we serve MUST be accepted. With no
            # account, alias or catch-all for it, the domain's first account receives it.
            accounts = await self.store.list_accounts(domain_name)
            if accounts:
                first = min(accounts, key=lambda a: a.id)
                route.accounts.append(first.id)
                route.quota[first.id] = first.quota_bytes
        if not route.accounts and not route.remote:
            route.unknown = True
        return route

    async def may_send_as(self, account: Account, address: str) -> bool:
        """Submission: may ``account`` use ``address`` as envelope sender or From?

        Its own address, a plus-addressed form of it, or an alias that expands to it (not
        through a catch-all, and not through another account's forwarding)."""
        try:
            norm = normalize_address(address)
        except InvalidAddress:
            return False
        if norm == account.address:
            return True
        route = await self.route(norm, catch_all=False, forwards=False)
        return not route.foreign and not route.via_catch_all and account.id in route.accounts

    # -- the message --------------------------------------------------------------------

    def received_header(self, envelope: Envelope, trace: Trace, when: datetime | None = None) -> bytes:
        helo = _SAFE_HELO.sub("?", trace.helo)[:255] or "unknown"
        ip = trace.remote_ip.replace("]", "").replace("[", "")
        ipv6 = ":" in ip
        lines = [f"Received: from {helo} ([{'IPv6:' if ipv6 else ''}{ip}])",
                 f"\tby {self.hostname} (postoffice) with {trace.protocol} id {trace.queue_id}"]
        if envelope.recipient_count == 1:
            lines[-1] += f"\r\n\tfor <{envelope.routes[0].address}>"
        date = format_datetime(when) if when is not None else _now_rfc5322()
        lines[-1] += f";\r\n\t{date}"
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    @staticmethod
    def return_path(envelope: Envelope) -> bytes:
        return f"Return-Path: <{envelope.mail_from}>\r\n".encode("utf-8")

    async def commit(self, envelope: Envelope, message: bytes | MessageSource, trace: Trace, *,
                     extra_headers: bytes = b"", mailbox: str = "INBOX",
                     sign: Callable[[MessageSource], Awaitable[MessageSource]] | None = None,
                     mailboxes: dict[int, str] | None = None) -> Committed:
        """Store the local copies and queue the remote recipients, durably.

        ``message`` may be spooled (a `MessageSource`): the trace fields are put in front of it
        without copying the body, and the store reads it where the parse runs.
        ``sign`` (DKIM for submitted mail) is applied to the queued copy only. ``mailboxes``
        overrides ``mailbox`` per account (the spam filter's Junk for some recipients only).
        Raises what the store raises (QuotaExceeded, OSError, NotFound): nothing was
        acknowledged then, and a local copy is never half-stored (one transaction)."""
        source = MessageSource.of(message)
        received = self.received_header(envelope, trace)
        accounts = envelope.local_accounts()
        remote = envelope.remote_recipients_dsn()
        delivered = 0
        stored: list[Any] = []
        plans: list[Plan] = []
        if accounts:
            local = source.prepend(self.return_path(envelope) + extra_headers + received)
            # Each address's Sieve script decides its copy's mailboxes and flags (services/sieve.py).
            plans = await self._sieve_plans(envelope, accounts, local, mailbox, mailboxes or {})
            targets = [(p.account_id, box, bits, keywords) for p in plans for box, bits, keywords in p.targets]
            if targets:
                stored = list(await self.store.deliver(targets, local) or ())
            delivered = len(accounts)
        if remote:
            queued = source.prepend(extra_headers + received)
            try:
                if sign is not None:
                    queued = await sign(queued)
                account_id = envelope.account.id if envelope.account is not None else None
                await self.store.enqueue(envelope.mail_from, remote, queued, account_id=account_id,
                                         envid=envelope.envid, ret=envelope.ret)
            except BaseException:
                # The client hears a failure and will send again: take the local copies back,
                # or every retry would file one more.
                await self._withdraw(stored)
                raise
        if accounts:
            await self._success_notice(envelope, source.header_block())
        for plan in plans:
            if plan.redirects or plan.vacation or plan.reject or plan.error:
                await self.sieve.follow_up(plan, envelope_from=envelope.mail_from,
                                           message=source.prepend(extra_headers + received), send=self.send)
        return Committed(trace.queue_id, delivered, len(remote))

    async def _sieve_plans(self, envelope: Envelope, accounts: list[int], local: MessageSource,
                           mailbox: str, mailboxes: dict[int, str]) -> list[Plan]:
        plans = []
        for account_id in accounts:
            rcpt = next((r.address for r in envelope.routes if account_id in r.accounts), "")
            plans.append(await self.sieve.plan(
                account_id, envelope_from=envelope.mail_from, envelope_to=rcpt, message=local,
                default_mailbox=mailboxes.get(account_id, mailbox)))
        return plans

    async def send(self, mail_from: str, recipients: list[str], raw: bytes | MessageSource) -> None:
        """Mail the server itself sends (Sieve redirects, vacation replies, reject reports):
        recipients here are delivered to their INBOX (no filter runs, so two scripts cannot
        loop), others are queued. Durable when it returns."""
        local: list[int] = []
        remote: list[str] = []
        for address in recipients:
            route = await self.route(address)
            if route.unknown:
                log.warning("mail from the server to unknown local address %s dropped", address)
                continue
            local.extend(a for a in route.accounts if a not in local)
            remote.extend(route.remote)
        if local:
            await self.store.deliver([(a, "INBOX") for a in local], raw, enforce_quota=False)
        if remote:
            await self.store.enqueue(mail_from, remote, raw)

    async def _success_notice(self, envelope: Envelope, message: bytes) -> None:
        """NOTIFY=SUCCESS for recipients delivered here: a "delivered" DSN (RFC 3461 §4.1,
        RFC 3464 §2.3.3). Best effort after the commit: a failure is logged, never reported to
        the client (the message itself is safely stored)."""
        wanted = [route for route in envelope.routes
                  if route.accounts and route.notify and "SUCCESS" in route.notify]
        if not wanted or is_bounce(envelope.mail_from):
            return
        try:
            now = datetime.now(timezone.utc)
            dsn = build_success_notice(
                hostname=self.hostname, original_sender=envelope.mail_from,
                recipients=[DSNRecipient(route.address, "delivered", "2.0.0", original_recipient=route.orcpt,
                                         last_attempt=now) for route in wanted],
                original_message=message, arrival_date=now, envelope_id=envelope.envid, now=now)
            account = envelope.account
            if account is None:
                try:
                    account = await self.store.get_account(normalize_address(envelope.mail_from))
                except InvalidAddress:
                    account = None
            if account is not None:
                await self.store.deliver([(account.id, "INBOX")], dsn)
            else:
                await self.store.enqueue("", [envelope.mail_from], dsn)
        except Exception:  # noqa: BLE001 - the message is delivered; only the report is lost
            log.exception("cannot send the delivery report to <%s>", envelope.mail_from)

    async def _withdraw(self, stored: list[Any]) -> None:
        boxes: dict[tuple[int, int], list[int]] = {}
        for item in stored:
            boxes.setdefault((item.account_id, item.mailbox_id), []).append(item.uid)
        for (account_id, mailbox_id), uids in boxes.items():
            try:
                await self.store.remove_messages(account_id, mailbox_id, uids)
            except Exception:  # noqa: BLE001 - the original error is what the caller reports
                log.exception("cannot withdraw local copies %s from mailbox %s", uids, mailbox_id)


# -- message helpers ------------------------------------------------------------------------

_date_cache: tuple[int, str] = (0, "")


def _now_rfc5322() -> str:
    """The current date-time for trace headers, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, format_datetime(datetime.fromtimestamp(now, timezone.utc)))
    return _date_cache[1]


def header_block(message: bytes) -> bytes:
    return message[:find_header_end(message, 0, len(message))]


def add_missing_headers(message: bytes, hostname: str) -> bytes:
    """RFC 6409 §8.2 / §8.3 (MSA): add ``Date`` and ``Message-ID`` when the submitted message
    has none (as Postfix and Exim do; RFC 5322 §3.6 requires Date and expects Message-ID).

    The fields go at the end of the header block, so trace fields stay on top together."""
    end = find_header_end(message, 0, len(message))
    head = message[:end]
    names = {name for name, _fs, _vs, _fe in split_fields(head, 0, len(head))}
    extra = b""
    if b"date" not in names:
        extra += f"Date: {_now_rfc5322()}\r\n".encode("ascii")
    if b"message-id" not in names:
        extra += f"Message-ID: <{int(time.time())}.{secrets.token_hex(8)}@{hostname}>\r\n".encode("utf-8")
    if not extra:
        return message
    if end >= 2 and message[end - 4:end] == b"\r\n\r\n":
        at = end - 2  # before the blank line
    elif message[end - 2:end] == b"\r\n" or end == 0:
        at = end  # header only, CRLF-terminated
    else:
        return message[:end] + b"\r\n" + extra.rstrip(b"\r\n") + message[end:]
    return message[:at] + extra + message[at:]


#: The largest header block accepted (SMTP answers 552 5.3.4 above it). Exim's header_maxsize
#: default; real headers are a few KB, rarely 100 KB (very long To/Cc lists).
MAX_HEADER_BLOCK = 1024 * 1024
#: Header blocks larger than this are inspected in a worker process, not on the event loop.
HEADER_INLINE_LIMIT = 64 * 1024


@dataclass(frozen=True)
class HeaderFacts:
    """What the SMTP server checks in a received header block (:func:`inspect_header`)."""

    hops: int
    senders: list[str] | None = None  # From addresses (None: missing, unusable or not asked for)
    claimed: list[str] = field(default_factory=list)  # submission: every sender-like address shown
    completed: bytes | None = None  # submission: the block with Date/Message-ID added (None: unchanged)


def inspect_header(block: bytes, *, submission: bool, hostname: str, from_header: bool = False) -> HeaderFacts:
    """Hop count; for submission also the From addresses, every address a reader could take for
    the sender (From, Sender, display names, encoded words) and the block completed with a
    missing Date / Message-ID (RFC 6409 §8.2, §8.3); on port 25 the From addresses when
    ``from_header`` (a recipient's allow/block lists). Pure and linear in ``block``; the SMTP
    server runs it in a worker process for a large block."""
    hops = hop_count(block)
    if not submission:
        return HeaderFacts(hops, from_addresses(block) if from_header else None)
    with memo_fields(block):  # the block is split into fields once, not four times
        senders = from_addresses(block)
        if not senders:
            return HeaderFacts(hops, None)
        claimed = list(dict.fromkeys(_claim_key(a) for a in
                                     [*senders, *(from_addresses(block, b"sender") or ()), *addresses_shown(block)]))
        completed = add_missing_headers(block, hostname)
    return HeaderFacts(hops, senders, claimed, completed if completed != block else None)


def _claim_key(address: str) -> str:
    try:
        return normalize_address(address)
    except InvalidAddress:
        return address.strip().lower()


def hop_count(message: bytes) -> int:
    """Number of Received fields in the header block (RFC 5321 §6.3 loop detection)."""
    return len(_RECEIVED.findall(header_block(message)))


def from_addresses(message: bytes, field_name: bytes = b"from") -> list[str] | None:
    """The addr-specs of every From field (or ``field_name``, lower case); None when there is
    no such field or an entry has no usable address (a group, an empty or broken field)."""
    head = header_block(message)
    out: list[str] = []
    found = False
    for name, _fs, vs, fe in split_fields(head, 0, len(head)):
        if name != field_name:
            continue
        found = True
        for display, _adl, mailbox, host in parse_address_list(unfold(head[vs:fe])):
            if mailbox is None or host is None:
                if display is None and mailbox is None and host is None:
                    continue  # end of a group
                return None  # a group (start) or an address without a domain
            if mailbox == MISSING_MAILBOX or host == MISSING_DOMAIN:
                return None
            local = mailbox.decode("utf-8", "replace")
            out.append(f"{local}@{host.decode('utf-8', 'replace')}")
    if not found or not out:
        return None
    return out


#: Something that reads as an e-mail address inside a display name, a comment or an
#: encoded word ("alice@example.com" <mallory@example.com>).
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\\,;:@\"']+@[^\s<>()\[\]\\,;:@\"']+\.[^\s<>()\[\]\\,;:@\"']+")


def addresses_shown(message: bytes, field_names: tuple[bytes, ...] = (b"from", b"sender")) -> list[str]:
    """Every address-looking string anywhere in the From/Sender fields, display names,
    comments and RFC 2047 encoded words included: what a reader may take for the sender."""
    head = header_block(message)
    found: dict[str, None] = {}
    for name, _fs, vs, fe in split_fields(head, 0, len(head)):
        if name not in field_names:
            continue
        text = unfold(head[vs:fe]).decode("utf-8", "replace")
        variants = [text]
        if "=?" in text:
            # mail.headers' decoder, linear in the field (email.header's is quadratic: a 400 KB
            # From of encoded words took 5 s).
            variants.append(decode_words(text))
        for variant in variants:
            for match in _address_like(variant):
                found.setdefault(match.rstrip("."), None)
    return list(found)


_ADDRESS_TOKEN = re.compile(r"[^\s<>()\[\]\\,;:\"']+")


def _address_like(text: str) -> list[str]:
    """What :data:`_ADDRESS_LIKE` finds, in time linear in ``text``: the regex backtracks over
    every start position of a long run without an "@" (quadratic: a 240 KB From field of encoded
    words took seconds). Runs between separators are split at "@" instead: a local part is the
    text before an "@", the domain the text after it, which needs a dot with something on both
    sides; a domain that matched is not also the next local part (as with ``findall``)."""
    out: list[str] = []
    for token in _ADDRESS_TOKEN.findall(text):
        if "@" not in token:
            continue
        parts = token.split("@")
        i = 0
        while i < len(parts) - 1:
            local, domain = parts[i], parts[i + 1]
            if local and domain.find(".", 1, len(domain) - 1) >= 0:
                out.append(f"{local}@{domain}")
                i += 2
            else:
                i += 1
    return out


class SendRateLimiter:
    """Per-account sliding one-hour window of recipients sent (submission)."""

    WINDOW = 3600.0

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._sent: dict[int, deque[tuple[float, int]]] = {}
        self._totals: dict[int, int] = {}

    def used(self, account_id: int, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        entries = self._sent.get(account_id)
        if not entries:
            return 0
        total = self._totals[account_id]
        while entries and entries[0][0] <= now - self.WINDOW:
            total -= entries.popleft()[1]
        if not entries:
            del self._sent[account_id]
            del self._totals[account_id]
            return 0
        self._totals[account_id] = total
        return total

    def allows(self, account_id: int, more: int = 1, now: float | None = None) -> bool:
        if self.per_hour <= 0:
            return True
        return self.used(account_id, now) + more <= self.per_hour

    def record(self, account_id: int, count: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.used(account_id, now)
        self._sent.setdefault(account_id, deque()).append((now, count))
        self._totals[account_id] = self._totals.get(account_id, 0) + count


def protocol_name(*, esmtp: bool, tls: bool, authenticated: bool, utf8: bool) -> str:
    """RFC 3848 / RFC 6531 §3.7.4 'with' protocol names."""
    if not esmtp:
        return "SMTP"
    name = ("UTF8SMTP" if utf8 else "ESMTP") + ("S" if tls else "") + ("A" if authenticated else "")
    return name


__all__ = [
    "Committed",
    "Delivery",
    "Envelope",
    "MAX_HOPS",
    "Route",
    "SendRateLimiter",
    "Trace",
    "add_missing_headers",
    "addresses_shown",
    "from_addresses",
    "hop_count",
    "inspect_header",
    "HeaderFacts",
    "MAX_HEADER_BLOCK",
    "new_queue_id",
    "protocol_name",
]
