"""Per-recipient spam settings on port 25 (issue 15): the Junk threshold and the allow and
block lists of senders, and what they make of rspamd's verdict for each local recipient.

The rules (docs/operations.md, "Junk threshold, allow and block lists"):

* **Junk threshold** (an address's overrides its domain's; none: rspamd's own action decides).
  It moves only the line between INBOX and Junk: when rspamd's action is ``no action``,
  ``add header`` or ``rewrite subject``, a score at or above the threshold goes to Junk (with
  the X-Spam-* fields), one below it to the INBOX. rspamd's ``reject``, ``soft reject`` and
  ``greylist`` stay rspamd's: a threshold never lets rejected mail in, nor refuses mail.
* **Entries** are an address (``news@shop.example``), a domain (``shop.example``: that domain
  only) or ``*.shop.example`` (its subdomains, not the domain itself). They are matched against
  the envelope sender (MAIL FROM) and every address of the From: header field, lower-cased.
* **Block list**: refused with 550 5.7.1. The envelope sender is known at RCPT TO, so a
  recipient whose every account blocks it is refused there alone (the transaction goes on for
  the others); the From: field is only known at the end of DATA, where one reply covers every
  recipient: refused when every local recipient blocks the sender, otherwise the blocking
  recipients' copies go to Junk (one reply cannot refuse some recipients only).
* **Allow list**: the message is never put in Junk nor refused for its spam score for that
  recipient (virus scanning and SPF/DKIM/DMARC still apply). Both envelope sender and From:
  can be forged: an allow-list entry trusts whoever uses the name.
* Precedence: the address's own lists before its domain's; within one level block wins.
* The lists apply whether or not filtering is on for the recipient and whether or not a spam
  filter is configured (they need no rspamd); the threshold needs rspamd's score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..mail.address import InvalidAddress, normalize_address, normalize_domain
from .accounts import UserError
from .spamfilter import ACCEPT, JUNK, REJECT, TEMPFAIL, SpamVerdict

ALLOW = "allow"
BLOCK = "block"
LISTS = (ALLOW, BLOCK)
#: Entries one list may hold (each message looks them up per recipient).
MAX_ENTRIES = 1000
#: The Junk threshold's range: rspamd scores are sums of symbol weights, rarely above 100.
MAX_THRESHOLD = 1000.0

#: What is recorded in the verdicts table when the settings, not rspamd, decided.
BLOCKED = "blocked"
ALLOWED = "allowed"
JUNK_BY_THRESHOLD = "junk by threshold"
KEPT_BY_THRESHOLD = "inbox by threshold"


def clean_list_kind(kind: str) -> str:
    if kind not in LISTS:
        raise UserError(f"the list is either allow or block, not {kind!r}", "list")
    return kind


def clean_entry(text: str) -> str:
    """An allow/block list entry in its stored form; UserError for anything else."""
    entry = text.strip().lower()
    if entry.startswith("@"):
        entry = entry[1:]
    problem = f"{text.strip()!r} is not an address, a domain or *.domain"
    if not entry or any(ch.isspace() for ch in entry):
        raise UserError(problem, "entry")
    try:
        if "@" in entry:
            return normalize_address(entry).lower()
        wildcard = entry.startswith("*.")
        domain = normalize_domain(entry[2:] if wildcard else entry)
    except InvalidAddress:
        raise UserError(problem, "entry") from None
    if domain.startswith("[") or "*" in domain:
        raise UserError(problem, "entry")
    return f"*.{domain}" if wildcard else domain


def clean_threshold(value: object) -> float | None:
    """The Junk threshold from a form or API value; None (or "") means "rspamd decides"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise UserError("the Junk threshold must be a number", "junk_score")
    try:
        score = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        raise UserError(f"the Junk threshold must be a number, not {str(value).strip()!r}", "junk_score") from None
    if not math.isfinite(score) or not 0 < score <= MAX_THRESHOLD:
        raise UserError(f"the Junk threshold must be above 0 and at most {MAX_THRESHOLD:g}", "junk_score")
    return score


def sender_keys(address: str) -> set[str]:
    """The entries that match ``address``: itself, its domain and ``*.`` each parent domain."""
    address = address.strip().lower()
    domain = address.rpartition("@")[2].rstrip(".")
    if not domain:
        return set()
    keys = {address, domain} if "@" in address else {domain}
    labels = domain.split(".")
    keys.update("*." + ".".join(labels[i:]) for i in range(1, len(labels)))
    return keys


@dataclass(frozen=True)
class SenderLists:
    allow: frozenset[str] = frozenset()
    block: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.allow or self.block)

    def match(self, keys: set[str]) -> str | None:
        if keys & self.block:
            return BLOCK
        if keys & self.allow:
            return ALLOW
        return None


@dataclass(frozen=True)
class Outcome:
    decision: str  # spamfilter.ACCEPT, JUNK, REJECT or TEMPFAIL
    recorded: str | None  # the action kept in the verdicts table (None: nothing to keep)
    blocked: bool = False


@dataclass(frozen=True)
class SpamPolicy:
    """One account's settings: its switch, Junk threshold and lists (own and its domain's)."""

    enabled: bool = True
    threshold: float | None = None
    own: SenderLists = field(default_factory=SenderLists)
    domain: SenderLists = field(default_factory=SenderLists)

    @property
    def has_lists(self) -> bool:
        return bool(self.own or self.domain)

    def listing(self, senders: Iterable[str]) -> str | None:
        """ALLOW, BLOCK or None for these senders (the address's lists first)."""
        if not self.has_lists:
            return None
        keys: set[str] = set()
        for sender in senders:
            keys |= sender_keys(sender)
        return self.own.match(keys) or self.domain.match(keys)

    def outcome(self, senders: Sequence[str], spam: SpamVerdict | None, on_failure: str) -> Outcome:
        listed = self.listing(senders)
        if listed == BLOCK:
            return Outcome(REJECT, BLOCKED, blocked=True)
        if not self.enabled or spam is None:
            return Outcome(ACCEPT, None)
        if listed == ALLOW:
            return Outcome(ACCEPT, ALLOWED)
        decision = spam.decision(on_failure)
        if decision in (ACCEPT, JUNK) and self.threshold is not None and spam.score is not None:
            moved = JUNK if spam.score >= self.threshold else ACCEPT
            if moved != decision:
                return Outcome(moved, JUNK_BY_THRESHOLD if moved == JUNK else KEPT_BY_THRESHOLD)
        return Outcome(decision, spam.action)


DEFAULT = SpamPolicy()


async def policies(store: Any, account_ids: Sequence[int]) -> dict[int, SpamPolicy]:
    """The stored settings of ``account_ids`` (store.verdicts.spam_policies), one read."""
    rows = await store.spam_policies(account_ids)
    return {account: SpamPolicy(enabled, threshold, _lists(own), _lists(domain))
            for account, (enabled, threshold, own, domain) in rows.items()}


def _lists(rows: dict[str, frozenset[str]]) -> SenderLists:
    return SenderLists(rows.get(ALLOW, frozenset()), rows.get(BLOCK, frozenset()))


@dataclass
class Placement:
    """What the end of DATA does: refuse (``refusal`` REJECT or TEMPFAIL), or deliver with
    ``mailboxes`` (Junk for some accounts). ``recorded``: account -> action for the verdicts."""

    refusal: str | None = None
    blocked: bool = False  # the refusal is the recipients' block lists, not rspamd
    mailboxes: dict[int, str] = field(default_factory=dict)
    recorded: dict[int, str] = field(default_factory=dict)
    junk: bool = False  # some copy goes to Junk (the X-Spam-* fields say spam)


def place(accounts: Sequence[int], policies: dict[int, SpamPolicy], senders: Sequence[str],
          spam: SpamVerdict | None, on_failure: str) -> Placement:
    """Each local account's outcome, then one answer for the transaction: refused when every
    account refuses (451 when any refusal is temporary: someone may take it later), else the
    refusing accounts' copies go to Junk (or the INBOX when the filter could not be asked)."""
    if not accounts:  # only forwarding addresses: rspamd's verdict as it is
        outcome = DEFAULT.outcome(senders, spam, on_failure)
        refused = outcome.decision in (REJECT, TEMPFAIL)
        return Placement(refusal=outcome.decision if refused else None)
    outcomes = {a: policies.get(a, DEFAULT).outcome(senders, spam, on_failure) for a in accounts}
    recorded = {a: o.recorded for a, o in outcomes.items() if o.recorded is not None}
    refusals = [o for o in outcomes.values() if o.decision in (REJECT, TEMPFAIL)]
    if len(refusals) == len(outcomes):
        temporary = any(o.decision == TEMPFAIL for o in refusals)
        return Placement(refusal=TEMPFAIL if temporary else REJECT, recorded=recorded,
                         blocked=all(o.blocked for o in refusals))
    mailboxes: dict[int, str] = {}
    for account, outcome in outcomes.items():
        if outcome.decision == JUNK or (outcome.decision in (REJECT, TEMPFAIL)
                                        and not (spam is not None and spam.failed and not outcome.blocked)):
            mailboxes[account] = "Junk"
    return Placement(mailboxes=mailboxes, recorded=recorded, junk=bool(mailboxes))
