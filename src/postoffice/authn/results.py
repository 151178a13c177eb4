"""The Authentication-Results header field (RFC 8601)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from postoffice.authn.dkim import DKIMSignatureResult
from postoffice.authn.dmarc import DMARCCheck, DMARCResult
from postoffice.authn.spf import SPFCheck

__all__ = ["authentication_results", "strip_authentication_results"]

_TOKEN_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+$")
_ADDR_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~]+@[A-Za-z0-9.\-]+$")


def _value(text: str) -> str:
    """A property value: token, local@domain, or a quoted-string (RFC 8601 2.2)."""
    text = "".join(ch for ch in text if ch >= " " and ch != "\x7f")
    if text and (_TOKEN_RE.match(text) or _ADDR_RE.match(text)):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    text = "".join(ch for ch in text if ch >= " " and ch not in "()\\\x7f")
    return f" ({text[:200]})" if text else ""


def authentication_results(
    authserv_id: str,
    *,
    spf: SPFCheck | None = None,
    spf_identity: str = "mailfrom",
    spf_subject: str = "",
    dkim: Sequence[DKIMSignatureResult] | None = None,
    dmarc: DMARCCheck | None = None,
) -> bytes:
    """Build ``Authentication-Results: <authserv-id>; ...\\r\\n`` (folded, CRLF-terminated).

    ``spf_identity`` is ``"mailfrom"`` or ``"helo"``; ``spf_subject`` the checked identity.
    """
    parts: list[str] = []
    if spf is not None:
        prop = f" smtp.{spf_identity}={_value(spf_subject)}" if spf_subject else ""
        parts.append(f"spf={spf.result.value}{_comment(spf.reason)}{prop}")
    if dkim is not None:
        if not dkim:
            parts.append("dkim=none")
        for sig in dkim:
            props = ""
            if sig.domain:
                props += f" header.d={_value(sig.domain)}"
            if sig.selector:
                props += f" header.s={_value(sig.selector)}"
            if sig.algorithm:
                props += f" header.a={_value(sig.algorithm)}"
            if sig.header_b:
                props += f" header.b={_value(sig.header_b)}"
            parts.append(f"dkim={sig.result.value}{_comment(sig.reason)}{props}")
    if dmarc is not None:
        comment = ""
        if dmarc.result in (DMARCResult.PASS, DMARCResult.FAIL):
            comment = f" (p={dmarc.policy.value} dis={dmarc.disposition.value})"
        elif dmarc.reason:
            comment = _comment(dmarc.reason)
        prop = f" header.from={_value(dmarc.from_domain)}" if dmarc.from_domain else ""
        parts.append(f"dmarc={dmarc.result.value}{comment}{prop}")
    if not parts:
        parts.append("none")  # 2.2: no authentication was done
    header = f"Authentication-Results: {_value(authserv_id)};\r\n\t" + ";\r\n\t".join(parts)
    return header.encode("utf-8") + b"\r\n"


def strip_authentication_results(message: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields claiming our authserv-id (RFC 8601 5): a sender
    must not be able to forge our verdicts. Other fields and the body are kept byte for byte."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in message else b"\n\n"
    head, found, body = message.partition(sep)
    if not found:
        head, body = message, b""
    nl = b"\r\n" if sep == b"\r\n\r\n" else b"\n"
    lines = head.split(nl)
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    ours = authserv_id.lower().encode()
    kept: list[bytes] = []
    for f in fields:
        name, _, value = f[0].partition(b":")
        if name.strip().lower() == b"authentication-results":
            full = b" ".join([value, *f[1:]]).strip()
            ident = re.split(rb"[\s;]", full, maxsplit=1)[0].lower() if full else b""
            if ident == ours:
                continue
        kept.extend(f)
    return nl.join(kept) + (sep + body if found else b"")
