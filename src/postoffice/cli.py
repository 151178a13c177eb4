"""The `postoffice` command: serve, and manage domains, addresses and aliases.

Every failure the operator can fix (bad config, unknown domain, port in use...) is one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from . import config as config_module
from . import cpu
from .config import Config, ConfigError
from .services.accounts import AccountService, UserError
from .services.auth import Authenticator
from .store import Store

T = TypeVar("T")
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


class Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = config_module.load(self.config_path)
            except ConfigError as exc:
                fail(str(exc), 2)
        assert self._config is not None
        return self._config

    def run(self, work: Callable[[AccountService], Awaitable[T]]) -> T:
        """Run ``work`` against the store, turning user errors into one-line failures."""
        async def main() -> T:
            committed: list[Any] = []
            try:
                store = Store.open(self.config.data_path, self.config.database_target, on_commit=committed.extend,
                                   spool_dir=self.config.run_path / "spool")
            except Exception as exc:  # noqa: BLE001 - reported as one line
                fail(f"cannot open the store in {self.config.data_path}: {exc}")
            try:
                return await work(AccountService(store, Authenticator(store, self.config.security)))
            finally:
                store.close()
                if committed:
                    # A running server's workers hear the change at once (an address whose
                    # IMAP was switched off loses its open sessions on every worker), on every
                    # node when the store is PostgreSQL.
                    try:
                        await _announce(self.config, committed)
                    except Exception:  # noqa: BLE001 - the change is committed; the server is optional
                        logging.getLogger(__name__).debug("announcing the change failed", exc_info=True)
        try:
            return asyncio.run(main())
        except UserError as exc:
            fail(str(exc))
            raise  # unreachable


pass_ctx = click.make_pass_decorator(Context)


def on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


@click.group()
@click.option("--config", "config_path", envvar="POSTOFFICE_CONFIG", type=click.Path(dir_okay=False),
              help="postoffice.toml to use (or POSTOFFICE_CONFIG).")
@click.version_option(package_name="postoffice")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """postoffice: SMTP, IMAP, POP3 and a control panel for your own domains."""
    ctx.obj = Context(config_path)


# -- serve ----------------------------------------------------------------------------------


@main.command()
@pass_ctx
def serve(ctx: Context) -> None:
    """Run every listener (SMTP, submission, IMAP, POP3, the panel): a supervisor and
    [server] workers worker processes (0: one per CPU). Signal the supervisor (its pid is in
    postoffice.pid in [server] run_dir, by default data_dir) to stop them all."""
    config = ctx.config
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _use_uvloop()
    try:
        asyncio.run(_serve(config, ctx.config_path))
    except ConfigError as exc:
        fail(str(exc), 2)
    except KeyboardInterrupt:
        pass


async def _announce(config: Config, events: list[Any]) -> None:
    """Tell the running workers (of every node) about changes the CLI committed."""
    node = f"cli:{os.getpid()}@{socket.gethostname()}"
    if config.postgres_url is not None:
        from .services import pgbus

        await pgbus.announce(config.postgres_url, events, node)
    else:
        from .services.unixbus import announce

        await announce(config.run_path, events, node)


def _use_uvloop() -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass


async def _serve(config: Config, config_path: str | None) -> None:
    from .supervisor import Supervisor

    loop = asyncio.get_running_loop()
    supervisor = Supervisor(config, config_path)
    for sig in (signal.SIGINT, signal.SIGTERM):  # before any port opens: a stop is never lost
        loop.add_signal_handler(sig, supervisor.request_stop)
    await _prepare(config)
    await supervisor.start()
    _print_banner(config, supervisor.bound, supervisor.count)
    await supervisor.run()
    console.print("shut down")


async def _prepare(config: Config) -> None:
    """What must happen once, before any worker starts: the schema, the first panel login,
    the self-signed certificate."""
    from .tls import server_context

    try:
        store = Store.open(config.data_path, config.database_target, spool_dir=config.run_path / "spool")
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot open the store in {config.data_path}: {exc}") from None
    try:
        await _first_admin(store, Authenticator(store, config.security))
        server_context(config, [d.name for d in await store.list_domains()])
    finally:
        store.close()


@main.command("worker", hidden=True)
@click.option("--index", type=int, required=True)
@click.option("--parent", type=int, required=True)
@click.option("--bus", "bus_path", required=True)
@click.option("--sockets", default="")
@click.option("--counts", type=int, default=-1, help="descriptor of the shared connection counts")
@pass_ctx
def worker(ctx: Context, index: int, parent: int, bus_path: str, sockets: str, counts: int) -> None:
    """Internal: one worker process of `serve` (started by the supervisor)."""
    from .supervisor import parse_sockets, run_worker

    config = ctx.config
    logging.basicConfig(level=config.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s [worker {index}] %(name)s: %(message)s")
    _use_uvloop()
    try:
        asyncio.run(run_worker(config, index, parent, Path(bus_path), parse_sockets(sockets),
                               counts if counts >= 0 else None))
    except ConfigError as exc:
        fail(str(exc), 2)
    except KeyboardInterrupt:
        pass


async def _first_admin(store: Store, auth: Authenticator) -> None:
    """On first start, create the panel's admin login and show its password once."""
    if await store.count_admins():
        return
    password = secrets.token_urlsafe(12)
    await store.add_admin("admin", await auth.hash_password(password))
    console.print("[bold green]Created the control panel login[/]  user: [bold]admin[/]  "
                  f"password: [bold]{password}[/]  (shown only this once)")


def _print_banner(config: Config, bound: dict[str, Any], workers: int) -> None:
    # On its own line (a table title wraps at the table's width): the pid to signal.
    console.print(f"postoffice is running as {config.hostname}: {workers} worker process"
                  f"{'es' if workers != 1 else ''}, supervisor pid {os.getpid()}", soft_wrap=True, highlight=False)
    table = Table(show_header=True)
    table.add_column("service")
    table.add_column("address")
    table.add_column("security")
    labels = {
        "http": ("Control panel", "http"), "smtp": ("SMTP (from other servers)", "STARTTLS"),
        "submission": ("SMTP submission", "STARTTLS"), "submissions": ("SMTP submission", "SSL/TLS"),
        "imap": ("IMAP", "STARTTLS"), "imaps": ("IMAP", "SSL/TLS"),
        "pop3": ("POP3", "STLS"), "pop3s": ("POP3", "SSL/TLS"),
        "managesieve": ("ManageSieve (filters)", "STARTTLS"),
    }
    for name, addr in bound.items():
        label, security = labels[name]
        table.add_row(label, f"http://{addr}/" if name == "http" else str(addr), security)
    console.print(table)


# -- check-config ---------------------------------------------------------------------------


@main.command("check-config")
@pass_ctx
def check_config(ctx: Context) -> None:
    """Validate the configuration and the TLS certificates, then print the listeners."""
    config = ctx.config
    from .tls import server_context

    try:
        server_context(config)
    except ConfigError as exc:
        fail(str(exc), 2)
    for name, addr in config.listen.addresses().items():
        console.print(f"{name:12} {addr}")
    count = config.server.worker_count()
    console.print(f"{'workers':12} {count}" + (" (one per CPU)" if config.server.workers == 0 else ""))
    for name in config.ignored_env:
        console.print(f"[yellow]warning:[/] environment variable {name} names no setting and is ignored")
    console.print(f"[green]configuration {config.source} is valid[/]")


# -- migrate (issue 14) ---------------------------------------------------------------------


@main.command("migrate")
@click.option("--from", "source", required=True, metavar="sqlite:PATH",
              help="the SQLite database to copy, e.g. sqlite:./data/postoffice.db")
@click.option("--to", "target", required=True, metavar="postgresql://...",
              help="the empty database to copy into")
def migrate_database(source: str, target: str) -> None:
    """Copy every table (messages, flags, UIDs, UIDVALIDITY, modseqs, queue, accounts, panel
    data) from SQLite to PostgreSQL, then compare counts. Stop the server first; message
    files stay in data_dir. Then set [store] database to the target and start the server."""
    from .config import POSTGRES_SCHEMES
    from .store.transfer import TransferError, copy_database

    if not source.startswith("sqlite:"):
        fail("--from must be sqlite:PATH", 2)
    if not target.startswith(POSTGRES_SCHEMES):
        fail("--to must be a postgresql:// URL", 2)
    try:
        copied = copy_database(Path(source.removeprefix("sqlite:")), target,
                               progress=lambda table, rows: console.print(f"{table:24} {rows:>10} rows"))
    except TransferError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the database's refusal, in one line
        fail(f"migration failed: {exc}")
    console.print(f"[green]copied {sum(copied.values())} rows in {len(copied)} tables; counts verified[/]")


# -- domains --------------------------------------------------------------------------------


@main.group()
def domain() -> None:
    """Hosted domains."""


@domain.command("add")
@click.argument("name")
@pass_ctx
def domain_add(ctx: Context, name: str) -> None:
    d = ctx.run(lambda svc: svc.add_domain(name))
    console.print(f"added domain [bold]{d.name}[/]")


@domain.command("list")
@pass_ctx
def domain_list(ctx: Context) -> None:
    async def work(svc: AccountService) -> list[Any]:
        return [(d, len(await svc.store.list_accounts(d.name))) for d in await svc.store.list_domains()]
    table = Table("domain", "protocols", "addresses", "catch-all")
    for d, count in ctx.run(work):
        table.add_row(d.name, d.protocol_policy, str(count), d.catch_all or "")
    console.print(table)


@domain.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def domain_remove(ctx: Context, name: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Remove {name} with all its addresses and their mail?", abort=True)
    ctx.run(lambda svc: svc.remove_domain(name))
    console.print(f"removed domain {name}")


@domain.command("set")
@click.argument("name")
@click.option("--protocols", type=click.Choice(["any", "imap-only", "pop3-only"]),
              help="Force every address of the domain to one protocol.")
@click.option("--catch-all", help="Deliver mail for unknown addresses to this address ('' to turn off).")
@pass_ctx
def domain_set(ctx: Context, name: str, protocols: str | None, catch_all: str | None) -> None:
    async def work(svc: AccountService) -> Any:
        d = await svc.domain(name)
        if protocols:
            d = await svc.set_domain_policy(name, protocols)
        if catch_all is not None:
            d = await svc.set_catch_all(name, catch_all or None)
        return d
    d = ctx.run(work)
    console.print(f"{d.name}: protocols {d.protocol_policy}, catch-all {d.catch_all or 'off'}")


# -- accounts -------------------------------------------------------------------------------


def _read_password(password: str | None, password_stdin: bool, prompt: bool = True) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if password is not None:
        return password
    if not prompt:
        fail("give --password or --password-stdin")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@main.group()
def account() -> None:
    """Mail addresses (accounts)."""


@account.command("add")
@click.argument("address")
@click.option("--password", help="The password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--quota", default="0", help="Quota, e.g. 500M or 2G (0 = unlimited).")
@pass_ctx
def account_add(ctx: Context, address: str, password: str | None, password_stdin: bool,
                display_name: str, quota: str) -> None:
    secret = _read_password(password, password_stdin)
    quota_bytes = parse_size(quota)
    a = ctx.run(lambda svc: svc.add_account(address, secret, display_name=display_name, quota_bytes=quota_bytes))
    console.print(f"added [bold]{a.address}[/] with INBOX, Sent, Drafts, Trash, Junk and Archive")


@account.command("list")
@click.argument("domain_name", required=False)
@pass_ctx
def account_list(ctx: Context, domain_name: str | None) -> None:
    from .services.access import protocol_access

    async def work(svc: AccountService) -> list[Any]:
        rows = []
        domains = {d.id: d for d in await svc.store.list_domains()}
        for a in await svc.store.list_accounts(svc.clean_domain(domain_name) if domain_name else None):
            used = await svc.store.quota_used(a.id)
            rows.append((a, domains[a.domain_id], used))
        return rows
    table = Table("address", "name", "IMAP", "POP3", "SMTP", "used", "quota")
    for a, d, used in ctx.run(work):
        marks = ["on" if protocol_access(a, d, p).allowed else "[red]off[/]" for p in ("imap", "pop3", "smtp")]
        table.add_row(a.address, a.display_name, *marks, format_size(used),
                      format_size(a.quota_bytes) if a.quota_bytes else "unlimited")
    console.print(table)


@account.command("passwd")
@click.argument("address")
@click.option("--password")
@click.option("--password-stdin", is_flag=True)
@pass_ctx
def account_passwd(ctx: Context, address: str, password: str | None, password_stdin: bool) -> None:
    secret = _read_password(password, password_stdin)
    ctx.run(lambda svc: svc.set_password(address, secret))
    console.print(f"password of {address} changed")


@account.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def account_remove(ctx: Context, address: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Remove {address} and all its mail?", abort=True)
    ctx.run(lambda svc: svc.remove_account(address))
    console.print(f"removed {address}")


ON_OFF = click.Choice(["on", "off"])


@account.command("set")
@click.argument("address")
@click.option("--imap", type=ON_OFF)
@click.option("--pop3", type=ON_OFF)
@click.option("--smtp", type=ON_OFF)
@click.option("--name", "display_name")
@click.option("--quota", help="e.g. 500M, 2G, 0 = unlimited")
@click.option("--forward", "forward_to", help="Forward copies to these addresses (comma-separated, '' = off).")
@click.option("--pop3-policy", type=click.Choice(["delete", "keep", "mark-read", "trash", "archive"]),
              help="What POP3 deletion does.")
@click.option("--pop3-only-new", type=ON_OFF, help="POP3 shows only mail that arrives from now on.")
@pass_ctx
def account_set(ctx: Context, address: str, imap: str | None, pop3: str | None, smtp: str | None,
                display_name: str | None, quota: str | None, forward_to: str | None, pop3_policy: str | None,
                pop3_only_new: str | None) -> None:
    import time

    since: float | None | bool = False
    if pop3_only_new is not None:
        since = time.time() if pop3_only_new == "on" else None
    a = ctx.run(lambda svc: svc.update(
        address, imap=on_off(imap), pop3=on_off(pop3), smtp=on_off(smtp), display_name=display_name,
        quota_bytes=parse_size(quota) if quota is not None else None, forward_to=forward_to,
        pop3_policy=pop3_policy, pop3_since=since))
    console.print(f"{a.address}: IMAP {'on' if a.imap_enabled else 'off'}, POP3 {'on' if a.pop3_enabled else 'off'}, "
                  f"SMTP {'on' if a.smtp_enabled else 'off'}")


# -- aliases --------------------------------------------------------------------------------


@main.group()
def alias() -> None:
    """Aliases: addresses that deliver to other addresses."""


@alias.command("add")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@pass_ctx
def alias_add(ctx: Context, address: str, targets: tuple[str, ...]) -> None:
    ctx.run(lambda svc: svc.add_alias(address, list(targets)))
    console.print(f"{address} -> {', '.join(targets)}")


@alias.command("list")
@click.argument("domain_name", required=False)
@pass_ctx
def alias_list(ctx: Context, domain_name: str | None) -> None:
    table = Table("alias", "delivers to")
    for a in ctx.run(lambda svc: svc.store.list_aliases(svc.clean_domain(domain_name) if domain_name else None)):
        table.add_row(a.address, ", ".join(a.targets))
    console.print(table)


@alias.command("remove")
@click.argument("address")
@pass_ctx
def alias_remove(ctx: Context, address: str) -> None:
    ctx.run(lambda svc: svc.remove_alias(address))
    console.print(f"removed alias {address}")


# -- queue (issue #7) -------------------------------------------------------------------------


def _queue_run(ctx: Context, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(QueueService)``; an unknown id is a one-line error."""
    from .services.queue import QueueError, QueueService

    async def wrapped(svc: AccountService) -> T:
        try:
            return await work(QueueService(svc.store))
        except QueueError as exc:
            raise UserError(str(exc)) from None
    return ctx.run(wrapped)


def _when(ts: float) -> str:
    import time

    if ts <= 0:
        return "now"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@main.group()
def queue() -> None:
    """The outbound queue: mail waiting for remote servers."""


@queue.command("list")
@pass_ctx
def queue_list(ctx: Context) -> None:
    entries = _queue_run(ctx, lambda q: q.list())
    if not entries:
        console.print("the queue is empty")
        return
    table = Table("id", "from", "to (pending)", "size", "queued", "attempts", "next attempt", "last error")
    for e in entries:
        pending = [r.recipient for r in e.pending]
        table.add_row(str(e.id), e.mail_from or "<>", ", ".join(pending[:3]) + (" ..." if len(pending) > 3 else ""),
                      format_size(e.size), _when(e.created_at), str(e.attempts), _when(e.next_attempt),
                      e.last_error[:60])
    console.print(table)


@queue.command("show")
@click.argument("queue_id", type=int)
@pass_ctx
def queue_show(ctx: Context, queue_id: int) -> None:
    entry, head = _queue_run(ctx, lambda q: q.show(queue_id))
    console.print(f"[bold]queue entry {entry.id}[/]  from <{entry.mail_from}>  {format_size(entry.size)}", highlight=False)
    console.print(f"queued {_when(entry.created_at)}, {entry.attempts} attempt(s), next {_when(entry.next_attempt)}",
                  highlight=False)
    table = Table("recipient", "status", "last result")
    for r in entry.recipients:
        table.add_row(r.recipient, r.status, r.last_error)
    console.print(table)
    console.print(head.decode("utf-8", "replace"), highlight=False, markup=False)


@queue.command("retry")
@click.argument("queue_id", type=int, required=False)
@click.option("--all", "all_", is_flag=True, help="Retry every entry now.")
@pass_ctx
def queue_retry(ctx: Context, queue_id: int | None, all_: bool) -> None:
    if queue_id is None and not all_:
        fail("give a queue id or --all")
    count = _queue_run(ctx, lambda q: q.retry(None if all_ else queue_id))
    console.print(f"{count} entr{'y' if count == 1 else 'ies'} will be retried now")


@queue.command("delete")
@click.argument("queue_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def queue_delete(ctx: Context, queue_id: int, yes: bool) -> None:
    if not yes:
        click.confirm(f"Delete queue entry {queue_id} without telling the sender?", abort=True)
    _queue_run(ctx, lambda q: q.delete(queue_id))
    console.print(f"deleted queue entry {queue_id}")


# -- DKIM (issue #7) --------------------------------------------------------------------------


@main.group()
def dkim() -> None:
    """DKIM keys of hosted domains and the DNS records to publish."""


def _dkim_print(records: list[tuple[str, str]], domain: str) -> None:
    table = Table("name", "type", "value", title=f"DKIM records to publish for {domain}")
    for name, value in records:
        table.add_row(name, "TXT", value)
    console.print(table)
    # The plain form is easy to copy into a zone or a DNS provider's form (no table wrapping).
    for name, value in records:
        click.echo(f'{name}. IN TXT "{value}"')


def _dkim_command(ctx: Context, domain: str) -> list[tuple[str, str]]:
    from .services.mailauth import dkim_records

    async def work(svc: AccountService) -> list[tuple[str, str]]:
        d = await svc.domain(domain)  # unknown domain: one-line error
        return await dkim_records(svc.store, d.name, ctx.config)
    return ctx.run(work)


@dkim.command("generate")
@click.argument("domain_name")
@pass_ctx
def dkim_generate(ctx: Context, domain_name: str) -> None:
    """Create the domain's RSA-2048 and Ed25519 keys (if it has none) and show the records."""
    _dkim_print(_dkim_command(ctx, domain_name), domain_name.lower())


@dkim.command("show")
@click.argument("domain_name")
@pass_ctx
def dkim_show(ctx: Context, domain_name: str) -> None:
    """Show the TXT records to publish (keys are created on first use)."""
    _dkim_print(_dkim_command(ctx, domain_name), domain_name.lower())


# -- helpers --------------------------------------------------------------------------------

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3, "GB": 1024**3}


# -- spam filtering on/off (issue 15) ---------------------------------------------------------


@main.command("spam-filter")
@click.argument("target")
@click.argument("state", required=False, type=click.Choice(["on", "off", "inherit"]))
@pass_ctx
def spam_filter(ctx: Context, target: str, state: str | None) -> None:
    """Show or switch spam filtering (rspamd, [filter] rspamd) for a domain or one address.

    TARGET is a domain or an address; STATE on, off, or (for an address) inherit: as its domain."""
    async def work(svc: AccountService) -> str:
        store = svc.store
        name, key = await _spam_target(svc, target)
        if "account_id" in key:
            account_id = key["account_id"]
            if state is not None:
                await store.set_spam_filter(None if state == "inherit" else state == "on", account_id=account_id)
            own = await store.spam_filter_setting(account_id=account_id)
            on = (await store.spam_filter_wanted([account_id]))[account_id]
            return f"{name}: spam filter {'on' if on else 'off'}" + (" (as its domain)" if own is None else "")
        if state == "inherit":
            raise UserError("a domain's spam filter is either on or off")
        if state is not None:
            await store.set_spam_filter(state == "on", **key)
        own = await store.spam_filter_setting(**key)
        return f"{name}: spam filter {'off' if own is False else 'on'}"
    console.print(ctx.run(work))
    if not ctx.config.filter.rspamd:
        console.print("(no spam filter is configured: set [filter] rspamd to use one)")


async def _spam_target(svc: AccountService, target: str) -> tuple[str, dict[str, int]]:
    """A domain or an address named on the command line: (its name, the store's key for it)."""
    if "@" in target:
        account = await svc.store.get_account(svc.clean_address(target))
        if account is None:
            raise UserError(f"no such address: {target}")
        return account.address, {"account_id": account.id}
    domain = await svc.store.get_domain(svc.clean_domain(target))
    if domain is None:
        raise UserError(f"no such domain: {target}")
    return domain.name, {"domain_id": domain.id}


@main.command("spam-threshold")
@click.argument("target")
@click.argument("score", required=False)
@pass_ctx
def spam_threshold(ctx: Context, target: str, score: str | None) -> None:
    """Show or set the score at which mail goes to Junk, for a domain or one address.

    SCORE is a number above 0, or "none": rspamd's action decides (for an address: as its domain)."""
    from .services.spampolicy import clean_threshold

    async def work(svc: AccountService) -> str:
        name, key = await _spam_target(svc, target)
        if score is not None:
            await svc.store.set_spam_threshold(clean_threshold("" if score == "none" else score), **key)
        stored = await svc.store.spam_threshold(**key)
        return f"{name}: Junk threshold " + (f"{stored:g}" if stored is not None else "not set")
    console.print(ctx.run(work))


@main.command("spam-senders")
@click.argument("target")
@click.argument("action", required=False, type=click.Choice(["add", "remove"]))
@click.argument("kind", required=False, type=click.Choice(["allow", "block"]))
@click.argument("entry", required=False)
@pass_ctx
def spam_senders(ctx: Context, target: str, action: str | None, kind: str | None, entry: str | None) -> None:
    """Show, add to or remove from the allow and block lists of senders of a domain or one address.

    ENTRY is an address, a domain, or *.domain (its subdomains):
    postoffice spam-senders example.com add block spammer.example"""
    from .services import spampolicy

    async def work(svc: AccountService) -> str:
        name, key = await _spam_target(svc, target)
        if action is not None:
            if kind is None or not entry:
                raise UserError("say which list (allow or block) and the entry")
            cleaned = spampolicy.clean_entry(entry)
            if action == "add" and not await svc.store.add_sender_entry(kind, cleaned, limit=spampolicy.MAX_ENTRIES,
                                                                        **key):
                raise UserError(f"the {kind} list is full ({spampolicy.MAX_ENTRIES} entries)")
            if action == "remove" and not await svc.store.remove_sender_entry(kind, cleaned, **key):
                raise UserError(f"{cleaned} is not on the {kind} list of {name}")
        lists = await svc.store.sender_lists(**key)
        return "\n".join(f"{name} {k}: {', '.join(lists[k]) or '(none)'}" for k in spampolicy.LISTS)
    console.print(ctx.run(work))


# -- app passwords (issue 16) -----------------------------------------------------------------


@main.group("app-password")
def app_password() -> None:
    """Per-device passwords of an address, scoped to protocols (the main password keeps working)."""


@app_password.command("add")
@click.argument("address")
@click.option("--name", required=True, help="What it is for, e.g. 'Phone'.")
@click.option("--protocols", default="imap,smtp", show_default=True, help="Comma-separated: imap, pop3, smtp.")
@click.option("--expires-days", type=float, help="Stop working after this many days.")
@pass_ctx
def app_password_add(ctx: Context, address: str, name: str, protocols: str, expires_days: float | None) -> None:
    import time

    from .services.app_passwords import AppPasswords

    expires = time.time() + expires_days * 86400 if expires_days else None
    created = ctx.run(lambda svc: AppPasswords(svc.store).create(address, name, protocols.split(","), expires))
    app = created.app_password
    console.print(f"app password {app.id} [bold]{app.name}[/] for {address} ({', '.join(app.protocols)}): "
                  f"[bold]{created.password}[/]  (shown only this once)")


@app_password.command("list")
@click.argument("address")
@pass_ctx
def app_password_list(ctx: Context, address: str) -> None:
    import datetime

    from .services.app_passwords import AppPasswords

    def when(t: float | None) -> str:
        return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "-"
    table = Table("id", "name", "protocols", "created", "expires", "last used")
    for a in ctx.run(lambda svc: AppPasswords(svc.store).list(address)):
        table.add_row(str(a.id), a.name, " ".join(a.protocols), when(a.created_at),
                      ("[red]expired[/] " if a.expired() else "") + when(a.expires_at), when(a.last_used_at))
    console.print(table)


@app_password.command("revoke")
@click.argument("address")
@click.argument("app_id", type=int)
@pass_ctx
def app_password_revoke(ctx: Context, address: str, app_id: int) -> None:
    from .services.app_passwords import AppPasswords

    ctx.run(lambda svc: AppPasswords(svc.store).revoke(address, app_id))
    console.print(f"app password {app_id} of {address} revoked (its sessions end)")


def parse_size(text: str) -> int:
    value = text.strip().upper()
    number = value.rstrip("KMGB")
    unit = value[len(number):]
    if not number.isdigit() or unit not in _UNITS:
        fail(f"{text!r} is not a size (examples: 0, 500M, 2G)")
    return int(number) * _UNITS[unit]


def format_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


if __name__ == "__main__":  # pragma: no cover
    main()
