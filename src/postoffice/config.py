"""Settings: one typed, frozen object loaded once from TOML plus ``POSTOFFICE_*`` variables.

Every key has a default, so an empty file is a valid configuration for local use. An unknown
key, a wrong type or a malformed ``host:port`` is a `ConfigError` naming the file and the key;
the CLI prints it on one line and exits non-zero.

Environment variables override the file: ``POSTOFFICE_HOSTNAME``, ``POSTOFFICE_DATA_DIR`` and
``POSTOFFICE_<TABLE>_<KEY>`` for keys inside a table (``POSTOFFICE_LISTEN_IMAPS=0.0.0.0:993``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration problem, phrased as one line for the operator."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, where: str) -> HostPort:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{where}: expected \"host:port\", got {text!r}")
        host = host.strip("[]") or "0.0.0.0"
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Listen:
    """Bind addresses; an empty string switches a listener off."""

    smtp: str = "127.0.0.1:2525"
    submission: str = "127.0.0.1:5587"
    submissions: str = "127.0.0.1:5465"
    imap: str = "127.0.0.1:1143"
    imaps: str = "127.0.0.1:1993"
    pop3: str = "127.0.0.1:1110"
    pop3s: str = "127.0.0.1:1995"
    http: str = "127.0.0.1:8080"
    #: ManageSieve (RFC 5804; 4190 in production). Off unless configured (postoffice.toml
    #: and docs/production.toml set it).
    managesieve: str = ""

    def addresses(self, source: str = "") -> dict[str, HostPort]:
        prefix = f"{source}: " if source else ""
        return {
            f.name: HostPort.parse(getattr(self, f.name), f"{prefix}listen.{f.name}")
            for f in dataclasses.fields(self)
            if getattr(self, f.name)
        }


@dataclass(frozen=True)
class Tls:
    """Certificates. With ``cert`` empty a self-signed one is generated under data_dir."""

    cert: str = ""
    key: str = ""
    # Per-domain certificates chosen by SNI: {"example.com": {"cert": ..., "key": ...}}.
    sni: dict[str, dict[str, str]] = field(default_factory=dict)
    # A client asking (SNI) for a name none of the certificates is for gets the default one;
    # otherwise a fatal unrecognized_name alert (RFC 6066 §3). No SNI always gets the default.
    default_for_unknown_names: bool = False


@dataclass(frozen=True)
class Limits:
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    # Connections from one client address (a backstop against one host taking every slot: an
    # office or a mobile carrier's NAT puts many users behind one address, each desktop client
    # keeping ~5 IMAP connections), and per user from one address, Dovecot's
    # mail_max_userip_connections: a client that leaks connections is stopped at its own user.
    # Both (and max_connections) are counted over every worker process; see docs/operations.md.
    max_connections_per_ip: int = 500
    max_connections_per_user_ip: int = 10
    max_connections: int = 10000
    imap_max_literal: int = 50 * 1024 * 1024
    # Octets of messages being received at once, over all connections (SMTP DATA/BDAT, IMAP
    # literals), shared by the worker processes; past it 452 4.3.1 / NO [LIMIT] (try later).
    max_inflight_bytes: int = 1024 * 1024 * 1024
    idle_timeout: int = 1800  # seconds; RFC 9051 §5.4 asks for at least 30 minutes
    command_timeout: int = 300  # SMTP inactivity (RFC 5321 §4.5.3.2.7: 5 minutes)
    pop3_timeout: int = 600  # POP3 autologout (RFC 1939 §3: at least 10 minutes)
    send_rate_per_hour: int = 500


@dataclass(frozen=True)
class Security:
    # Allow passwords over unencrypted connections (never on by default).
    allow_plaintext_auth: bool = False
    # Allow them only from loopback clients (local testing, webmail on the same host).
    allow_plaintext_auth_loopback: bool = False
    # argon2id at 9 MiB, 4 passes, 1 lane: one of the settings the OWASP Password Storage Cheat
    # Sheet rates equal to its 19 MiB / 2-pass minimum, and a third faster here, so 1,000 users
    # logging in at once after a cold start clear in 10 s on 2 cores; see docs/operations.md.
    argon2_time_cost: int = 4
    argon2_memory_kib: int = 9216
    # Every failed login is answered this many seconds after it arrived (Dovecot's
    # auth_failure_delay), the same for an unknown user and a wrong password.
    auth_failure_delay: float = 2.0
    # Failures in `throttle_window` seconds after which answers are delayed more (a per-IP and
    # per-account penalty on top of auth_failure_delay), then refused.
    throttle_window: int = 900
    throttle_delay_after: int = 3
    throttle_max_delay: float = 15.0
    throttle_block_after: int = 30
    auth_cache_seconds: int = 300
    # A graceful restart hands the verified-credentials cache to the next start through a
    # private tmpfs file, so returning users skip argon2 (services/logincache.py).
    login_cache_handover: bool = True


@dataclass(frozen=True)
class Outbound:
    dns: str = ""  # "host:port" of the resolver to use; empty = system resolver
    smtp_port: int = 25
    retry_for: int = 5 * 24 * 3600
    delay_notice_after: int = 4 * 3600
    smarthost: str = ""  # "host:port"; empty = deliver to MX directly
    smarthost_username: str = ""
    smarthost_password: str = ""
    smarthost_tls: str = "starttls"  # starttls | tls | none
    dmarc_reject_action: str = "reject"  # reject | quarantine
    # -- queue runner and DKIM signing (issue #7) --
    enabled: bool = True  # run the queue worker inside `postoffice serve`
    concurrency: int = 20  # queue entries delivered at the same time
    retry_interval: int = 300  # first retry after a temporary failure; doubles each time
    retry_max_interval: int = 2 * 3600  # ... up to this interval
    mta_sts: bool = True  # honour MTA-STS policies (RFC 8461)
    dkim_sign: bool = True  # DKIM-sign mail submitted by our users
    dkim_selector_rsa: str = "po-rsa"  # selectors used when keys are generated
    dkim_selector_ed25519: str = "po-ed25519"


@dataclass(frozen=True)
class Inbound:
    """Checks on mail arriving on port 25 (issue #7)."""

    verify: bool = True  # SPF, DKIM and DMARC with an Authentication-Results header
    reject_spf_fail: bool = False  # SPF "fail" rejects when the domain has no DMARC record


@dataclass(frozen=True)
class Filter:
    """Spam filtering of mail arriving on port 25 (issue 15; services/spamfilter.py)."""

    rspamd: str = ""  # rspamd's normal worker, e.g. "http://127.0.0.1:11333"; empty = off
    on_failure: str = "accept"  # rspamd down or slow: "accept" (tagged X-Spam-Status: unknown) or "tempfail" (451)
    timeout: float = 10.0  # seconds one check may take, in all
    # clamd's socket for virus scanning: a path ("/run/clamav/clamd.ctl") or "host:port"; empty = off
    clamav: str = ""
    # rspamd's controller, for learning: a message moved into Junk is learned as spam, one moved
    # out of Junk (not to Trash) as ham. Empty = no learning.
    controller: str = ""  # e.g. "http://127.0.0.1:11334"
    controller_password: str = ""  # the controller's "enable_password" (or "password")
    # Also check authenticated mail (587/465) with rspamd, the account passed as its User:
    # reject -> 550 5.7.1, soft reject/greylist -> 451 4.7.1 (outbound spam from a stolen password)
    submission: bool = False


@dataclass(frozen=True)
class Panel:
    secret_key: str = ""  # empty: generated once and kept in data_dir
    public_url: str = ""
    metrics_public: bool = False  # serve /metrics to any client, not only loopback ones


@dataclass(frozen=True)
class Server:
    """Processes (issue 10). ``postoffice serve`` runs a supervisor and ``workers`` worker
    processes that all accept connections; 0 means one per CPU."""

    workers: int = 0
    #: Where this node keeps what is its own: the pid file (one server per run_dir), the
    #: workers' event-bus socket and the spool of messages being received. Empty: data_dir.
    #: Several nodes sharing one data_dir (PostgreSQL, issue 14) each need their own.
    run_dir: str = ""

    def worker_count(self) -> int:
        if self.workers > 0:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class StoreSettings:
    """Where the index lives (issue 14): empty for the SQLite file ``data_dir/postoffice.db``,
    a file path for SQLite elsewhere, or ``postgresql://user@host:5432/db`` for PostgreSQL
    (several nodes may share it; store.pg)."""

    database: str = ""


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Config:
    hostname: str = "localhost"
    data_dir: str = "./data"
    database: str = ""  # older spelling of [store] database, which wins when both are set
    log_level: str = "info"
    listen: Listen = field(default_factory=Listen)
    tls: Tls = field(default_factory=Tls)
    limits: Limits = field(default_factory=Limits)
    security: Security = field(default_factory=Security)
    outbound: Outbound = field(default_factory=Outbound)
    inbound: Inbound = field(default_factory=Inbound)
    filter: Filter = field(default_factory=Filter)
    panel: Panel = field(default_factory=Panel)
    server: Server = field(default_factory=Server)
    store: StoreSettings = field(default_factory=StoreSettings)
    source: str = ""  # the file this came from, for messages
    ignored_env: tuple[str, ...] = ()  # POSTOFFICE_* variables that name no setting

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def run_path(self) -> Path:
        return Path(self.server.run_dir) if self.server.run_dir else self.data_path

    @property
    def database_target(self) -> str | Path:
        """A PostgreSQL connection URL (a str), or the path of the SQLite file."""
        chosen = self.store.database or self.database
        if chosen.startswith(POSTGRES_SCHEMES):
            return chosen
        return Path(chosen) if chosen else self.data_path / "postoffice.db"

    @property
    def postgres_url(self) -> str | None:
        """The PostgreSQL URL when the store is there (several nodes may share it), else None."""
        target = self.database_target
        return target if isinstance(target, str) else None


_TABLES = {f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)}  # type: ignore[arg-type]


def load(path: str | os.PathLike[str] | None, env: typing.Mapping[str, str] | None = None) -> Config:
    """Read the TOML file at ``path`` (None: defaults only) and apply environment overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    where = str(path) if path else "(defaults)"
    if path:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except PermissionError:
            raise ConfigError(f"{path}: config file is not readable (permission denied)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    ignored = _apply_env(raw, env)
    config = _build(Config, raw, where, "")
    config = dataclasses.replace(config, source=where, ignored_env=ignored)
    validate(config)
    return config


def _apply_env(raw: dict[str, Any], env: typing.Mapping[str, str]) -> tuple[str, ...]:
    """Apply ``POSTOFFICE_*`` overrides; return the names that match no setting.

    Those are ignored rather than fatal: other tools share the prefix (a test suite's
    ``POSTOFFICE_TEST_PG_DSN``, say). `postoffice check-config` lists them, to catch typos."""
    ignored = []
    for name, value in env.items():
        if not name.startswith("POSTOFFICE_") or name == "POSTOFFICE_CONFIG":
            continue
        key = name[len("POSTOFFICE_"):].lower()
        table, _, rest = key.partition("_")
        if table in _TABLES and rest and rest in _field_names(table):
            raw.setdefault(table, {})[rest] = value
        elif key in _field_names(None) and key not in _TABLES:
            raw[key] = value
        else:
            ignored.append(name)
    return tuple(sorted(ignored))


def _field_names(table: str | None) -> set[str]:
    cls = Config if table is None else typing.get_type_hints(Config)[table]
    return {f.name for f in dataclasses.fields(cls) if f.name not in ("source", "ignored_env")}


def _build(cls: type, raw: dict[str, Any], where: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.')} must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name not in ("source", "ignored_env")}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = _build(kind, value, where, f"{prefix}{key}.")
        else:
            values[key] = _coerce(kind, value, f"{where}: {prefix}{key}")
    return cls(**values)


def _coerce(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def validate(config: Config) -> None:
    """Checks that need more than one key, or the file system."""
    seen: dict[tuple[str, int], str] = {}
    for name, addr in config.listen.addresses(config.source).items():
        if addr.port and (addr.host, addr.port) in seen:
            raise ConfigError(
                f"{config.source}: listen.{name} and listen.{seen[(addr.host, addr.port)]} both use {addr}"
            )
        seen[(addr.host, addr.port)] = name
    if bool(config.tls.cert) != bool(config.tls.key):
        raise ConfigError(f"{config.source}: tls.cert and tls.key must be set together")
    for domain, pair in config.tls.sni.items():
        if set(pair) - {"cert", "key"} or not pair.get("cert") or not pair.get("key"):
            raise ConfigError(f"{config.source}: tls.sni.\"{domain}\" needs exactly 'cert' and 'key'")
    if config.outbound.dns:
        HostPort.parse(config.outbound.dns, f"{config.source}: outbound.dns")
    if config.outbound.smarthost:
        HostPort.parse(config.outbound.smarthost, f"{config.source}: outbound.smarthost")
    if config.outbound.dmarc_reject_action not in ("reject", "quarantine"):
        raise ConfigError(f"{config.source}: outbound.dmarc_reject_action must be reject or quarantine")
    if config.outbound.concurrency < 1 or config.outbound.retry_interval < 1:
        raise ConfigError(f"{config.source}: outbound.concurrency and outbound.retry_interval must be at least 1")
    if config.server.workers < 0 or config.server.workers > 256:
        raise ConfigError(f"{config.source}: server.workers must be between 0 (one per CPU) and 256")
    if config.filter.on_failure not in ("accept", "tempfail"):
        raise ConfigError(f"{config.source}: filter.on_failure must be accept or tempfail")
    if config.filter.rspamd and not config.filter.rspamd.startswith(("http://", "https://")):
        raise ConfigError(f"{config.source}: filter.rspamd must be an http:// or https:// URL")
    if config.filter.controller and not config.filter.controller.startswith(("http://", "https://")):
        raise ConfigError(f"{config.source}: filter.controller must be an http:// or https:// URL")
    if config.filter.clamav and not config.filter.clamav.startswith("/"):
        HostPort.parse(config.filter.clamav, f"{config.source}: filter.clamav")
    if not 0 < config.filter.timeout <= 300:
        raise ConfigError(f"{config.source}: filter.timeout must be between 0 and 300 seconds")
    if config.outbound.smarthost_tls not in ("starttls", "tls", "none"):
        raise ConfigError(f"{config.source}: outbound.smarthost_tls must be starttls, tls or none")
