"""ManageSieve (RFC 5804) on 4190: the asyncio glue around protocols/managesieve.

Logins follow the same rules as IMAP, POP3 and SMTP: the shared plaintext-login rule
(``password_login_allowed``: a password only under TLS unless the administrator allows it),
SASL PLAIN and LOGIN from protocols/sasl.py, the authzid check, throttling and failure delay in
``Authenticator``. Which protocol switch governs it: **IMAP**. ManageSieve manages filters for
the mailboxes IMAP shows (Thunderbird and Roundcube use it beside IMAP), so an address with
IMAP switched off (or a domain forced to POP3 only) is refused here with the same reason, and
turning IMAP off ends its open ManageSieve sessions too (they are registered as IMAP sessions,
named "ManageSieve" in the connected-devices view).

Scripts are checked when uploaded (PUTSCRIPT and CHECKSCRIPT parse them, RFC 5804 §2.6), and
a change clears the delivery's script cache through the store's change event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..protocols.managesieve import (
    NEED_DATA,
    Authenticate,
    Close,
    ManageSieveConnection,
    ManageSieveSession,
    Output,
    Policy,
    ScriptOp,
    StartTls,
)
from ..services.auth import AuthStatus, authzid_permitted, password_login_allowed
from ..services.sessions import OpenSession
from ..sieve import EXTENSIONS, SieveSyntaxError, parse
from ..sieve.grammar import MAX_SCRIPT_BYTES
from ..sieve.interpreter import MAX_REDIRECTS
from ..store import Account, AlreadyExists, NotFound, StoreError
from ..store.sieve import ScriptActive
from .listener import Connection

log = logging.getLogger(__name__)

MAX_SCRIPTS = 20
MAX_NAME = 128
TIMEOUT = 600.0


def _valid_name(name: str) -> bool:
    # RFC 5804 §1.6: no control characters, no CR/LF, not empty; we also cap the length.
    return 0 < len(name) <= MAX_NAME and not any(ord(c) < 0x20 or ord(c) == 0x7F or 0x80 <= ord(c) <= 0x9F
                                                  for c in name)


class ManageSieveServer:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def handle(self, conn: Connection) -> None:
        await ManageSieveHandler(self.app, conn).run()


class ManageSieveHandler:
    def __init__(self, app: Any, conn: Connection) -> None:
        self.app = app
        self.conn = conn
        policy = Policy(
            implementation="postoffice",
            sieve_extensions=EXTENSIONS,
            tls_available=app.tls is not None,
            allow_plaintext_auth=password_login_allowed(app.config.security, tls=False, loopback=conn.is_loopback),
            max_redirects=MAX_REDIRECTS,
        )
        self.pconn = ManageSieveConnection()
        self.session = ManageSieveSession(policy, tls_active=conn.tls)
        self.account: Account | None = None
        self.registered: OpenSession | None = None
        self.done = False

    async def run(self) -> None:
        try:
            await self.conn.send(self.session.greeting())
            while not self.done:
                event = self.pconn.next_event()
                if event is NEED_DATA:
                    try:
                        data = await self.conn.read(TIMEOUT)
                    except TimeoutError:
                        await self.conn.send(b'BYE "Idle for too long"\r\n')
                        break
                    self.pconn.receive_data(data)
                    continue
                out = self.session.handle(event)  # type: ignore[arg-type]
                await self._perform(out)
                self.pconn.expect_sasl_response(self.session.in_sasl)
        finally:
            if self.registered is not None:
                self.app.sessions.remove(self.registered)
            await self.conn.close()

    async def _perform(self, out: Output) -> None:
        while True:
            if out.data:
                await self.conn.send(out.data)
            action = out.action
            if action is None:
                return
            if isinstance(action, Close):
                self.done = True
                return
            if isinstance(action, StartTls):
                self.pconn.discard_buffer()
                ok = self.app.tls is not None and await self.conn.start_tls(self.app.tls_context("managesieve"))
                out = self.session.tls_done(ok)
            elif isinstance(action, Authenticate):
                out = await self._authenticate(action)
            elif isinstance(action, ScriptOp):
                out = await self._script(action)
            else:  # pragma: no cover - every action is handled above
                return

    async def _authenticate(self, action: Authenticate) -> Output:
        auth = self.app.auth
        if not authzid_permitted(action.authzid, action.username):
            await auth.failed_attempt(self.conn.remote_ip, action.username)
            return self.session.auth_done(False, reason="Acting as another user is not supported")
        result = await auth.authenticate(action.username, action.password, self.conn.remote_ip, "imap")
        if result.status is AuthStatus.THROTTLED:
            return self.session.auth_done(False, reason="Too many failed logins, try again later", temporary=True)
        if result.status is AuthStatus.REFUSED:
            # The same reason IMAP gives (ManageSieve is governed by the IMAP switch).
            return self.session.auth_done(False, reason=result.reason)
        if not result.ok or result.account is None:
            return self.session.auth_done(False, reason="Authentication failed")
        self.account = result.account
        self.registered = self.app.sessions.add(OpenSession(
            "imap", result.account.id, result.account.address, self.conn.remote_ip, self.conn.tls,
            self.conn.local_port, client_id="ManageSieve", terminate=self._terminate,
            app_password=result.app_password.name if result.app_password else "",
            app_password_id=result.app_password.id if result.app_password else None))
        return self.session.auth_done(True, user=result.account.address)

    def _terminate(self, reason: str) -> None:
        self.conn.write(b'BYE "' + reason.replace("\\", "").replace('"', "'").encode("utf-8", "replace") + b'"\r\n')
        self.done = True
        asyncio.ensure_future(self.conn.close())

    async def _script(self, op: ScriptOp) -> Output:
        assert self.account is not None
        store = self.app.store
        account_id = self.account.id
        args = op.args
        s = self.session
        try:
            if op.op == "listscripts":
                scripts = await store.list_sieve_scripts(account_id)
                return s.script_done(op, [(x.name, x.active) for x in scripts])
            if op.op in ("putscript", "havespace", "getscript", "deletescript", "renamescript") and \
                    not all(_valid_name(str(a)) for a in (args[:1] if op.op != "renamescript" else args)):
                return s.script_done(op, error="Invalid script name")
            if op.op == "havespace":
                # §2.5: QUOTA/MAXSIZE when the script could not be stored.
                if int(args[1]) > MAX_SCRIPT_BYTES:
                    return s.script_done(op, error="Script too large", code="QUOTA/MAXSIZE")
                existing = await store.get_sieve_script(account_id, str(args[0]))
                if existing is None and len(await store.list_sieve_scripts(account_id)) >= MAX_SCRIPTS:
                    return s.script_done(op, error="Too many scripts", code="QUOTA/MAXSCRIPTS")
                return s.script_done(op)
            if op.op in ("putscript", "checkscript"):
                content = str(args[-1])
                if len(content.encode("utf-8")) > MAX_SCRIPT_BYTES:
                    return s.script_done(op, error="Script too large", code="QUOTA/MAXSIZE")
                try:
                    await asyncio.to_thread(parse, content)
                except SieveSyntaxError as exc:
                    return s.script_done(op, error=str(exc))
                if op.op == "checkscript":
                    return s.script_done(op)
                try:
                    await store.put_sieve_script(account_id, str(args[0]), content, max_scripts=MAX_SCRIPTS)
                except StoreError as exc:
                    return s.script_done(op, error=str(exc), code="QUOTA/MAXSCRIPTS")
                return s.script_done(op)
            if op.op == "getscript":
                script = await store.get_sieve_script(account_id, str(args[0]))
                if script is None:
                    return s.script_done(op, error="There is no script by that name", code="NONEXISTENT")
                return s.script_done(op, script.content)
            if op.op == "deletescript":
                await store.delete_sieve_script(account_id, str(args[0]))
                return s.script_done(op)
            if op.op == "renamescript":
                await store.rename_sieve_script(account_id, str(args[0]), str(args[1]))
                return s.script_done(op)
            if op.op == "setactive":
                name = str(args[0])
                await store.activate_sieve_script(account_id, name or None)
                return s.script_done(op)
        except NotFound:
            return s.script_done(op, error="There is no script by that name", code="NONEXISTENT")
        except AlreadyExists:
            return s.script_done(op, error="A script by that name already exists", code="ALREADYEXISTS")
        except ScriptActive:
            return s.script_done(op, error="The active script cannot be deleted", code="ACTIVE")
        return s.script_done(op, error="Unknown operation")


__all__ = ["ManageSieveServer"]
