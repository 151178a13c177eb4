"""SMTP replies: the :class:`Reply` value, its wire form, and the replies we reuse.

Wire form (RFC 5321 §4.2)::

    Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF

Enhanced status codes (RFC 2034 §3, RFC 3463) start the text of *every* line of 2xx, 4xx
and 5xx replies, except the greeting and the EHLO/HELO replies; 3xx replies (334, 354)
carry none. Constants are named after the code (``R503_NEED_MAIL``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Reply",
    "auth_challenge",
    "ehlo_reply",
    "greeting",
    "helo_reply",
]

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply. ``text`` may hold several lines separated by ``\\n``."""

    code: int
    enhanced: str | None
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"bad SMTP reply code {self.code}")
        if self.enhanced is not None:
            if not _ENHANCED.fullmatch(self.enhanced) or self.enhanced[0] != str(self.code)[0]:
                raise ValueError(f"enhanced code {self.enhanced} does not match {self.code}")

    @property
    def lines(self) -> list[str]:
        # CR would let a caller inject extra reply lines; drop it, split on LF only.
        return self.text.replace("\r", "").split("\n")

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    def __bytes__(self) -> bytes:
        lines = self.lines
        out = []
        prefix = f"{self.enhanced} " if self.enhanced else ""
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            text = f"{prefix}{line}"
            wire = f"{self.code}{sep}{text}"
            # RFC 4954 §4/§8: continue-req = "334" SP [base64] CRLF (the space is required
            # even with an empty challenge); other replies drop trailing blanks.
            out.append((wire if self.code == 334 else wire.rstrip(" ")) + "\r\n")
        return "".join(out).encode("utf-8")

    def with_text(self, text: str) -> Reply:
        """The same code and enhanced code with different text."""
        return Reply(self.code, self.enhanced, text)


def greeting(hostname: str, text: str = "ESMTP postoffice") -> Reply:
    """The 220 banner (no enhanced code, RFC 2034 §3)."""
    return Reply(220, None, f"{hostname} {text}")


def ehlo_reply(hostname: str, keywords: Iterable[str], text: str = "") -> Reply:
    """The multi-line 250 EHLO reply: first line the host name, then one keyword per line."""
    first = f"{hostname} {text}".rstrip()
    return Reply(250, None, "\n".join([first, *keywords]))


def helo_reply(hostname: str) -> Reply:
    return Reply(250, None, hostname)


def auth_challenge(encoded: bytes) -> Reply:
    """334 with an already base64-encoded challenge (see ``sasl.encode_challenge``)."""
    return Reply(334, None, encoded.decode("ascii"))


# 2xx
R221_BYE = Reply(221, "2.0.0", "Bye")
R220_READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
R235_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
R250_OK = Reply(250, "2.0.0", "OK")
R250_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
R250_RCPT_OK = Reply(250, "2.1.5", "Recipient OK")
R250_RESET = Reply(250, "2.0.0", "Reset OK")
R250_MESSAGE_ACCEPTED = Reply(250, "2.0.0", "Message accepted")
R252_CANNOT_VRFY = Reply(
    252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"
)
R214_HELP = Reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")

# 3xx (no enhanced codes)
R354_START_DATA = Reply(354, None, "End data with <CR><LF>.<CR><LF>")

# 4xx
R421_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
R421_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection")
R421_TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
R451_LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing")
R452_TOO_MANY_RCPTS = Reply(452, "4.5.3", "Too many recipients")
R454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")

# 5xx: syntax and sequence, produced by the connection itself
# RFC 3463 §3.6: X.5.2 covers "the command is unrecognized" (X.5.1: out of sequence/unsupported).
R500_UNRECOGNIZED = Reply(500, "5.5.2", "Command unrecognized")
R500_SYNTAX = Reply(500, "5.5.2", "Syntax error")
R500_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
R500_AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication Exchange line is too long")  # RFC 4954 §6
R501_SYNTAX_PARAMS = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
R501_BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
R501_BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
R501_BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode response")
R501_AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
R502_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
R503_BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
R503_NEED_EHLO = Reply(503, "5.5.1", "Send HELO/EHLO first")
R503_NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
R503_NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command")
R503_NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
R503_ALREADY_AUTH = Reply(503, "5.5.1", "Already authenticated")
R503_AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not permitted during a mail transaction")
R503_TLS_ACTIVE = Reply(503, "5.5.1", "TLS already active")
R503_DATA_IN_BDAT = Reply(503, "5.5.1", "DATA not permitted after BDAT")
R503_BINARYMIME_NEEDS_BDAT = Reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT")
R504_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
R554_NO_VALID_RCPT = Reply(554, "5.5.1", "No valid recipients")
R555_UNKNOWN_PARAM = Reply(555, "5.5.4", "Parameter not recognized or not implemented")

# 5xx: policy and content
R530_NEED_TLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
R530_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
R535_AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
R538_ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
R550_BARE_LINE_ENDING = Reply(550, "5.5.2", "bare LF/CR not allowed")
R552_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
R553_NEED_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
R554_TRANSACTION_FAILED = Reply(554, "5.0.0", "Transaction failed")
