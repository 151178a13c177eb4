"""The protocol-access decision: may this account use IMAP, POP3 or SMTP now?

The one function every server calls after authentication, and the panel uses to show what is
in force. Rules (the source article: "force your e-mail accounts to the same protocol"):

- A domain policy of ``imap-only`` or ``pop3-only`` overrides the per-address switches while it is
  set: the forced protocol is allowed and the other mailbox protocol is refused, whatever the
  address's own switches say.
- With the policy ``any``, each address's own IMAP and POP3 switches decide.
- SMTP submission is not a mailbox protocol; the domain policy leaves it alone and only the
  address's SMTP switch decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..store.records import Account, Domain

PROTOCOL_NAMES = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str = ""  # one polite sentence when refused, shown to the client
    forced_by_domain: bool = False


def protocol_access(account: Account, domain: Domain, protocol: str) -> AccessDecision:
    if protocol not in PROTOCOL_NAMES:
        raise ValueError(f"unknown protocol {protocol!r}")
    name = PROTOCOL_NAMES[protocol]
    policy = domain.protocol_policy
    if protocol != "smtp" and policy in ("imap-only", "pop3-only"):
        forced = policy.split("-")[0]
        if protocol == forced:
            return AccessDecision(True, forced_by_domain=True)
        return AccessDecision(
            False,
            f"{name} is disabled for this address: the domain {domain.name} is set to "
            f"{PROTOCOL_NAMES[forced]} only by its administrator",
            forced_by_domain=True,
        )
    if not getattr(account, f"{protocol}_enabled"):
        return AccessDecision(False, f"{name} is disabled for this address by its administrator")
    return AccessDecision(True)


def effective_protocols(account: Account, domain: Domain) -> dict[str, AccessDecision]:
    return {p: protocol_access(account, domain, p) for p in PROTOCOL_NAMES}
