"""The queue runner: delivers queued mail to remote servers, retries, bounces.

One :class:`QueueWorker` runs in each ``postoffice serve`` node (in its worker 0). It polls the
queue (every ``poll_interval`` seconds, or at once after :meth:`QueueWorker.wake`), *claims* due
entries in one database write (``queue.claimed_until``, a lease: an entry is never processed
twice at once, even by the runners of several nodes on one PostgreSQL) and delivers up to
``[outbound] concurrency`` entries at the same time. While an attempt runs its lease is renewed
every ``RENEW_INTERVAL``; the claims of a node that was killed lapse after ``CLAIM_LEASE``, and
another node's runner takes the entries then. A runner that is the only one (``sole_runner``:
SQLite, one node) drops every stale claim when it starts instead.

For each entry the pending recipients are grouped by domain (or all sent to the smart host) and
each group is routed: MX look-up with A/AAAA fallback (RFC 5321 5.1, :mod:`.mx`), MTA-STS
(RFC 8461, :mod:`.mtasts`) restricting the hosts and requiring verified TLS when enforced, then
each host address in preference order (a host that cannot be reached or refuses the session
passes the recipients on to the next one). STARTTLS is used whenever offered.

The invariants that keep mail from being lost or duplicated:

* recipients the remote accepted are marked ``delivered`` in the database right after that SMTP
  transaction, before anything else happens, and are never sent again;
* the bounce (RFC 3464 DSN, to the sender's INBOX when the sender is ours, else queued with the
  null sender) is written in the same commit that marks the recipients ``failed``; mail from the
  null sender or MAILER-DAEMON never gets one (no bounce to a bounce);
* temporary failures are retried with exponential backoff (``retry_interval`` doubling up to
  ``retry_max_interval``) for ``retry_for`` seconds, with one delay notice after
  ``delay_notice_after``; then they bounce with status 4.4.7;
* DSN (RFC 3461): NOTIFY decides which reports a recipient gets (none for NEVER; failures and
  delays when absent); RET=FULL returns the whole message in a bounce; ENVID and ORCPT show up
  as Original-Envelope-Id / Original-Recipient. A remote that advertises DSN gets the
  parameters passed on (and reports success itself); one that does not earns a "relayed"
  report for NOTIFY=SUCCESS recipients (RFC 3461 §5.2.2);
* anything unexpected (a missing body file, a bug) leaves the entry queued for a later attempt.

Time comes from ``clock`` so tests can jump days ahead instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..mail.address import InvalidAddress, normalize_address
from ..config import Config, HostPort
from ..dns import DNSError, Resolver, is_ip
from ..mail.dsn import DSNRecipient, build_delay_notice, build_dsn, build_success_notice, is_bounce
from .client import RecipientResult, SmarthostAuth, TLSPolicy, deliver_to_host
from .mtasts import MTASTS
from .mx import MXError, delivery_hosts

__all__ = ["QueueWorker", "Outcome", "backoff"]

log = logging.getLogger(__name__)

CLAIM_LEASE = 300.0  # seconds a claim holds unless renewed: how long a killed node's entries wait
RENEW_INTERVAL = 60.0  # seconds between renewals of the claims of attempts in flight
MAX_RCPTS_PER_TRANSACTION = 100  # RFC 5321 4.5.3.1.8: servers must accept at least 100
SMTP_TIMEOUT = 60.0
STOP_GRACE = 5.0


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """Delay before retry number ``attempt`` (1-based): initial, 2x, 4x, ... capped at maximum."""
    return float(min(maximum, initial * (2 ** max(0, min(attempt - 1, 30)))))


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt for one recipient."""

    recipient_id: int
    kind: str  # "delivered", "permanent" or "temporary"
    status: str  # RFC 3463
    diagnostic: str  # RFC 3464 Diagnostic-Code value ("smtp; 550 5.1.1 ...")
    remote_mta: str | None = None
    #: delivered to a next hop that did not advertise DSN (RFC 3461 §5.2.2: action "relayed")
    relayed: bool = False

    @property
    def text(self) -> str:
        where = f" ({self.remote_mta})" if self.remote_mta else ""
        return f"{self.status} {self.diagnostic}{where}"[:1000]


class QueueWorker:
    def __init__(
        self,
        store: Any,
        config: Config,
        *,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
        mtasts: MTASTS | None = None,
        tls_context: ssl.SSLContext | None = None,
        poll_interval: float = 1.0,
        smtp_timeout: float = SMTP_TIMEOUT,
        sole_runner: bool = True,
    ) -> None:
        from ..services.mailauth import make_resolver

        self.store = store
        self.config = config
        self.out = config.outbound
        self.resolver = resolver or make_resolver(config, timeout=None if config.outbound.dns else 5.0)
        self.clock = clock
        self.mtasts = mtasts if mtasts is not None else (
            MTASTS(self.resolver, clock=clock) if self.out.mta_sts else None)
        self.tls_context = tls_context
        self.poll_interval = poll_interval
        self.smtp_timeout = smtp_timeout
        self.hostname = config.hostname
        self.sole_runner = sole_runner
        self._claims: dict[int, float] = {}  # queue id -> the claim's token (its claimed_until)
        self._semaphore = asyncio.Semaphore(self.out.concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._sending: set[asyncio.Task[Any]] = set()  # shielded SMTP transactions (see _transaction)
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.ensure_future(self._run())

    def wake(self) -> None:
        """Look at the queue now (call after enqueueing)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; give deliveries in flight a moment, then cancel and release them."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=STOP_GRACE)
        claims = dict(self._claims)
        for task in self._inflight.values():
            task.cancel()
        for task in list(self._inflight.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._sending:
            # Transactions are shielded from the cancel: let them hear the remote's answer and
            # record it now, while the store is still open (a remote that accepted after the
            # loop went away would get the message again after the restart).
            await asyncio.wait(list(self._sending), timeout=self.smtp_timeout)
        if claims:
            try:
                await self.store.queue_release(claims)
            except Exception:  # noqa: BLE001 - the claims lapse on their own
                log.exception("could not release queue claims %s", list(claims))

    async def _run(self) -> None:
        if self.sole_runner:
            try:
                # The only runner owns the whole queue: claims left by a crash are stale.
                await self.store.queue_release(None)
            except Exception:  # noqa: BLE001
                log.exception("could not release stale queue claims")
        renewer = asyncio.ensure_future(self._renew_claims())
        try:
            await self._loop()
        finally:
            renewer.cancel()

    async def _renew_claims(self) -> None:
        """Keep the leases of attempts in flight from lapsing (a slow remote, a big message)."""
        while True:
            await asyncio.sleep(RENEW_INTERVAL)
            held = dict(self._claims)
            if not held:
                continue
            try:
                renewed = await self.store.queue_renew(held, self.clock() + CLAIM_LEASE)
            except Exception:  # noqa: BLE001 - tried again next interval; the lease outlasts a few
                log.exception("could not renew queue claims")
                continue
            for queue_id in held:
                if queue_id not in renewed and queue_id in self._claims:
                    log.error("queue %s: the claim lapsed while its attempt was running (another node "
                              "may deliver it as well)", queue_id)
            for queue_id, token in renewed.items():
                if queue_id in self._claims:
                    self._claims[queue_id] = token

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self._claim_and_start()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the runner alive
                log.exception("queue runner iteration failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def _claim_and_start(self) -> None:
        free = self.out.concurrency - len(self._inflight)
        if free <= 0:
            return
        entries = await self.store.queue_claim(self.clock(), CLAIM_LEASE, free)
        for entry in entries:
            if entry["id"] in self._inflight:
                # Its attempt outlived the claim's lease (a slow remote): the claim was renewed
                # just now, but a second, parallel attempt would send the message twice.
                self._claims[entry["id"]] = entry["claimed_until"]
                continue
            task = asyncio.ensure_future(self._guarded(entry))
            self._inflight[entry["id"]] = task
            self._claims[entry["id"]] = entry["claimed_until"]
            task.add_done_callback(lambda _t, qid=entry["id"]: self._done(qid))

    def _done(self, queue_id: int) -> None:
        self._inflight.pop(queue_id, None)
        self._claims.pop(queue_id, None)
        self._wake.set()  # a slot is free

    async def run_once(self) -> int:
        """Claim every due entry and deliver it now; return how many were processed (tests)."""
        entries = await self.store.queue_claim(self.clock(), CLAIM_LEASE, 10_000)
        await asyncio.gather(*(self._guarded(e) for e in entries))
        return len(entries)

    async def _guarded(self, entry: dict[str, Any]) -> None:
        try:
            await self.process(entry)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the entry stays queued and is retried later
            log.exception("queue %s: attempt failed unexpectedly; will retry", entry["id"])
            try:
                attempts = int(entry.get("attempts") or 0) + 1
                await self.store.queue_finish(
                    entry["id"], next_attempt=self.clock() + self._backoff(attempts))
            except Exception:  # noqa: BLE001
                log.exception("queue %s: could not reschedule", entry["id"])

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.out.retry_interval, max(self.out.retry_interval, self.out.retry_max_interval))

    # -- one entry ----------------------------------------------------------------------------

    async def process(self, entry: dict[str, Any]) -> None:
        queue_id = entry["id"]
        pending = [r for r in entry["recipients"] if r["status"] == "pending"]
        attempt = int(entry["attempts"]) + 1
        if not pending:
            await self.store.queue_finish(queue_id, next_attempt=self.clock())
            return
        raw = await self.store.read_blob(entry["blob_id"])
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in pending:
            groups.setdefault("" if self.out.smarthost else r["domain"], []).append(r)
        log.info("queue %s: attempt %d from <%s> to %d recipient(s) in %d group(s)",
                 queue_id, attempt, entry["mail_from"], len(pending), len(groups))
        dsn = (entry.get("envid"), entry.get("ret"))
        results = await asyncio.gather(*(
            self._deliver_group(queue_id, entry["mail_from"], domain, rcpts, raw, dsn)
            for domain, rcpts in groups.items()))
        outcomes = [o for group in results for o in group]
        await self._settle(entry, raw, outcomes, attempt)

    async def _settle(self, entry: dict[str, Any], raw: bytes, outcomes: list[Outcome], attempt: int) -> None:
        queue_id = entry["id"]
        now = self.clock()
        created = float(entry["created_at"])
        expired = now >= created + self.out.retry_for
        by_id = {r["id"]: r for r in entry["recipients"]}
        failed = [o for o in outcomes if o.kind == "permanent"]
        relayed = [o for o in outcomes if o.kind == "delivered" and o.relayed
                   and _notify(by_id[o.recipient_id], "SUCCESS")]
        temporary = [o for o in outcomes if o.kind == "temporary"]
        if expired and temporary:
            failed += [Outcome(o.recipient_id, "permanent", "4.4.7",
                               f"{o.diagnostic} (gave up after {int((now - created) // 3600)} hours)",
                               o.remote_mta) for o in temporary]
            temporary = []
        sender = entry["mail_from"]
        notice: tuple[int | None, str, bytes] | None = None
        delay_notified = False
        arrival = datetime.fromtimestamp(created, timezone.utc)
        last = datetime.fromtimestamp(now, timezone.utc)

        def dsn_rcpt(o: Outcome, action: str, until: datetime | None = None) -> DSNRecipient:
            r = by_id[o.recipient_id]
            return DSNRecipient(r["recipient"], action, o.status, remote_mta=o.remote_mta,  # type: ignore[arg-type]
                                diagnostic=o.diagnostic, original_recipient=r.get("orcpt"),
                                last_attempt=last, will_retry_until=until)

        wants_failure = [o for o in failed if _notify(by_id[o.recipient_id], "FAILURE")]
        if wants_failure and not is_bounce(sender):
            # Recipients relayed in the same attempt are reported in the same DSN (RFC 3464 allows
            # mixed actions), so one commit carries one notice.
            dsn = build_dsn(hostname=self.hostname, original_sender=sender,
                            recipients=[dsn_rcpt(o, "failed") for o in wants_failure]
                            + [dsn_rcpt(o, "relayed") for o in relayed],
                            original_message=raw, arrival_date=arrival, envelope_id=entry.get("envid"),
                            queue_id=str(queue_id), now=last, ret=entry.get("ret"))
            notice = (await self._sender_account(entry), sender, dsn)
            log.info("queue %s: bouncing %d recipient(s) to <%s>", queue_id, len(wants_failure), sender)
        elif relayed and not is_bounce(sender):
            notice = (await self._sender_account(entry), sender, build_success_notice(
                hostname=self.hostname, original_sender=sender,
                recipients=[dsn_rcpt(o, "relayed") for o in relayed],
                original_message=raw, arrival_date=arrival, envelope_id=entry.get("envid"),
                queue_id=str(queue_id), now=last))
            log.info("queue %s: relayed notice for %d recipient(s) to <%s>", queue_id, len(relayed), sender)
        if failed and not wants_failure:
            log.info("queue %s: %d recipient(s) failed; no bounce (sender <%s>)", queue_id, len(failed), sender)
        if (temporary and not entry["delay_notified"] and now - created >= self.out.delay_notice_after
                and not is_bounce(sender)):
            delay_notified = True
            wants_delay = [o for o in temporary if _notify(by_id[o.recipient_id], "DELAY")]
            if wants_delay and notice is None:
                until = datetime.fromtimestamp(created + self.out.retry_for, timezone.utc)
                notice = (await self._sender_account(entry), sender, build_delay_notice(
                    hostname=self.hostname, original_sender=sender,
                    recipients=[dsn_rcpt(o, "delayed", until) for o in wants_delay],
                    original_message=raw, arrival_date=arrival, envelope_id=entry.get("envid"),
                    queue_id=str(queue_id), now=last))
                log.info("queue %s: delay notice to <%s>", queue_id, sender)
            elif wants_delay:
                delay_notified = False  # a bounce goes out now; the delay notice comes next time
        next_attempt = now + self._backoff(attempt)
        done = await self.store.queue_finish(
            queue_id, failed=[(o.recipient_id, o.text) for o in failed],
            deferred=[(o.recipient_id, o.text) for o in temporary], next_attempt=next_attempt,
            notice=notice, delay_notified=delay_notified)
        if done:
            log.info("queue %s: done", queue_id)
        else:
            log.info("queue %s: %d recipient(s) deferred, next attempt in %ds", queue_id,
                     len(temporary), int(next_attempt - now))

    async def _sender_account(self, entry: dict[str, Any]) -> int | None:
        """The local account a notice goes to, or None (then it is queued to the address)."""
        if entry.get("account_id") is not None:
            return int(entry["account_id"])
        try:
            address = normalize_address(entry["mail_from"])
        except InvalidAddress:
            return None
        account = await self.store.get_account(address)
        return None if account is None else int(account.id)

    # -- one domain ---------------------------------------------------------------------------

    async def _deliver_group(self, queue_id: int, mail_from: str, domain: str,
                             rcpts: list[dict[str, Any]], raw: bytes,
                             dsn: tuple[str | None, str | None] = (None, None)) -> list[Outcome]:
        async with self._semaphore:
            try:
                return await self._route_and_send(queue_id, mail_from, domain, rcpts, raw, dsn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug must not lose or bounce mail
                log.exception("queue %s: delivery to %s failed unexpectedly", queue_id, domain or "smarthost")
                return [Outcome(r["id"], "temporary", "4.3.0", f"X-Postoffice; internal error: {exc}")
                        for r in rcpts]

    async def _route_and_send(self, queue_id: int, mail_from: str, domain: str,
                              rcpts: list[dict[str, Any]], raw: bytes,
                              dsn: tuple[str | None, str | None] = (None, None)) -> list[Outcome]:
        # Each target: (host to connect to, port, name for TLS/logs, TLS policy, smart host auth).
        targets: list[tuple[str, int, str, TLSPolicy, SmarthostAuth | None]] = []
        if self.out.smarthost:
            hp = HostPort.parse(self.out.smarthost, "outbound.smarthost")
            auth = None
            if self.out.smarthost_username:
                auth = SmarthostAuth(self.out.smarthost_username, self.out.smarthost_password,
                                     implicit_tls=self.out.smarthost_tls == "tls",
                                     require_tls=self.out.smarthost_tls != "none")
            targets.append((hp.host, hp.port, hp.host, TLSPolicy.OPPORTUNISTIC, auth))
        else:
            try:
                hosts = await delivery_hosts(self.resolver, domain, local_names=[self.hostname])
            except MXError as exc:
                kind = "permanent" if exc.permanent else "temporary"
                log.info("queue %s: %s: routing failed (%s): %s", queue_id, domain, kind, exc.reason)
                return [Outcome(r["id"], kind, exc.status, f"X-Postoffice; {exc.reason}") for r in rcpts]
            policy_kind = TLSPolicy.OPPORTUNISTIC
            if self.mtasts is not None and not domain.startswith("["):
                policy = await self.mtasts.get_policy(domain)
                if policy is not None and policy.enforce:
                    allowed = MTASTS.filter_hosts(policy, hosts)
                    if not allowed:
                        log.info("queue %s: %s: no MX matches the MTA-STS policy", queue_id, domain)
                        return [Outcome(r["id"], "temporary", "4.7.5",
                                        "X-Postoffice; no MX host matches the MTA-STS policy") for r in rcpts]
                    hosts, policy_kind = allowed, TLSPolicy.VERIFY
            for host in hosts:
                try:
                    addresses = [host] if is_ip(host) else await self.resolver.addresses(host)
                except DNSError as exc:
                    log.info("queue %s: %s: MX %s has no address: %s", queue_id, domain, host, exc)
                    continue
                for ip in addresses:
                    targets.append((ip, self.out.smtp_port, host, policy_kind, None))
        if not targets:
            return [Outcome(r["id"], "temporary", "4.4.4",
                            f"X-Postoffice; no MX host of {domain} has an address") for r in rcpts]

        remaining = list(rcpts)
        outcomes: dict[int, Outcome] = {}
        for connect_to, port, name, policy_kind, auth in targets:
            if not remaining:
                break
            host_failures: list[dict[str, Any]] = []
            for start in range(0, len(remaining), MAX_RCPTS_PER_TRANSACTION):
                chunk = remaining[start:start + MAX_RCPTS_PER_TRANSACTION]
                results = await self._transaction(queue_id, connect_to, port, name, policy_kind, auth,
                                                  mail_from, chunk, raw, dsn)
                for r, res in zip(chunk, results):
                    remote = name if connect_to == name else f"{name} [{connect_to}]"
                    if res.delivered:
                        outcomes[r["id"]] = Outcome(r["id"], "delivered", res.status, res.diagnostic, remote,
                                                    relayed=not res.dsn)
                    elif res.try_next_host:
                        host_failures.append(r)
                        outcomes[r["id"]] = Outcome(r["id"], "temporary", res.status, res.diagnostic, remote)
                    else:
                        kind = "permanent" if res.permanent else "temporary"
                        outcomes[r["id"]] = Outcome(r["id"], kind, res.status, res.diagnostic, remote)
            remaining = host_failures
        return [outcomes[r["id"]] for r in rcpts]

    async def _transaction(self, queue_id: int, connect_to: str, port: int, name: str, policy: TLSPolicy,
                           auth: SmarthostAuth | None, mail_from: str, rcpts: Sequence[dict[str, Any]],
                           raw: bytes, dsn: tuple[str | None, str | None] = (None, None)) -> list[RecipientResult]:
        """One SMTP transaction; accepted recipients are marked delivered before returning."""
        async def send_and_record() -> list[RecipientResult]:
            results = await deliver_to_host(
                connect_to, port, mail_from, [r["recipient"] for r in rcpts], raw,
                helo_name=self.hostname, tls_policy=policy, timeout=self.smtp_timeout,
                smarthost_auth=auth, tls_context=self.tls_context,
                tls_server_name=name if policy == TLSPolicy.VERIFY else None,
                envid=dsn[0], ret=dsn[1], rcpt_dsn=[(r.get("notify"), r.get("orcpt")) for r in rcpts])
            accepted = [r["id"] for r, res in zip(rcpts, results) if res.delivered]
            if accepted:
                first = next(res for res in results if res.delivered)
                await self.store.queue_mark_delivered(
                    accepted, f"{first.diagnostic} ({name}{'' if connect_to == name else f' [{connect_to}]'})"[:1000])
            return results
        # Shielded: once the remote has accepted, recording it must finish even during shutdown.
        sending = asyncio.ensure_future(send_and_record())
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)
        results = await asyncio.shield(sending)
        for r, res in zip(rcpts, results):
            state = "delivered" if res.delivered else ("bounced" if res.permanent else "deferred")
            log.info("queue %s: <%s> via %s [%s]:%d tls=%s stage=%s: %s (%s)", queue_id, r["recipient"],
                     name, connect_to, port, res.tls, res.stage, state, res.diagnostic)
        return results


def _notify(rcpt: dict[str, Any], what: str) -> bool:
    """RFC 3461 NOTIFY: absent means failures and (at our choice) delays are reported, never
    successes (§4.1); NEVER means nothing at all."""
    value = (rcpt.get("notify") or "").upper()
    if not value:
        return what != "SUCCESS"
    items = {v.strip() for v in value.split(",")}
    return "NEVER" not in items and what in items

