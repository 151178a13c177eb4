"""Delivery Status Notifications (RFC 3464, RFC 3462/6522 multipart/report) as bytes.

The queue sends the result with the null reverse-path (``MAIL FROM:<>``, RFC 5321 4.5.5) to the
original sender, and never sends a DSN about a message that was itself a bounce
(:func:`is_bounce`). Everything that comes from outside (recipient addresses, remote replies,
the original header section) is sanitised: no CR/LF injection, ASCII only in the
message/delivery-status part, and the returned headers are bounded in size.

What is returned (RFC 3461 §4.3): the header section (text/rfc822-headers) by default and for
RET=HDRS; with RET=FULL a failure report carries the whole message (message/rfc822) when it is
at most :data:`MAX_RETURNED_MESSAGE_BYTES`, else the headers. Reports without a failure
(delivered, relayed, delayed) return the headers only (RFC 3461 §4.3).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Literal

__all__ = [
    "DSNRecipient",
    "build_report",
    "build_dsn",
    "build_delay_notice",
    "build_success_notice",
    "is_bounce",
    "MAX_RETURNED_HEADER_BYTES",
    "MAX_RETURNED_MESSAGE_BYTES",
]

MAX_RETURNED_HEADER_BYTES = 32 * 1024
#: RET=FULL returns the whole message up to this size; a larger one gets its headers only.
MAX_RETURNED_MESSAGE_BYTES = 1024 * 1024

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]


@dataclass(frozen=True)
class DSNRecipient:
    recipient: str  # the address as given in RCPT TO (Final-Recipient)
    action: Action
    status: str  # RFC 3463, e.g. "5.1.1" or "4.4.1"
    remote_mta: str | None = None  # host name (or address) of the remote MTA, if any
    diagnostic: str | None = None  # full value, e.g. "smtp; 550 5.1.1 no such user"
    original_recipient: str | None = None  # ORCPT value, if the client gave one
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None  # for "delayed"


def is_bounce(mail_from: str | None) -> bool:
    """True for the null reverse-path (``""`` / ``"<>"``) and for MAILER-DAEMON senders: mail
    that must never be answered with another DSN (RFC 3464 section 2, RFC 5321 6.1)."""
    if mail_from is None:
        return True
    addr = mail_from.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    if not addr:
        return True
    local = addr.rpartition("@")[0] if "@" in addr else addr
    return local.lower() == "mailer-daemon"


def _clean(text: str, limit: int = 900) -> str:
    """One line of printable ASCII: folds CR/LF and tabs, replaces anything else."""
    text = " ".join(text.split())
    out = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return out[:limit]


def _status(status: str) -> str:
    parts = status.strip().split(".")
    if len(parts) == 3 and parts[0] in ("2", "4", "5") and all(p.isdigit() for p in parts):
        return status.strip()
    return "5.0.0"


def _addr_type(address: str) -> str:
    """address-type "rfc822" (RFC 3464 2.3.2), or "utf-8" for internationalised addresses."""
    return "rfc822" if address.isascii() else "utf-8"


def _date(value: datetime | None) -> str:
    value = value or datetime.now(timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_datetime(value)


def _header_section(message: bytes, limit: int) -> bytes:
    """The original header section with CRLF line ends, cut at a field boundary under limit."""
    end = message.find(b"\r\n\r\n")
    lf_end = message.find(b"\n\n")
    if end == -1 or (lf_end != -1 and lf_end < end):
        end = lf_end
    head = message if end == -1 else message[:end]
    lines = head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    out: list[bytes] = []
    size = 0
    truncated = False
    for line in lines:
        field_start = line[:1] not in (b" ", b"\t")
        if size + len(line) + 2 > limit:
            truncated = True
            # Drop a half-copied field: remove continuation lines back to its start.
            if not field_start:
                while out and out[-1][:1] in (b" ", b"\t"):
                    out.pop()
                if out:
                    out.pop()
            break
        out.append(line)
        size += len(line) + 2
    if truncated:
        out.append(b"X-Postoffice-Truncated: the original header section was cut here")
    return b"\r\n".join(out) + b"\r\n"


def build_report(
    kind: Literal["failure", "delay", "success"],
    *,
    hostname: str,
    original_sender: str,
    recipients: Sequence[DSNRecipient],
    original_message: bytes,
    arrival_date: datetime | None = None,
    envelope_id: str | None = None,
    queue_id: str | None = None,
    now: datetime | None = None,
    max_header_bytes: int = MAX_RETURNED_HEADER_BYTES,
    ret: str | None = None,
) -> bytes:
    """A delivery status notification (RFC 3464 multipart/report) of the given kind.

    ``ret`` is the RFC 3461 RET value and matters only for failures: "FULL" returns the whole
    message (bounded), anything else the header section (success and delay reports always
    return headers only, RFC 3461 §4.3). Send it with ``MAIL FROM:<>`` to
    ``original_sender``; never for :func:`is_bounce` senders."""
    host = _clean(hostname, 255) or "localhost"
    now = now or datetime.now(timezone.utc)
    boundary = f"=_postoffice_dsn_{secrets.token_hex(12)}"
    mid = f"<dsn.{secrets.token_hex(10)}@{host}>"
    to = _clean(original_sender, 512)

    if kind == "failure":
        subject = "Undelivered Mail Returned to Sender"
        intro = (
            f"This is the mail system at host {host}.\r\n\r\n"
            "I'm sorry to have to inform you that your message could not\r\n"
            "be delivered to one or more recipients. The details are below.\r\n"
        )
    elif kind == "success":
        subject = "Successful Mail Delivery Report"
        intro = (
            f"This is the mail system at host {host}.\r\n\r\n"
            "Your message was successfully delivered to the destination(s)\r\n"
            "listed below. If the message was relayed to a system that does not\r\n"
            "report delivery, you will receive no further notice.\r\n"
        )
    else:
        subject = "Delayed Mail (still being retried)"
        intro = (
            f"This is the mail system at host {host}.\r\n\r\n"
            "Your message could not be delivered yet to one or more recipients.\r\n"
            "It will be retried; you do not need to resend it. The details are below.\r\n"
        )
    lines = []
    for r in recipients:
        why = _clean(r.diagnostic or "", 600)
        why = why.split(";", 1)[1].strip() if ";" in why else why
        where = f" (host {_clean(r.remote_mta, 255)})" if r.remote_mta else ""
        lines.append(f"<{_clean(r.recipient, 512)}>{where}: {why or r.status}")
        if r.action == "delayed" and r.will_retry_until:
            lines.append(f"    will be retried until {_date(r.will_retry_until)}")
    human = intro + "\r\n" + "\r\n".join(lines) + "\r\n"

    # message/delivery-status: per-message fields, blank line, per-recipient groups (RFC 3464 2.1)
    per_msg = [f"Reporting-MTA: dns; {host}"]
    if queue_id:
        per_msg.append(f"X-Postoffice-Queue-ID: {_clean(queue_id, 100)}")
    if envelope_id:
        per_msg.append(f"Original-Envelope-Id: {_clean(envelope_id, 100)}")
    if arrival_date is not None:
        per_msg.append(f"Arrival-Date: {_date(arrival_date)}")
    groups = ["\r\n".join(per_msg)]
    for r in recipients:
        g: list[str] = []
        if r.original_recipient:
            # RFC 3464 §2.3.1: address-type ";" the ORCPT address, decoded from xtext.
            orcpt = _clean(r.original_recipient, 512)
            kind_, semi, addr = orcpt.partition(";")
            orcpt = f"{kind_.strip()}; {addr.strip()}" if semi else f"rfc822; {orcpt}"
            g.append(f"Original-Recipient: {orcpt}")
        rcpt = r.recipient
        g.append(f"Final-Recipient: {_addr_type(rcpt)}; {_clean(rcpt, 512)}")
        g.append(f"Action: {r.action}")
        g.append(f"Status: {_status(r.status)}")
        if r.remote_mta:
            g.append(f"Remote-MTA: dns; {_clean(r.remote_mta, 255)}")
        if r.diagnostic:
            diag = _clean(r.diagnostic, 900)
            g.append(f"Diagnostic-Code: {diag if ';' in diag else 'X-Postoffice; ' + diag}")
        g.append(f"Last-Attempt-Date: {_date(r.last_attempt or now)}")
        if r.will_retry_until and r.action == "delayed":
            g.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
        groups.append("\r\n".join(g))
    status_part = "\r\n\r\n".join(groups) + "\r\n"

    full = (kind == "failure" and (ret or "").upper() == "FULL"
            and len(original_message) <= MAX_RETURNED_MESSAGE_BYTES)
    if full:
        returned = original_message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        if not returned.endswith(b"\r\n"):
            returned += b"\r\n"
        returned_type = "message/rfc822"
        returned_what = "Undelivered Message"
    else:
        returned = _header_section(original_message, max_header_bytes)
        returned_type = "text/rfc822-headers"
        returned_what = "Undelivered Message Headers" if kind != "success" else "Message Headers"
    cte = b"" if returned.isascii() else b"Content-Transfer-Encoding: 8bit\r\n"

    out = bytearray()
    out += (
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {_date(now)}\r\n"
        f"Message-ID: {mid}\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834 5
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Description: Notification\r\n"
        "\r\n"
    ).encode("ascii")
    out += human.encode("ascii", "replace")
    out += (
        f"\r\n--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "Content-Description: Delivery report\r\n"
        "\r\n"
    ).encode("ascii")
    out += status_part.encode("ascii", "replace")
    out += (
        f"\r\n--{boundary}\r\n"
        f"Content-Type: {returned_type}\r\n"
        f"Content-Description: {returned_what}\r\n"
    ).encode("ascii")
    out += cte + b"\r\n" + returned
    out += f"\r\n--{boundary}--\r\n".encode("ascii")
    return bytes(out)


def build_dsn(**report: Any) -> bytes:
    """A failure DSN ("bounce"); the arguments are those of :func:`build_report` (normally each
    recipient with action "failed"; "relayed" / "delivered" ones may share the report)."""
    return build_report("failure", **report)


def build_success_notice(**report: Any) -> bytes:
    """A success DSN (Action "delivered" or "relayed", 2.x.x status) for NOTIFY=SUCCESS."""
    return build_report("success", **report)


def build_delay_notice(**report: Any) -> bytes:
    """A "delayed" DSN (Action: delayed, 4.x.x status, Will-Retry-Until when known)."""
    return build_report("delay", **report)
