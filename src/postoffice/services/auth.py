"""Authentication shared by IMAP, POP3, SMTP submission and the control panel.

`Authenticator.authenticate` is the one path from a username and password to an account that
may use a protocol. It

1. refuses at once (temporary failure) a client IP or an account with too many recent failures,
2. verifies the argon2id hash off the event loop, in parallel on every core (``cpu.hashing``;
   a dummy hash for unknown users, so timing does not reveal which addresses exist), with a
   short-lived cache of verified credentials (an HMAC under a server key, never the
   password) so busy clients do not pay argon2 on every login, invalidated when the password
   changes; with worker processes the key and every verification are shared through the
   supervisor, which hands them over across a restart (services/logincache.py); a hash made
   with older parameters is upgraded after a successful login,
3. answers every failure ``security.auth_failure_delay`` seconds (Dovecot: 2 s) after the
   request arrived, plus a penalty growing with recent failures from that IP or for that
   name, the same text and the same time for an unknown user and a wrong password (the wait is
   measured from the start, so the argon2 time and the database lookup do not show),
4. asks the protocol-access decision whether the account may use this protocol now.

A right password is never delayed: a user who mistyped can log in at once afterwards.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from .. import cpu
from ..config import Security
from ..mail.address import InvalidAddress, normalize_address
from ..store import Account, Domain, Store
from ..store.app_passwords import AppPassword
from .access import protocol_access
from .passwords import Argon2

log = logging.getLogger(__name__)
#: Accounts whose outdated password hash may wait for an upgrade at the same time.
REHASH_QUEUE = 10000


class AuthStatus(enum.Enum):
    OK = "ok"
    BAD_CREDENTIALS = "bad-credentials"
    REFUSED = "refused"  # right password, but the protocol is off for this account
    THROTTLED = "throttled"  # too many failures: try again later (a temporary failure)


@dataclass(frozen=True)
class AuthResult:
    status: AuthStatus
    account: Account | None = None
    domain: Domain | None = None
    reason: str = ""
    #: the app password that logged in (services/app_passwords.py), None for the main password
    app_password: AppPassword | None = None

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK


def password_login_allowed(security: Security, *, tls: bool, loopback: bool) -> bool:
    """THE plaintext-login rule, for IMAP, POP3 and SMTP alike: may a client send a password
    (LOGIN, USER/PASS, AUTH PLAIN/LOGIN) on this connection?

    Under TLS always; without it only when the administrator allows it, for every client
    (``allow_plaintext_auth``) or for loopback clients only (``allow_plaintext_auth_loopback``).
    RFC 9051 §11.1/LOGINDISABLED, RFC 2595 §2.2 and RFC 4954 §4 ask for this default."""
    return tls or security.allow_plaintext_auth or (security.allow_plaintext_auth_loopback and loopback)


def authzid_permitted(authzid: str, username: str) -> bool:
    """THE authorization-identity check for SASL (RFC 4422 §3.4.1): an empty authzid, or one
    naming the same address as the authentication identity, is allowed; acting as someone
    else is not supported. Both are compared in the one normalised form logins use."""
    if not authzid:
        return True
    a, u = normalize_login(authzid), normalize_login(username)
    if a is None or u is None:
        return authzid == username
    return a == u


def normalize_login(username: str) -> str | None:
    """The account key a login name stands for (the address normalisation), or None when
    it is not a valid address (then it names no account)."""
    try:
        return normalize_address(username)
    except InvalidAddress:
        return None


def make_hasher(security: Security) -> Argon2:
    return Argon2(security.argon2_memory_kib, security.argon2_time_cost)


class FailureLog:
    """Recent failure times per key (an IP or an account), within a sliding window."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._times: defaultdict[str, deque[float]] = defaultdict(deque)
        self._swept = 0.0

    def count(self, key: str, now: float) -> int:
        times = self._times.get(key)
        if not times:
            return 0
        while times and times[0] < now - self.window:
            times.popleft()
        if not times:
            del self._times[key]
            return 0
        return len(times)

    def add(self, key: str, now: float) -> None:
        if now - self._swept >= self.window:
            # Keys are otherwise only pruned when asked about again: a sprayer naming a new
            # user (or coming from a new address) each time would grow this without bound.
            self._swept = now
            for stale in [k for k, t in self._times.items() if not t or t[-1] < now - self.window]:
                del self._times[stale]
        self._times[key].append(now)

    def clear(self, key: str) -> None:
        self._times.pop(key, None)


class Authenticator:
    def __init__(self, store: Store, security: Security) -> None:
        self.store = store
        self.security = security
        self.hasher = make_hasher(security)
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[str, tuple[bytes, float, float]] = {}  # address -> (mac, changed_at, expiry)
        self.failures = FailureLog(security.throttle_window)
        self._inflight: dict[tuple[str, bytes], asyncio.Future[bool]] = {}
        # Told (protocol, status value) of every login result: services/metrics.py.
        self.observe: Callable[[str, str], None] | None = None
        # Told (remote ip, username, ok) of every failure and of a success that cleared a
        # failure count: the app shares them with the other worker processes (note_remote).
        self.share: Callable[[str, str, bool], None] | None = None
        # Told (address, mac, password_changed_at) of every password argon2 verified: the
        # supervisor's hub passes it to the other workers (learn) and keeps it for a restart.
        self.on_verified: Callable[[str, bytes, float], None] | None = None
        self._rehashing: set[int] = set()
        self._rehash_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- passwords --------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        return await cpu.hashing(self.hasher.hash, password)

    async def verify_hash(self, password_hash: str | None, password: str) -> bool:
        """argon2 verification in the hashing threads (``postoffice.cpu``): the GIL is released
        (services/passwords.py), so concurrent logins use every core the process has."""
        def verify() -> bool:
            return self.hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
        return await cpu.hashing(verify)

    def _maybe_rehash(self, account: Account, password: str) -> None:
        """A hash made with other parameters (an older default) is replaced, after this login,
        by one with the current parameters: one at a time, in the background."""
        if not self.hasher.needs_rehash(account.password_hash):
            return
        if account.id in self._rehashing or len(self._rehashing) >= REHASH_QUEUE:
            return
        self._rehashing.add(account.id)

        async def rehash() -> None:
            try:
                async with self._rehash_lock:
                    new_hash = await cpu.hashing(self.hasher.hash, password)
                    if await self.store.rehash_password(account.id, account.password_hash, new_hash):
                        log.info("password hash of %s upgraded to the current argon2 parameters", account.address)
            except Exception:  # noqa: BLE001 - the old hash keeps working
                log.exception("cannot upgrade the password hash of %s", account.address)
            finally:
                self._rehashing.discard(account.id)
        task = asyncio.ensure_future(rehash())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def share_cache(self, key: bytes, entries: list[tuple[str, bytes, float]]) -> None:
        """Use the server's cache key (the same in every worker) and start with ``entries``
        (address, mac, password_changed_at) verified by other workers or before a restart."""
        self._cache_key = key
        for address, mac, changed_at in entries:
            self.learn(address, mac, changed_at)

    def learn(self, address: str, mac: bytes, changed_at: float) -> None:
        """A credential another worker verified (with the shared key): cached as if verified
        here. A password changed since no longer matches ``changed_at`` (``_cached_ok``)."""
        self._cache[address] = (mac, changed_at, time.monotonic() + self.security.auth_cache_seconds)

    def _mac(self, address: str, password: str) -> bytes:
        return hmac.new(self._cache_key, f"{address}\0{password}".encode(), hashlib.sha256).digest()

    # -- throttling -------------------------------------------------------------------------

    def is_blocked(self, remote_ip: str, username: str = "") -> bool:
        now = time.monotonic()
        limit = self.security.throttle_block_after
        return self.failures.count(f"ip:{remote_ip}", now) >= limit or (
            bool(username) and self.failures.count(f"user:{username}", now) >= limit)

    def note_remote(self, remote_ip: str, username: str, ok: bool) -> None:
        """A login result from another worker process (see ``share``)."""
        if ok:
            self.failures.clear(f"user:{username}")
            return
        now = time.monotonic()
        self.failures.add(f"ip:{remote_ip}", now)
        if username:
            self.failures.add(f"user:{username}", now)

    def clear_failures(self, remote_ip: str, username: str) -> None:
        if self.failures.count(f"user:{username}", time.monotonic()):
            self.failures.clear(f"user:{username}")
            if self.share is not None:
                self.share(remote_ip, username, True)

    def penalty(self, remote_ip: str, username: str = "") -> float:
        """Extra seconds for the next failure: doubling from ``throttle_delay_after`` recent
        failures (of this IP or this name) on, up to ``throttle_max_delay``."""
        now = time.monotonic()
        count = max(self.failures.count(f"ip:{remote_ip}", now),
                    self.failures.count(f"user:{username}", now) if username else 0)
        over = count - self.security.throttle_delay_after
        return min(self.security.throttle_max_delay, 0.5 * 2 ** over) if over >= 0 else 0.0

    async def record_failure(self, remote_ip: str, username: str, started: float | None = None) -> None:
        """Count a failed login and answer it late: ``auth_failure_delay`` plus the penalty,
        counted from ``started`` (when the attempt arrived; time.monotonic())."""
        now = time.monotonic()
        self.failures.add(f"ip:{remote_ip}", now)
        if username:
            self.failures.add(f"user:{username}", now)
        if self.share is not None:
            self.share(remote_ip, username, False)
        await self._delay(remote_ip, username, now if started is None else started)

    async def _delay(self, remote_ip: str, username: str, started: float) -> None:
        deadline = started + self.security.auth_failure_delay + self.penalty(remote_ip, username)
        wait = deadline - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def failed_attempt(self, remote_ip: str, username: str = "") -> None:
        """A login that failed before any password check (a name that is not even text):
        counted and delayed like a wrong password, so it looks the same from outside."""
        await self.record_failure(remote_ip, username[:320].strip().lower())

    # -- the entry points -------------------------------------------------------------------

    async def check_password(self, username: str, password: str, remote_ip: str) -> AuthResult:
        """Verify credentials only (no protocol decision): used by the panel for mailbox users."""
        result, _ = await self._check_password(username, password, remote_ip)
        return self._observed("panel", result)

    def _observed(self, protocol: str, result: AuthResult) -> AuthResult:
        if self.observe is not None:
            self.observe(protocol, result.status.value)
        return result

    async def _check_password(self, username: str, password: str, remote_ip: str, *,
                              app_passwords: bool = False) -> tuple[AuthResult, bool]:
        """The result, and whether the account takes app passwords only on the mail protocols.
        ``app_passwords``: an app password may stand in for the main one (the mail
        protocols; never the panel)."""
        started = time.monotonic()
        address = normalize_login(username) or username.strip().lower()
        if self.is_blocked(remote_ip, address):
            log.warning("login throttled for %s from %s", address, remote_ip)
            await self._delay(remote_ip, address, started)  # a blocked scanner waits too
            return AuthResult(AuthStatus.THROTTLED, reason="too many failed logins; try again later"), False
        login = await self.store.get_login(address)  # account, domain, app-passwords-only: one read
        account, domain, only_app_passwords = login if login is not None else (None, None, False)
        app: AppPassword | None = None
        if app_passwords and account is not None:
            from .app_passwords import AppPasswords  # (imports services.accounts, which imports us)
            app = await AppPasswords(self.store).match(account.id, password)
        if app is not None:
            ok = True  # one indexed look-up of a high-entropy secret's digest; no argon2 run
        elif account is not None and self._cached_ok(account, password):
            ok = True
        else:
            ok = await self._verify_once(account, address, password)
        if not ok or account is None:
            log.info("failed login for %s from %s", address, remote_ip)
            await self.record_failure(remote_ip, address, started)
            return AuthResult(AuthStatus.BAD_CREDENTIALS, reason="invalid username or password"), False
        self.clear_failures(remote_ip, address)
        return AuthResult(AuthStatus.OK, account, domain, app_password=app), only_app_passwords

    async def _verify_once(self, account: Account | None, address: str, password: str) -> bool:
        """argon2 verification, shared by concurrent logins with the same credentials: fifty
        clients of one account reconnecting at once cost one verification, not fifty."""
        key = (address, self._mac(address, password))
        pending = self._inflight.get(key)
        first = pending is None
        if pending is None:
            pending = asyncio.ensure_future(self.verify_hash(account.password_hash if account else None, password))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        ok = await asyncio.shield(pending)
        if ok and account is not None:
            self.learn(address, key[1], account.password_changed_at)
            if first and self.on_verified is not None:
                self.on_verified(address, key[1], account.password_changed_at)
            self._maybe_rehash(account, password)
        return ok

    def _cached_ok(self, account: Account, password: str) -> bool:
        entry = self._cache.get(account.address)
        if entry is None:
            return False
        mac, changed_at, expiry = entry
        if expiry < time.monotonic() or changed_at != account.password_changed_at:
            del self._cache[account.address]
            return False
        return hmac.compare_digest(mac, self._mac(account.address, password))

    async def authenticate(self, username: str, password: str, remote_ip: str, protocol: str) -> AuthResult:
        """Credentials, then the protocol-access decision for ``protocol`` (imap/pop3/smtp)."""
        result, only_app_passwords = await self._check_password(username, password, remote_ip, app_passwords=True)
        if not result.ok or result.account is None or result.domain is None:
            return self._observed(protocol, result)
        if result.app_password is None and only_app_passwords:
            # Issue 16: an address with two-factor login may refuse its main password on the
            # mail protocols (app passwords only), as large providers do against stuffing.
            reason = "this address accepts app passwords only for IMAP, POP3 and SMTP"
            log.info("%s refused for %s: %s", protocol, result.account.address, reason)
            return self._observed(protocol, AuthResult(AuthStatus.REFUSED, result.account, result.domain, reason))
        if result.app_password is not None:
            from .app_passwords import scope_refusal
            refusal = scope_refusal(result.app_password, protocol)
            if refusal is not None:
                log.info("%s refused for %s: %s", protocol, result.account.address, refusal)
                return self._observed(protocol, AuthResult(AuthStatus.REFUSED, result.account, result.domain,
                                                           refusal, result.app_password))
            await self.store.touch_app_password(result.app_password.id)
        decision = protocol_access(result.account, result.domain, protocol)
        if not decision.allowed:
            log.info("%s refused for %s: %s", protocol, result.account.address, decision.reason)
            return self._observed(protocol, AuthResult(AuthStatus.REFUSED, result.account, result.domain,
                                                       decision.reason, result.app_password))
        return self._observed(protocol, result)
