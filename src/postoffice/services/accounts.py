"""Managing domains, addresses and aliases: the rules the CLI, the panel and the API share.

Validation happens here (a real validator for names and addresses, duplicates, alias loops,
quotas below current use); the store only stores. Errors are `UserError` with a message fit to
show next to the form field named by ``field``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..mail.address import InvalidAddress, normalize_address, normalize_domain
from ..store import (
    DOMAIN_POLICIES,
    POP3_POLICIES,
    Account,
    AlreadyExists,
    Domain,
    NotFound,
    Store,
)
from .auth import Authenticator

MIN_PASSWORD_LENGTH = 8


class UserError(Exception):
    """Something the operator asked for that cannot be done, with the reason."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class AccountService:
    store: Store
    auth: Authenticator

    # -- domains ----------------------------------------------------------------------------

    @staticmethod
    def clean_domain(name: str) -> str:
        try:
            domain = normalize_domain(name)
        except InvalidAddress:
            raise UserError(f"{name!r} is not a valid domain name", "name") from None
        if domain.startswith("[") or "." not in domain:
            raise UserError(f"{name!r} is not a valid domain name (it needs a dot, like example.com)", "name")
        return domain

    async def add_domain(self, name: str) -> Domain:
        domain = self.clean_domain(name)
        try:
            return await self.store.add_domain(domain)
        except AlreadyExists:
            raise UserError(f"the domain {domain} already exists", "name") from None

    async def domain(self, name: str) -> Domain:
        found = await self.store.get_domain(self.clean_domain(name))
        if found is None:
            raise UserError(f"no such domain: {name}", "name")
        return found

    async def remove_domain(self, name: str) -> None:
        try:
            await self.store.remove_domain(self.clean_domain(name))
        except NotFound:
            raise UserError(f"no such domain: {name}", "name") from None

    async def set_domain_policy(self, name: str, policy: str) -> Domain:
        if policy not in DOMAIN_POLICIES:
            raise UserError(f"protocol policy must be one of {', '.join(DOMAIN_POLICIES)}", "protocols")
        try:
            return await self.store.update_domain(self.clean_domain(name), protocol_policy=policy)
        except NotFound:
            raise UserError(f"no such domain: {name}", "name") from None

    async def set_catch_all(self, name: str, target: str | None) -> Domain:
        domain = self.clean_domain(name)
        cleaned = self.clean_address(target, "catch_all") if target else None
        try:
            return await self.store.update_domain(domain, catch_all=cleaned)
        except NotFound:
            raise UserError(f"no such domain: {name}", "name") from None

    # -- accounts ---------------------------------------------------------------------------

    @staticmethod
    def clean_address(address: str, field: str = "address") -> str:
        try:
            return normalize_address(address)
        except InvalidAddress as exc:
            why = f": {exc.reason}" if exc.reason else ""
            raise UserError(f"{address!r} is not a valid email address{why}", field) from None

    @staticmethod
    def check_password(password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters", "password")
        if any(ch in password for ch in "\r\n\0"):
            raise UserError("the password may not contain line breaks or NUL", "password")

    async def add_account(self, address: str, password: str, *, display_name: str = "",
                          quota_bytes: int = 0) -> Account:
        cleaned = self.clean_address(address)
        self.check_password(password)
        if quota_bytes < 0:
            raise UserError("the quota cannot be negative", "quota")
        if await self.store.get_domain(cleaned.rpartition("@")[2]) is None:
            raise UserError(f"the domain of {cleaned} is not hosted here; add the domain first", "address")
        password_hash = await self.auth.hash_password(password)
        try:
            return await self.store.add_account(cleaned, password_hash, display_name=display_name,
                                                quota_bytes=quota_bytes)
        except AlreadyExists:
            raise UserError(f"{cleaned} already exists", "address") from None

    async def account(self, address: str) -> Account:
        found = await self.store.get_account(self.clean_address(address))
        if found is None:
            raise UserError(f"no such address: {address}", "address")
        return found

    async def set_password(self, address: str, password: str) -> Account:
        self.check_password(password)
        account = await self.account(address)
        return await self.store.update_account(account.address, password_hash=await self.auth.hash_password(password))

    async def update(self, address: str, *, display_name: str | None = None, quota_bytes: int | None = None,
                     imap: bool | None = None, pop3: bool | None = None, smtp: bool | None = None,
                     forward_to: str | None = None, pop3_policy: str | None = None,
                     pop3_since: float | None | bool = False) -> Account:
        account = await self.account(address)
        changes: dict[str, object] = {}
        if display_name is not None:
            if any(ch in display_name for ch in "\r\n\0"):
                raise UserError("the display name may not contain line breaks", "display_name")
            changes["display_name"] = display_name.strip()
        if quota_bytes is not None:
            if quota_bytes < 0:
                raise UserError("the quota cannot be negative", "quota")
            used = await self.store.quota_used(account.id)
            if quota_bytes and quota_bytes < used:
                raise UserError(f"the quota cannot be below what the mailbox already uses ({used} bytes)", "quota")
            changes["quota_bytes"] = quota_bytes
        for name, value in (("imap_enabled", imap), ("pop3_enabled", pop3), ("smtp_enabled", smtp)):
            if value is not None:
                changes[name] = int(value)
        if forward_to is not None:
            targets = [self.clean_address(t, "forward_to") for t in forward_to.replace(",", " ").split()]
            if account.address in targets:
                raise UserError("an address cannot forward to itself", "forward_to")
            changes["forward_to"] = " ".join(targets)
        if pop3_policy is not None:
            if pop3_policy not in POP3_POLICIES:
                raise UserError(f"POP3 policy must be one of {', '.join(POP3_POLICIES)}", "pop3_policy")
            changes["pop3_policy"] = pop3_policy
        if pop3_since is not False:
            changes["pop3_since"] = pop3_since
        if not changes:
            return account
        return await self.store.update_account(account.address, **changes)

    async def remove_account(self, address: str) -> None:
        try:
            await self.store.remove_account(self.clean_address(address))
        except NotFound:
            raise UserError(f"no such address: {address}", "address") from None

    # -- aliases ----------------------------------------------------------------------------

    async def add_alias(self, address: str, targets: Sequence[str]) -> None:
        cleaned = self.clean_address(address)
        if not targets:
            raise UserError("an alias needs at least one target address", "targets")
        cleaned_targets = [self.clean_address(t, "targets") for t in targets]
        if await self.store.get_domain(cleaned.rpartition("@")[2]) is None:
            raise UserError(f"the domain of {cleaned} is not hosted here", "address")
        await self._check_alias_loop(cleaned, cleaned_targets)
        try:
            await self.store.add_alias(cleaned, cleaned_targets)
        except AlreadyExists:
            raise UserError(f"{cleaned} already exists", "address") from None

    async def _check_alias_loop(self, address: str, targets: Sequence[str]) -> None:
        """Refuse an alias whose expansion comes back to itself (a -> b -> a)."""
        seen = {address}
        pending = list(targets)
        while pending:
            target = pending.pop()
            if target in seen:
                raise UserError(f"the alias {address} would loop through {target}", "targets")
            seen.add(target)
            alias = await self.store.get_alias(target)
            if alias is not None:
                pending.extend(alias.targets)

    async def remove_alias(self, address: str) -> None:
        try:
            await self.store.remove_alias(self.clean_address(address))
        except NotFound:
            raise UserError(f"no such alias: {address}", "address") from None
