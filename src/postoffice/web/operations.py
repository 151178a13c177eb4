"""What the panel can do, once: the pages and the REST API both call these.

Each method checks that the signed-in principal may act (`Forbidden` otherwise, before anything
changes), then calls the services (AccountService, PanelUsers, clientconfig, the session
registry). Pages turn the results into HTML, the API into JSON; neither adds rules of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..mail.address import InvalidAddress, normalize_address, normalize_domain
from ..mail.headers import decode_header_value, field_map, split_fields
from ..services import clientconfig, spampolicy
from ..services.access import AccessDecision, effective_protocols
from ..services.accounts import UserError
from ..services.panel_users import Principal
from ..services.queue import QueueEntry, QueueError, QueueService
from ..services.sessions import OpenSession
from ..store import Account, Alias, Domain


def _address_key(address: str) -> str:
    """An address from a URL or a form, in the one normalised form accounts and aliases are
    stored under (mail.address: the same function the mail servers and logins use)."""
    try:
        return normalize_address(address.strip())
    except InvalidAddress:
        raise Missing(f"no such address: {address}") from None


def _domain_key(name: str) -> str:
    try:
        return normalize_domain(name)
    except InvalidAddress:
        raise Missing(f"no such domain: {name}") from None


class Missing(Exception):
    """The thing named in the URL does not exist (HTTP 404)."""


@dataclass(frozen=True)
class DomainSummary:
    domain: Domain
    addresses: int
    aliases: int


@dataclass(frozen=True)
class AddressInfo:
    account: Account
    quota_used: int
    protocols: dict[str, AccessDecision]
    aliases: tuple[str, ...]
    sessions: tuple[OpenSession, ...]

    @property
    def quota_percent(self) -> int:
        if not self.account.quota_bytes:
            return 0
        return min(100, round(100 * self.quota_used / self.account.quota_bytes))

    def as_dict(self) -> dict[str, Any]:
        a = self.account
        return {
            "address": a.address, "display_name": a.display_name, "quota_bytes": a.quota_bytes,
            "quota_used_bytes": self.quota_used, "forward_to": a.forward_to.split() if a.forward_to else [],
            "aliases": list(self.aliases), "pop3_policy": a.pop3_policy,
            "switches": {"imap": a.imap_enabled, "pop3": a.pop3_enabled, "smtp": a.smtp_enabled},
            "effective": {p: {"allowed": d.allowed, "reason": d.reason, "forced_by_domain": d.forced_by_domain}
                          for p, d in self.protocols.items()},
            "open_sessions": len(self.sessions),
        }


@dataclass
class AddressChanges:
    """Fields of the Edit settings form / PATCH body; None leaves a field as it is."""

    display_name: str | None = None
    password: str | None = None
    quota_bytes: int | None = None
    aliases: list[str] | None = None
    forward_to: str | None = None
    imap: bool | None = None
    pop3: bool | None = None
    smtp: bool | None = None
    pop3_policy: str | None = None


def app_password_dict(a: Any) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "protocols": list(a.protocols), "created_at": a.created_at,
            "expires_at": a.expires_at, "expired": a.expired(), "last_used_at": a.last_used_at}


def session_dict(s: OpenSession) -> dict[str, Any]:
    return {"id": s.id, "protocol": s.protocol, "client_id": s.client_id, "app_password": s.app_password or None,
            "remote": s.remote,
            "tls": s.tls, "port": s.port, "since": s.since}


# -- issue #7: the mail queue page and /api/v1/queue -----------------------------------------

QUEUE_HEADERS = ("From", "To", "Subject", "Date")


def queue_entry_dict(e: QueueEntry) -> dict[str, Any]:
    return {"id": e.id, "mail_from": e.mail_from, "created_at": e.created_at, "next_attempt": e.next_attempt,
            "attempts": e.attempts, "size": e.size, "in_flight": e.in_flight, "is_bounce": e.is_bounce,
            "recipients": [{"recipient": r.recipient, "domain": r.domain, "status": r.status,
                            "last_error": r.last_error} for r in e.recipients]}


def message_headers(head: bytes) -> dict[str, str]:
    """From, To, Subject and Date of a queued message's header section, decoded for display
    ("" where the message has none)."""
    found = field_map(head, split_fields(head, 0, len(head)))
    return {name: decode_header_value(found.get(name.lower().encode(), b"")) for name in QUEUE_HEADERS}


@dataclass(frozen=True)
class QueueDetail:
    entry: QueueEntry
    headers: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {**queue_entry_dict(self.entry), "headers": {k.lower(): v for k, v in self.headers.items()}}


# -- end issue #7 ------------------------------------------------------------------------------


@dataclass
class Operations:
    office: Any  # postoffice.app.Postoffice
    who: Principal
    _domains: dict[str, Domain] = field(default_factory=dict)

    @property
    def accounts(self) -> Any:
        return self.office.accounts

    @property
    def store(self) -> Any:
        return self.office.store

    # -- domains ----------------------------------------------------------------------------

    async def domains(self) -> list[DomainSummary]:
        if self.who.is_user:
            return []
        result = []
        for d in await self.store.list_domains():
            if self.who.may_manage(d.name):
                result.append(DomainSummary(d, len(await self.store.list_accounts(d.name)),
                                            len(await self.store.list_aliases(d.name))))
        return result

    async def domain(self, name: str) -> Domain:
        """The domain named in a URL, if this principal may manage it."""
        name = _domain_key(name)
        if name in self._domains:
            return self._domains[name]
        self.who.require_domain(name)  # before looking: an owner learns nothing about others' domains
        found = await self.store.get_domain(name)
        if found is None:
            raise Missing(f"no such domain: {name}")
        self._domains[name] = found
        return found

    async def add_domain(self, name: str) -> Domain:
        self.who.require_admin()
        return await self.accounts.add_domain(name)

    async def remove_domain(self, name: str) -> None:
        self.who.require_admin()
        domain = await self.domain(name)
        await self.accounts.remove_domain(domain.name)

    async def set_domain_policy(self, name: str, policy: str) -> Domain:
        domain = await self.domain(name)
        updated = await self.accounts.set_domain_policy(domain.name, policy)
        self._domains[updated.name] = updated
        return updated

    async def set_catch_all(self, name: str, target: str | None) -> Domain:
        domain = await self.domain(name)
        return await self.accounts.set_catch_all(domain.name, target)

    # -- addresses --------------------------------------------------------------------------

    async def _info(self, account: Account, domain: Domain, aliases: Sequence[Alias]) -> AddressInfo:
        return AddressInfo(
            account, await self.store.quota_used(account.id), effective_protocols(account, domain),
            tuple(a.address for a in aliases if account.address in a.targets),
            tuple(self.office.sessions.for_account(account.id)))

    async def addresses(self, domain_name: str) -> list[AddressInfo]:
        domain = await self.domain(domain_name)
        aliases = await self.store.list_aliases(domain.name)
        return [await self._info(a, domain, aliases) for a in await self.store.list_accounts(domain.name)]

    async def _account(self, domain: Domain, address: str) -> Account:
        account = await self.store.get_account(_address_key(address))
        if account is None or account.domain_id != domain.id:
            raise Missing(f"no such address in {domain.name}: {address}")
        return account

    async def address(self, domain_name: str, address: str) -> AddressInfo:
        if self.who.is_user:
            address = _address_key(address)
            self.who.require_address(address)
            account = await self.store.get_account(address)
            if account is None:
                raise Missing(f"no such address: {address}")
            domain = await self.store.get_domain_by_id(account.domain_id)
        else:
            domain = await self.domain(domain_name)
            account = await self._account(domain, address)
        return await self._info(account, domain, await self.store.list_aliases(domain.name))

    def full_address(self, domain: Domain, text: str, field_name: str) -> str:
        """Accept a local part ("sales") or a whole address in this domain."""
        text = text.strip()
        if not text:
            raise UserError("enter an address", field_name)
        cleaned = self.accounts.clean_address(text if "@" in text else f"{text}@{domain.name}", field_name)
        if cleaned.rpartition("@")[2] != domain.name:
            raise UserError(f"the address must end in @{domain.name}", field_name)
        if any(ch in cleaned for ch in "/\\?#%"):
            # Valid in mail, but the panel's URLs (/domains/<d>/email/<address>/...) cannot carry them.
            raise UserError("the panel does not take '/', '\\', '?', '#' or '%' in an address", field_name)
        return cleaned

    async def add_address(self, domain_name: str, address: str, password: str, *, display_name: str = "",
                          quota_bytes: int = 0) -> AddressInfo:
        domain = await self.domain(domain_name)
        cleaned = self.full_address(domain, address, "address")
        account = await self.accounts.add_account(cleaned, password, display_name=display_name,
                                                  quota_bytes=quota_bytes)
        return await self._info(account, domain, [])

    async def save_address(self, domain_name: str, address: str, changes: AddressChanges) -> AddressInfo:
        """Edit settings + Advanced settings. Everything is checked before anything is stored;
        the switches take effect at once (the store's AccountChanged event makes the session
        registry end sessions that are no longer allowed)."""
        info = await self.address(domain_name, address)
        account = info.account
        domain = await self.store.get_domain_by_id(account.domain_id)
        if changes.password:
            self.accounts.check_password(changes.password)
        new_aliases: list[str] = []
        if changes.aliases is not None:
            new_aliases = [self.full_address(domain, a, "aliases") for a in changes.aliases if a.strip()]
            for alias in new_aliases:
                if alias == account.address:
                    raise UserError("an address cannot be its own alias", "aliases")
        if changes.forward_to is not None:
            for target in changes.forward_to.replace(",", " ").split():
                self.accounts.clean_address(target, "forward_to")
        if changes.aliases is not None:
            for alias in set(new_aliases) - set(info.aliases):
                existing = await self.store.get_alias(alias)
                if existing is not None or await self.store.get_account(alias) is not None:
                    raise UserError(f"{alias} already exists", "aliases")
        # update() checks its own fields (quota below use, ...) before it writes anything.
        await self.accounts.update(account.address, display_name=changes.display_name,
                                   quota_bytes=changes.quota_bytes, imap=changes.imap, pop3=changes.pop3,
                                   smtp=changes.smtp, forward_to=changes.forward_to,
                                   pop3_policy=changes.pop3_policy)
        if changes.password:
            await self.accounts.set_password(account.address, changes.password)
        if changes.aliases is not None:
            await self._sync_aliases(account.address, set(info.aliases), set(new_aliases))
        return await self.address(domain.name, account.address)

    async def _sync_aliases(self, address: str, old: set[str], new: set[str]) -> None:
        for alias in sorted(old - new):
            found = await self.store.get_alias(alias)
            if found is None:
                continue
            await self.accounts.remove_alias(alias)
            rest = [t for t in found.targets if t != address]
            if rest:
                await self.accounts.add_alias(alias, rest)
        for alias in sorted(new - old):
            await self.accounts.add_alias(alias, [address])

    async def delete_address(self, domain_name: str, address: str) -> None:
        domain = await self.domain(domain_name)
        account = await self._account(domain, address)
        await self.accounts.remove_account(account.address)

    # -- spam filtering on/off (issue 15) -----------------------------------------------------

    async def spam_filter(self, domain_name: str, address: str | None = None) -> dict[str, Any]:
        """Whether mail to the domain (or to one address) is checked by rspamd. ``enabled`` is
        the stored switch (for an address None: the domain's), ``effective`` what applies;
        ``available`` says whether the server has a spam filter configured at all."""
        domain = await self.domain(domain_name)
        own_domain = await self.store.spam_filter_setting(domain_id=domain.id)
        domain_on = True if own_domain is None else own_domain
        available = bool(self.office.config.filter.rspamd)
        if address is None:
            return {"domain": domain.name, "enabled": domain_on, "effective": domain_on and available,
                    "available": available}
        account = await self._account(domain, address)
        own = await self.store.spam_filter_setting(account_id=account.id)
        on = domain_on if own is None else own
        return {"address": account.address, "enabled": own, "domain_enabled": domain_on,
                "effective": on and available, "available": available}

    async def set_spam_filter(self, domain_name: str, address: str | None, enabled: bool | None) -> dict[str, Any]:
        """Switch filtering on/off for a domain, or for one address (None: follow the domain)."""
        domain = await self.domain(domain_name)
        if address is None:
            if enabled is None:
                raise UserError("a domain's spam filter is either on or off", "enabled")
            await self.store.set_spam_filter(enabled, domain_id=domain.id)
        else:
            account = await self._account(domain, address)
            await self.store.set_spam_filter(enabled, account_id=account.id)
        return await self.spam_filter(domain_name, address)

    # -- Junk threshold, allow and block lists (issue 15, services/spampolicy.py) -------------

    async def _spam_target(self, domain_name: str, address: str | None) -> dict[str, int]:
        """The store's key for a domain's or an address's settings (the principal may manage it)."""
        domain = await self.domain(domain_name)
        if address is None:
            return {"domain_id": domain.id}
        return {"account_id": (await self._account(domain, address)).id}

    async def spam_settings(self, domain_name: str, address: str | None = None) -> dict[str, Any]:
        """The switch (see `spam_filter`), the Junk threshold (``junk_score``: the stored one,
        None = not set; for an address also the domain's and the one in force) and the lists."""
        info = await self.spam_filter(domain_name, address)
        target = await self._spam_target(domain_name, address)
        info["junk_score"] = await self.store.spam_threshold(**target)
        if address is not None:
            domain = await self.domain(domain_name)
            info["domain_junk_score"] = await self.store.spam_threshold(domain_id=domain.id)
            info["effective_junk_score"] = info["junk_score"] if info["junk_score"] is not None else info["domain_junk_score"]
        info.update(await self.store.sender_lists(**target))
        return info

    async def set_junk_score(self, domain_name: str, address: str | None, value: object) -> dict[str, Any]:
        """Set the Junk threshold (a number above 0, or None/"" for "rspamd decides" / "as the domain")."""
        score = spampolicy.clean_threshold(value)
        await self.store.set_spam_threshold(score, **await self._spam_target(domain_name, address))
        return await self.spam_settings(domain_name, address)

    async def add_sender_entry(self, domain_name: str, address: str | None, kind: str, entry: str) -> str:
        """Add an entry to the allow or block list; returns it as stored."""
        kind = spampolicy.clean_list_kind(kind)
        cleaned = spampolicy.clean_entry(entry)
        target = await self._spam_target(domain_name, address)
        lists = await self.store.sender_lists(**target)
        other = spampolicy.BLOCK if kind == spampolicy.ALLOW else spampolicy.ALLOW
        if cleaned in lists[other]:
            raise UserError(f"{cleaned} is on the {other} list; remove it there first", "entry")
        if not await self.store.add_sender_entry(kind, cleaned, limit=spampolicy.MAX_ENTRIES, **target):
            raise UserError(f"the {kind} list is full ({spampolicy.MAX_ENTRIES} entries)", "entry")
        return cleaned

    async def remove_sender_entry(self, domain_name: str, address: str | None, kind: str, entry: str) -> None:
        kind = spampolicy.clean_list_kind(kind)
        target = await self._spam_target(domain_name, address)
        if not await self.store.remove_sender_entry(kind, entry.strip().lower(), **target):
            raise Missing(f"{entry} is not on the {kind} list")

    async def spam_overview(self, domain_name: str, *, days: int = 7, now: float | None = None) -> dict[str, Any]:
        """The panel's spam filter page: the switches of the domain and each address, and the
        stored verdicts of the last ``days`` days per day (oldest first) and per address."""
        import time as _time

        domain = await self.domain(domain_name)
        now = _time.time() if now is None else now
        today = now - now % 86400  # UTC midnight
        since = today - (days - 1) * 86400
        per_day, per_account = await self.store.verdict_counts(domain.id, since)
        kinds = {"no action": "delivered", "unknown": "delivered", "add header": "junked",
                 "rewrite subject": "junked", "reject": "rejected", "virus": "rejected", "greylist": "deferred",
                 "soft reject": "deferred", spampolicy.BLOCKED: "rejected", spampolicy.ALLOWED: "delivered",
                 spampolicy.JUNK_BY_THRESHOLD: "junked", spampolicy.KEPT_BY_THRESHOLD: "delivered"}
        empty = {"checked": 0, "delivered": 0, "junked": 0, "rejected": 0, "deferred": 0}
        chart = [{"day": _time.strftime("%a %d %b", _time.gmtime(since + i * 86400)), **empty} for i in range(days)]
        for day, action, count in per_day:
            if 0 <= day < days:
                chart[day]["checked"] += count
                chart[day][kinds.get(action, "delivered")] += count
        junk: dict[int, int] = {}
        for account_id, action, count in per_account:
            if kinds.get(action) == "junked":
                junk[account_id] = junk.get(account_id, 0) + count
        addresses = []
        for account in await self.store.list_accounts(domain.name):
            addresses.append({"address": account.address,
                              "enabled": await self.store.spam_filter_setting(account_id=account.id),
                              "junk": junk.get(account.id, 0)})
        settings = await self.spam_filter(domain.name)
        peak = max([row["checked"] for row in chart] + [1])
        return {**settings, "chart": chart, "peak": peak, "addresses": addresses}

    async def sessions(self, domain_name: str, address: str) -> list[OpenSession]:
        info = await self.address(domain_name, address)
        return list(info.sessions)

    # -- Sieve filters: rules editor, vacation, raw script (issue 16) ------------------------

    PANEL_SCRIPT = "panel"

    async def filters(self, domain_name: str, address: str) -> dict[str, Any]:
        """The active script, and the rules/vacation settings when the panel wrote it."""
        from ..sieve.rules import Filters, from_script

        info = await self.address(domain_name, address)
        active = await self.store.active_sieve_script(info.account.id)
        parsed = from_script(active.content) if active is not None else None
        return {"info": info, "active": active, "filters": parsed if parsed is not None else Filters(),
                "custom": active is not None and parsed is None,
                "scripts": await self.store.list_sieve_scripts(info.account.id)}

    async def save_filters(self, domain_name: str, address: str, filters: Any) -> str:
        """Write the rules and vacation as the "panel" script and make it the active one."""
        from ..sieve import SieveSyntaxError, parse
        from ..sieve.rules import RuleError, to_script

        info = await self.address(domain_name, address)
        try:
            script = to_script(filters)
            parse(script)
        except RuleError as exc:
            raise UserError(str(exc), exc.field) from None
        except SieveSyntaxError as exc:  # pragma: no cover - to_script writes valid Sieve
            raise UserError(f"the rules do not make a valid script: {exc}", "rules") from None
        await self.store.put_sieve_script(info.account.id, self.PANEL_SCRIPT, script)
        await self.store.activate_sieve_script(info.account.id, self.PANEL_SCRIPT)
        return script

    async def save_raw_script(self, domain_name: str, address: str, text: str, name: str | None = None) -> None:
        """Replace the active script's text (or create "main"); refused when it does not parse.
        An empty text turns filtering off (no active script)."""
        import asyncio

        from ..sieve import SieveSyntaxError, parse

        info = await self.address(domain_name, address)
        if not text.strip():
            await self.store.activate_sieve_script(info.account.id, None)
            return
        try:
            await asyncio.to_thread(parse, text)
        except SieveSyntaxError as exc:
            raise UserError(str(exc), "script") from None
        active = await self.store.active_sieve_script(info.account.id)
        target = name or (active.name if active is not None else "main")
        await self.store.put_sieve_script(info.account.id, target, text, max_scripts=20)
        await self.store.activate_sieve_script(info.account.id, target)

    # -- app passwords (issue 16) --------------------------------------------------------------

    async def app_passwords(self, domain_name: str, address: str) -> list[Any]:
        info = await self.address(domain_name, address)  # the authorization check
        return await self.store.list_app_passwords(info.account.id)

    async def add_app_password(self, domain_name: str, address: str, name: str, protocols: Sequence[str],
                               expires_at: float | None) -> Any:
        from ..services.app_passwords import AppPasswords

        info = await self.address(domain_name, address)
        return await AppPasswords(self.store).create(info.account.address, name, list(protocols), expires_at)

    async def revoke_app_password(self, domain_name: str, address: str, app_id: int) -> None:
        from ..services.app_passwords import AppPasswords

        info = await self.address(domain_name, address)
        await AppPasswords(self.store).revoke(info.account.address, app_id)

    # -- aliases ----------------------------------------------------------------------------

    async def aliases(self, domain_name: str) -> list[Alias]:
        domain = await self.domain(domain_name)
        return await self.store.list_aliases(domain.name)

    async def add_alias(self, domain_name: str, address: str, targets: Sequence[str]) -> Alias:
        domain = await self.domain(domain_name)
        cleaned = self.full_address(domain, address, "address")
        await self.accounts.add_alias(cleaned, [t for t in targets if t.strip()])
        alias = await self.store.get_alias(cleaned)
        assert alias is not None
        return alias

    async def remove_alias(self, domain_name: str, address: str) -> None:
        domain = await self.domain(domain_name)
        alias = await self.store.get_alias(_address_key(address))
        if alias is None or alias.domain_id != domain.id:
            raise Missing(f"no such alias in {domain.name}: {address}")
        await self.accounts.remove_alias(alias.address)

    # -- client settings and DNS ------------------------------------------------------------

    async def client_settings(self, domain_name: str) -> list[clientconfig.Endpoint]:
        await self.domain(domain_name)
        return clientconfig.endpoints(self.office.config, self.office.bound)

    async def dns_records(self, domain_name: str) -> tuple[list[clientconfig.DnsRecord], bool]:
        """The records to publish, and whether a DKIM key exists yet."""
        domain = await self.domain(domain_name)
        dkim = await clientconfig.dkim_key(self.store, domain.name, self.office.config)
        return clientconfig.dns_records(self.office.config, domain, self.office.bound, dkim), bool(dkim)

    async def mobileconfig(self, domain_name: str, address: str) -> bytes:
        info = await self.address(domain_name, address)
        domain = await self.store.get_domain_by_id(info.account.domain_id)
        offers = clientconfig.client_offers(self.office.config, self.office.bound, info.account, domain)
        try:
            return clientconfig.mobileconfig(info.account.address, info.account.display_name, offers)
        except clientconfig.NoMailboxProtocol as exc:
            raise UserError(str(exc), "protocols") from None

    # -- outbound queue (issue #7; administrators only) -------------------------------------

    def _queue(self) -> QueueService:
        return QueueService(self.store, getattr(self.office, "worker", None))

    async def queue(self) -> list[QueueEntry]:
        self.who.require_admin()
        return await self._queue().list()

    async def queue_entry(self, queue_id: int) -> QueueDetail:
        self.who.require_admin()
        try:
            entry, head = await self._queue().show(queue_id)
        except QueueError as exc:
            raise Missing(str(exc)) from None
        return QueueDetail(entry, message_headers(head))

    async def retry_queue(self, queue_id: int | None = None) -> int:
        """Make one entry (None: every entry) due now and wake the worker; returns the count."""
        self.who.require_admin()
        try:
            return await self._queue().retry(queue_id)
        except QueueError as exc:
            raise Missing(str(exc)) from None

    async def delete_queue_entry(self, queue_id: int) -> None:
        """Drop an entry without a bounce (the operator's decision)."""
        self.who.require_admin()
        try:
            await self._queue().delete(queue_id)
        except QueueError as exc:
            raise Missing(str(exc)) from None
