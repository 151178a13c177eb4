"""App passwords: one password per device, scoped to protocols and optionally expiring.

A mail client (phone, desktop) gets its own password instead of the address's main one; it
opens only the protocols it was made for (IMAP, POP3, SMTP submission; ManageSieve counts as
IMAP), may expire, can be revoked alone (its sessions end), and never opens the control panel.
The protocol-access rules (services/access.py) still apply on top: an IMAP app password of an
address whose IMAP switch is off is refused like the main password.

The password is generated here: 20 lowercase letters in groups of four (26^20, about 94
bits), shown once; only its SHA-256 digest is stored (like API tokens: with that much
randomness a slow hash adds nothing), so a login costs one indexed look-up, not an argon2 run.
Clients may type it with or without the dashes or spaces.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import time
from dataclasses import dataclass

from ..mail.address import InvalidAddress, normalize_address
from ..store import Account, NotFound, PROTOCOLS, Store
from ..store.app_passwords import AppPassword
from .accounts import UserError

PROTOCOL_LABELS = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
MAX_PER_ACCOUNT = 50
_FORMAT = re.compile(r"[a-z]{4}(?:[- ]?[a-z]{4}){4}\Z")


def normalize_token(password: str) -> str | None:
    """The canonical form of something that looks like an app password, else None."""
    text = password.strip().lower()
    if not _FORMAT.match(text):
        return None
    return text.replace("-", "").replace(" ", "")


def token_hash(account_id: int, token: str) -> str:
    return hashlib.sha256(f"{account_id}\0{token}".encode()).hexdigest()


def _generate() -> tuple[str, str]:
    raw = "".join(secrets.choice(string.ascii_lowercase) for _ in range(20))
    return raw, "-".join(raw[i:i + 4] for i in range(0, 20, 4))


@dataclass(frozen=True)
class Created:
    app_password: AppPassword
    password: str  # shown once


def scope_refusal(app: AppPassword, protocol: str, now: float | None = None) -> str | None:
    """Why ``app`` may not log in to ``protocol`` now (None: it may)."""
    if app.expired(now):
        return f"the app password \u201c{app.name}\u201d has expired"
    if protocol not in app.protocols:
        allowed = ", ".join(PROTOCOL_LABELS.get(p, p) for p in app.protocols)
        return (f"the app password \u201c{app.name}\u201d is not allowed for {PROTOCOL_LABELS.get(protocol, protocol)} "
                f"(only {allowed})")
    return None


class AppPasswords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _account(self, address: str) -> Account:
        try:
            account = await self.store.get_account(normalize_address(address))
        except InvalidAddress:
            account = None
        if account is None:
            raise UserError(f"no such address: {address}", "address")
        return account

    async def create(self, address: str, name: str, protocols: list[str] | tuple[str, ...],
                     expires_at: float | None = None) -> Created:
        account = await self._account(address)
        name = name.strip()
        if not name or len(name) > 100 or any(ch in name for ch in "\r\n\0"):
            raise UserError("give the app password a name (up to 100 characters, one line)", "name")
        scopes = tuple(p for p in PROTOCOLS if p in {x.strip().lower() for x in protocols})
        unknown = {x.strip().lower() for x in protocols} - set(PROTOCOLS) - {""}
        if unknown or not scopes:
            raise UserError("choose one or more of imap, pop3, smtp", "protocols")
        if expires_at is not None and expires_at <= time.time():
            raise UserError("the expiry must be in the future", "expires")
        if len(await self.store.list_app_passwords(account.id)) >= MAX_PER_ACCOUNT:
            raise UserError(f"at most {MAX_PER_ACCOUNT} app passwords per address", "name")
        raw, shown = _generate()
        app = await self.store.add_app_password(account.id, name, token_hash(account.id, raw), scopes, expires_at)
        return Created(app, shown)

    async def list(self, address: str) -> list[AppPassword]:
        account = await self._account(address)
        return await self.store.list_app_passwords(account.id)

    async def revoke(self, address: str, app_id: int) -> None:
        account = await self._account(address)
        try:
            await self.store.remove_app_password(account.id, app_id)
        except NotFound:
            raise UserError(f"{address} has no app password {app_id}", "id") from None

    async def match(self, account_id: int, password: str) -> AppPassword | None:
        """The app password of this account that ``password`` is (expired ones included: the
        caller refuses those with the reason)."""
        token = normalize_token(password)
        if token is None:
            return None
        return await self.store.find_app_password(account_id, token_hash(account_id, token))


__all__ = ["AppPasswords", "Created", "normalize_token", "scope_refusal", "token_hash"]
