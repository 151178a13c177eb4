"""One entry point for the SMTP server: SPF + DKIM + DMARC and the Authentication-Results line."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from postoffice.authn import dkim as dkim_mod
from postoffice.authn.dkim import DKIMSignatureResult
from postoffice.authn.dmarc import DMARCCheck, DMARCPolicy, DMARCResult, check_dmarc
from postoffice.authn.results import authentication_results
from postoffice.authn.spf import SPFCheck, SPFResult, check_spf
from postoffice.dns import Resolver
from postoffice.mail.headers import find_fields
from postoffice.store.spool import MessageSource

__all__ = ["InboundVerdict", "authenticate_inbound"]

Action = Literal["accept", "quarantine", "reject"]


@dataclass(frozen=True)
class InboundVerdict:
    spf: SPFCheck
    spf_identity: str  # "mailfrom" or "helo"
    dkim: list[DKIMSignatureResult]
    dmarc: DMARCCheck
    header: bytes  # "Authentication-Results: ...\r\n", to prepend to the stored message
    action: Action

    @property
    def reject_reply(self) -> str:
        """A reply text for a rejection (RFC 7489 10.3 suggests 550 5.7.1)."""
        return f"5.7.1 Email rejected per DMARC policy for {self.dmarc.from_domain}"


async def authenticate_inbound(
    resolver: Resolver,
    hostname: str,
    client_ip: str,
    helo: str,
    mail_from: str,
    message: bytes | MessageSource,
    *,
    reject_spf_fail: bool = False,
    rng: random.Random | None = None,
) -> InboundVerdict:
    """Check a message received on port 25.

    ``mail_from`` is the reverse-path without angle brackets ("" for the null path).
    ``action`` follows DMARC's disposition on failure; SPF ``fail`` alone rejects only with
    ``reject_spf_fail`` (when the domain has no DMARC record). Temporary DNS failures never
    reject: the caller may choose to answer 451 when it sees ``temperror``.
    """
    spf, identity = await check_spf(resolver, client_ip, helo, mail_from)
    spf_subject = mail_from if identity == "mailfrom" else helo
    spf_domain = spf_subject.rpartition("@")[2] if identity == "mailfrom" else helo
    sigs = await dkim_mod.verify(resolver, message)
    # DMARC reads only the From fields: those alone, found in C (the header block may be a
    # megabyte of folded lines; this runs on the event loop), never the body.
    header = MessageSource.of(message).header_block()
    from_fields = b"".join(field + b"\r\n" for field in find_fields(header, b"from")) + b"\r\n"
    dmarc = await check_dmarc(resolver, from_fields, spf, spf_domain, sigs, rng=rng)
    action: Action = "accept"
    if dmarc.result == DMARCResult.FAIL:
        if dmarc.disposition == DMARCPolicy.REJECT:
            action = "reject"
        elif dmarc.disposition == DMARCPolicy.QUARANTINE:
            action = "quarantine"
    elif (
        reject_spf_fail
        and dmarc.result == DMARCResult.NONE
        and spf.result == SPFResult.FAIL
    ):
        action = "reject"
    header = authentication_results(
        hostname,
        spf=spf,
        spf_identity=identity,
        spf_subject=spf_subject,
        dkim=sigs,
        dmarc=dmarc,
    )
    return InboundVerdict(spf, identity, sigs, dmarc, header, action)
