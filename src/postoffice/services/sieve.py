"""Sieve at local delivery: which mailboxes a message goes to, and what else the script asks.

:meth:`SieveFilter.plan` runs an address's active script (parsed once and cached; parse and
run happen in a worker thread, never on the event loop) and turns its actions into delivery
targets; services/delivery.py stores them in its one transaction and then calls
:meth:`SieveFilter.follow_up` for what goes out afterwards: vacation replies (RFC 5230, at
most one per sender and handle within ``:days``, recorded in the store), reject reports
(RFC 5429) and the owner's notice when a script failed.

A script that does not parse or fails while running never loses the message: RFC 5228
§2.10.6 asks for the implicit keep, so the message goes to INBOX, and a notice telling the
owner why goes to INBOX too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from datetime import datetime, timezone

from ..mail.dsn import DSNRecipient, build_report, is_bounce
from ..sieve import (
    Discard,
    FileInto,
    Keep,
    MessageFacts,
    Redirect,
    Reject,
    Script,
    SieveRuntimeError,
    SieveSyntaxError,
    Vacation,
    evaluate,
    parse,
)
from ..sieve.replies import error_notice, vacation_reply
from ..store import Store, flags_to_bits
from ..store.spool import MessageSource

log = logging.getLogger(__name__)

#: How long an address's active script is reused before the store is asked again (changes
#: through ManageSieve or the panel in this process clear it at once).
SCRIPT_CACHE_SECONDS = 2.0
Send = Callable[[str, list[str], Any], Awaitable[None]]  # raw: bytes or a MessageSource
_ATOM_SPECIALS = re.compile(r'[\x00-\x20\x7f(){%*"\\\]]')


@dataclass
class Plan:
    """What one account's copy of the message becomes."""

    account_id: int
    address: str  # the envelope recipient this copy was for
    account_address: str = ""
    targets: list[tuple[str, int, str]] = field(default_factory=list)  # (mailbox, flag bits, keywords)
    redirects: list[str] = field(default_factory=list)
    vacation: Vacation | None = None
    reject: Reject | None = None
    error: str | None = None
    subject: str | None = None


def _compile(content: str) -> Script:
    return parse(content)


def _run(script: Script | str, facts: MessageFacts) -> list[object]:
    return evaluate(script if isinstance(script, Script) else parse(script), facts).actions


class SieveFilter:
    def __init__(self, store: Store, hostname: str) -> None:
        self.store = store
        self.hostname = hostname
        self._scripts: dict[int, tuple[float, tuple[float, str] | None]] = {}
        self._compiled: dict[tuple[int, str], Script | SieveSyntaxError] = {}

    def forget(self, account_id: int | None = None) -> None:
        """A script changed: ask the store again on the next delivery."""
        if account_id is None:
            self._scripts.clear()
        else:
            self._scripts.pop(account_id, None)

    async def _active(self, account_id: int) -> tuple[float, str] | None:
        now = time.monotonic()
        hit = self._scripts.get(account_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        script = await self.store.active_sieve_script(account_id)
        value = (script.updated_at, script.content) if script is not None else None
        if len(self._scripts) > 10000:
            self._scripts.clear()
        self._scripts[account_id] = (now + SCRIPT_CACHE_SECONDS, value)
        return value

    async def _script(self, account_id: int, content: str) -> Script:
        key = (account_id, hashlib.sha256(content.encode("utf-8", "replace")).hexdigest())
        hit = self._compiled.get(key)
        if hit is None:
            try:
                hit = await asyncio.to_thread(_compile, content)
            except SieveSyntaxError as exc:
                hit = exc
            if len(self._compiled) > 1000:
                self._compiled.clear()
            self._compiled[key] = hit
        if isinstance(hit, SieveSyntaxError):
            raise hit
        return hit

    async def plan(self, account_id: int, *, envelope_from: str, envelope_to: str,
                   message: bytes | MessageSource, default_mailbox: str = "INBOX") -> Plan:
        plan = Plan(account_id, envelope_to)
        active = await self._active(account_id)
        if active is None:
            plan.targets.append((default_mailbox, 0, ""))
            return plan
        if isinstance(message, MessageSource):  # a script may test the body: the whole message
            message = message.read() if message.in_memory else await asyncio.to_thread(message.read)
        account = await self.store.get_account_by_id(account_id)
        plan.account_address = account.address if account is not None else envelope_to
        facts = MessageFacts.from_bytes(message, envelope_from=envelope_from, envelope_to=envelope_to,
                                        user_addresses=(plan.account_address,))
        plan.subject = (facts.header("subject") or [None])[0]
        try:
            script = await self._script(account_id, active[1])
            actions = await asyncio.to_thread(_run, script, facts)
        except (SieveSyntaxError, SieveRuntimeError) as exc:
            plan.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a filter bug must never lose mail
            log.exception("sieve script of account %s crashed", account_id)
            plan.error = f"internal error: {type(exc).__name__}"
        if plan.error is not None:
            log.info("sieve script of account %s failed: %s (message kept in INBOX)", account_id, plan.error)
            plan.targets = [("INBOX", 0, "")]
            return plan
        seen: set[str] = set()
        for action in actions:
            if isinstance(action, (Keep, FileInto)):
                box = default_mailbox if isinstance(action, Keep) else action.mailbox
                if box.upper() == "INBOX":
                    box = "INBOX"
                if box in seen:
                    continue  # RFC 5228 §2.10.3: the same mailbox gets one copy
                seen.add(box)
                bits, keywords = flags_to_bits(action.flags)
                plan.targets.append((box, bits, " ".join(k for k in keywords if not _ATOM_SPECIALS.search(k))))
            elif isinstance(action, Redirect):
                plan.redirects.append(action.address)
            elif isinstance(action, Reject):
                plan.reject = action
            elif isinstance(action, Vacation):
                plan.vacation = action
            elif isinstance(action, Discard):
                pass
        return plan

    async def follow_up(self, plan: Plan, *, envelope_from: str, message: bytes | MessageSource,
                        send: Send) -> None:
        """What goes out after the copies are stored, through ``send(mail_from, recipients,
        raw)`` (local recipients are delivered, others queued). Best effort: a failure is
        logged; except that a redirected message that cannot be sent is kept in INBOX."""
        for address in plan.redirects:
            # RFC 5228 §4.2: the message goes on unchanged, with the original envelope sender.
            try:
                await send(envelope_from, [address], message)
            except Exception:  # noqa: BLE001
                log.exception("sieve redirect to %s failed; message kept in INBOX", address)
                if not plan.targets:
                    await self.store.deliver([(plan.account_id, "INBOX")], message, enforce_quota=False)
        try:
            if plan.error is not None:
                notice = error_notice(to_address=plan.account_address, hostname=self.hostname, reason=plan.error,
                                      subject=plan.subject)
                await self.store.deliver([(plan.account_id, "INBOX")], notice, enforce_quota=False)
            if plan.vacation is not None:
                await self._vacation(plan, plan.vacation, send)
            if plan.reject is not None and not is_bounce(envelope_from):
                # RFC 5429 §2.1: after the SMTP transaction, the refusal goes back as a report
                # to the envelope sender (a DSN, with the script's reason).
                now = datetime.now(timezone.utc)
                report = build_report(
                    "failure", hostname=self.hostname, original_sender=envelope_from,
                    recipients=[DSNRecipient(plan.address, "failed", "5.7.1",
                                             diagnostic=f"smtp; 550 5.7.1 {plan.reject.reason}"[:900],
                                             last_attempt=now)],
                    original_message=message.header_block() if isinstance(message, MessageSource) else message,
                    arrival_date=now, now=now)
                await send("", [envelope_from], report)
        except Exception:  # noqa: BLE001
            log.exception("sieve follow-up for account %s failed", plan.account_id)

    async def _vacation(self, plan: Plan, action: Vacation, send: Send) -> None:
        sender = action.recipient.lower()
        if not await self.store.vacation_reply_due(plan.account_id, sender, action.handle, action.days):
            log.info("vacation: %s already answered within %d days", sender, action.days)
            return
        reply = vacation_reply(action, from_address=plan.account_address, hostname=self.hostname)
        # RFC 3834 §3.3 / RFC 5230 §5: the reply goes out with the null reverse-path, so no
        # bounce or further auto-reply comes back for it.
        await send("", [action.recipient], reply)
        log.info("vacation: reply queued for %s (account %s)", action.recipient, plan.account_id)


__all__ = ["Plan", "SieveFilter"]
