"""Who may use the control panel and its API, and what each of them may touch.

Three kinds of principal:

- a panel **admin** (``admins.role = 'admin'``; the first one is created at first start) manages
  every domain, the panel logins and their API tokens;
- a **domain owner** (``admins.role = 'owner'``) sees and manages only the domains assigned to it
  in ``domain_owners``; reaching any other domain is `Forbidden`, whatever the URL says;
- a **mailbox user** signs in with an address and its mail password and may change only its own
  password and its own POP3 policy.

Passwords are argon2id hashes made by the shared `Authenticator`, and failed logins count towards
the same throttling (per IP and per login) as IMAP, POP3 and SMTP. API tokens are random strings
shown once; only their SHA-256 is stored (a token has 256 bits of entropy, so a fast hash is
enough and lets a token be found by its hash).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from ..store import NotFound, Store
from .accounts import AccountService, UserError
from .auth import Authenticator, AuthStatus

ROLES = ("admin", "owner")
TOKEN_PREFIX = "po_"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Forbidden(Exception):
    """The principal may not do this (HTTP 403); nothing was changed."""


class LoginThrottled(Exception):
    """Too many failed logins from this IP or for this login: try again later."""


@dataclass(frozen=True)
class Principal:
    kind: str  # admin | owner | user
    name: str  # login name, or the mailbox address for a user
    admin_id: int = 0
    domains: frozenset[str] = field(default_factory=frozenset)  # for owners
    stamp: float = 0.0  # users: password_changed_at when the session began
    key: str = ""  # admins/owners: fingerprint of the login and its password (see session_key)

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    def may_manage(self, domain: str) -> bool:
        if self.kind == "admin":
            return True
        if self.kind == "owner":
            return domain in self.domains
        return False

    def require_domain(self, domain: str) -> None:
        if not self.may_manage(domain):
            raise Forbidden(f"you may not manage the domain {domain}")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("only a panel administrator may do this")

    def require_address(self, address: str) -> None:
        """A mailbox user may act on its own address; staff on the addresses of their domains."""
        if self.kind == "user":
            if address != self.name:
                raise Forbidden("you may only change your own address")
            return
        self.require_domain(address.rpartition("@")[2])


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_key(row: dict[str, object]) -> str:
    """Changes when the login's password changes or the login is removed and made again under
    the same name: a panel session remembers it, and ends when it no longer matches."""
    return hashlib.sha256(f"{row['id']}\0{row['password_hash']}".encode()).hexdigest()


@dataclass
class PanelUsers:
    store: Store
    auth: Authenticator
    accounts: AccountService

    # -- signing in -------------------------------------------------------------------------

    async def login(self, username: str, password: str, remote_ip: str) -> Principal:
        """Check a panel login (an admin/owner name, or a mailbox address). Raises `UserError`
        ("invalid username or password", field ``password``) or `LoginThrottled`."""
        username = username.strip()
        if "@" in username:
            result = await self.auth.check_password(username, password, remote_ip)
            if result.status is AuthStatus.THROTTLED:
                raise LoginThrottled("too many failed logins; wait a few minutes and try again")
            if not result.ok or result.account is None:
                raise UserError("invalid username or password", "password")
            return Principal("user", result.account.address, stamp=result.account.password_changed_at)
        name = username.lower()
        if self.auth.is_blocked(remote_ip, f"panel:{name}"):
            raise LoginThrottled("too many failed logins; wait a few minutes and try again")
        row = await self.store.get_admin(name)
        ok = await self.auth.verify_hash(row["password_hash"] if row else None, password)
        if not ok or row is None:
            await self.auth.record_failure(remote_ip, f"panel:{name}")  # the same throttling as the mail servers
            raise UserError("invalid username or password", "password")
        self.auth.failures.clear(f"user:panel:{name}")
        return await self.principal_for_admin(row)

    async def principal_for_admin(self, row: dict[str, object]) -> Principal:
        admin_id = int(row["id"])  # type: ignore[call-overload]
        domains = frozenset(await self.store.owned_domains(admin_id)) if row["role"] == "owner" else frozenset()
        key = session_key(row) if "password_hash" in row else ""
        return Principal(str(row["role"]), str(row["username"]), admin_id, domains, key=key)

    async def resume(self, kind: str, name: str, stamp: float = 0.0, key: str = "") -> Principal | None:
        """Rebuild the principal of a session; None when the login is gone or its password changed."""
        if kind == "user":
            account = await self.store.get_account(name)
            if account is None or account.password_changed_at != stamp:
                return None
            return Principal("user", account.address, stamp=stamp)
        row = await self.store.get_admin(name)
        if row is None or row["role"] != kind or not hmac.compare_digest(session_key(row), key):
            return None
        return await self.principal_for_admin(row)

    # -- panel logins (admins and domain owners) --------------------------------------------

    @staticmethod
    def clean_username(username: str) -> str:
        name = username.strip().lower()
        if not _USERNAME.match(name):
            raise UserError("a login name is 1-64 letters, digits, '.', '_' or '-' (no '@')", "username")
        return name

    async def list_logins(self) -> list[dict[str, object]]:
        logins = await self.store.list_admins()
        for login in logins:
            login["domains"] = await self.store.owned_domains(int(login["id"])) if login["role"] == "owner" else []
        return logins

    async def add_login(self, username: str, password: str, role: str = "owner",
                        domains: list[str] | None = None) -> dict[str, object]:
        name = self.clean_username(username)
        if role not in ROLES:
            raise UserError(f"the role must be one of {', '.join(ROLES)}", "role")
        self.accounts.check_password(password)
        cleaned = await self._clean_domains(domains or [])
        if await self.store.get_admin(name) is not None:
            raise UserError(f"the login {name} already exists", "username")
        admin_id = await self.store.add_admin(name, await self.auth.hash_password(password), role)
        if role == "owner":
            await self.store.set_owned_domains(admin_id, cleaned)
        return {"id": admin_id, "username": name, "role": role, "domains": cleaned if role == "owner" else []}

    async def _clean_domains(self, domains: list[str]) -> list[str]:
        cleaned = []
        for name in domains:
            if not name.strip():
                continue
            domain = self.accounts.clean_domain(name)
            if await self.store.get_domain(domain) is None:
                raise UserError(f"no such domain: {domain}", "domains")
            cleaned.append(domain)
        return sorted(set(cleaned))

    async def set_login_domains(self, username: str, domains: list[str]) -> list[str]:
        row = await self._login(username)
        if row["role"] != "owner":
            raise UserError("only a domain owner has a list of domains", "domains")
        cleaned = await self._clean_domains(domains)
        await self.store.set_owned_domains(int(row["id"]), cleaned)
        return cleaned

    async def set_login_password(self, username: str, password: str) -> None:
        row = await self._login(username)
        self.accounts.check_password(password)
        await self.store.update_admin_password(str(row["username"]), await self.auth.hash_password(password))

    async def remove_login(self, username: str, acting: Principal) -> None:
        row = await self._login(username)
        if row["username"] == acting.name:
            raise UserError("you cannot remove the login you are signed in with", "username")
        await self.store.remove_admin(str(row["username"]))

    async def _login(self, username: str) -> dict[str, object]:
        row = await self.store.get_admin(username.strip().lower())
        if row is None:
            raise UserError(f"no such login: {username}", "username")
        return row

    # -- API tokens -------------------------------------------------------------------------

    async def create_token(self, principal: Principal, name: str) -> tuple[int, str]:
        """A new token for ``principal`` (admin or owner). Returns (id, token); the token is
        shown once and only its hash is kept."""
        if principal.is_user:
            raise Forbidden("mailbox users have no API tokens")
        name = name.strip()
        if not name or len(name) > 100 or any(ord(ch) < 0x20 for ch in name):
            raise UserError("give the token a name (up to 100 characters) to tell it apart", "name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = await self.store.add_api_token(principal.admin_id, name, hash_token(token))
        return token_id, token

    async def list_tokens(self, principal: Principal) -> list[dict[str, object]]:
        if principal.is_user:
            return []
        return await self.store.list_api_tokens(principal.admin_id)

    async def revoke_token(self, principal: Principal, token_id: int) -> None:
        try:
            await self.store.remove_api_token(principal.admin_id, token_id)
        except NotFound:
            raise UserError(f"no such token: {token_id}", "token") from None

    async def principal_for_token(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = await self.store.find_api_token(hash_token(token))
        if row is None:
            return None
        return await self.principal_for_admin({"id": row["admin_id"], "username": row["username"],
                                               "role": row["role"]})

    # -- a mailbox user's own settings ------------------------------------------------------

    async def change_own_password(self, principal: Principal, current: str, new: str, remote_ip: str) -> None:
        if not principal.is_user:
            raise Forbidden("only a mailbox user changes its password here")
        result = await self.auth.check_password(principal.name, current, remote_ip)
        if result.status is AuthStatus.THROTTLED:
            raise LoginThrottled("too many failed attempts; wait a few minutes and try again")
        if not result.ok:
            raise UserError("the current password is not right", "current_password")
        await self.accounts.set_password(principal.name, new)
