"""Messages the Sieve actions send: the vacation reply and the owner's error notice (pure)."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from .interpreter import Vacation


def _message_id(hostname: str) -> str:
    return f"<sieve.{secrets.token_hex(10)}@{hostname}>"


def _clean(value: str) -> str:
    """No line breaks from script text or message fields into a header field."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())[:900]


def vacation_reply(action: Vacation, *, from_address: str, hostname: str, now: datetime | None = None) -> bytes:
    """RFC 5230 §5 / RFC 3834 §3: To the sender, ``Auto-Submitted: auto-replied``, In-Reply-To
    and References naming the original, the subject from ``:subject`` (default "Auto: ...")."""
    now = now or datetime.now(timezone.utc)
    if action.mime:
        # RFC 5230 §4.4: with :mime the reason is a whole MIME entity (its own header fields).
        body_entity = action.reason.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        head = (f"From: {_clean(action.from_address or from_address)}\r\n"
                f"To: <{_clean(action.recipient)}>\r\n"
                f"Date: {format_datetime(now)}\r\n"
                f"Message-ID: {_message_id(hostname)}\r\n"
                "MIME-Version: 1.0\r\n"
                "Auto-Submitted: auto-replied (vacation)\r\n")
        if action.in_reply_to:
            head += f"In-Reply-To: {_clean(action.in_reply_to)}\r\n"
        if action.references:
            head += f"References: {_clean(action.references)}\r\n"
        subject = EmailMessage(policy=SMTP)
        subject["Subject"] = _clean(action.subject)
        return head.encode("utf-8") + bytes(subject).split(b"\r\n\r\n")[0] + b"\r\n" + body_entity
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _clean(action.from_address or from_address)
    msg["To"] = f"<{_clean(action.recipient)}>"
    msg["Subject"] = _clean(action.subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = _message_id(hostname)
    msg["Auto-Submitted"] = "auto-replied (vacation)"
    if action.in_reply_to:
        msg["In-Reply-To"] = _clean(action.in_reply_to)
    if action.references:
        msg["References"] = _clean(action.references)
    msg.set_content(action.reason.replace("\r\n", "\n"))
    return bytes(msg)


def error_notice(*, to_address: str, hostname: str, reason: str, subject: str | None,
                 now: datetime | None = None) -> bytes:
    """The note put in the owner's INBOX when their script failed on a message (the message
    itself was kept in INBOX)."""
    now = now or datetime.now(timezone.utc)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Mail filter <MAILER-DAEMON@{_clean(hostname)}>"
    msg["To"] = f"<{_clean(to_address)}>"
    msg["Subject"] = "Your Sieve filter failed on a message"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = _message_id(hostname)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        "Your mail filter (Sieve script) could not be run on a message, so the message was\n"
        "delivered to your INBOX unfiltered.\n\n"
        f"Message subject: {_clean(subject or '(none)')}\n"
        f"Error: {_clean(reason)}\n\n"
        "Please correct the script (in the control panel or with a ManageSieve client).\n")
    return bytes(msg)


__all__ = ["error_notice", "vacation_reply"]
