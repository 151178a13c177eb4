"""How IMAP handlers refuse: exceptions the session turns into tagged NO / BAD responses.

Handlers raise these instead of building the tagged line themselves; store errors
(`NotFound`, `AlreadyExists`, `InvalidName`, `QuotaExceeded`) and invalid mailbox names are
mapped in one table here (``tagged_for``), so every command answers them alike.
"""

from __future__ import annotations

import logging

from ...protocols.imap import InvalidMailboxName
from ...protocols.imap import responses as r
from ...protocols.imap.responses import Code
from ...store import AlreadyExists, InvalidName, NotFound, QuotaExceeded

__all__ = ["Refused", "BadRequest", "tagged_for"]


class Refused(Exception):
    """``tag NO [code] text``: a well-formed command that cannot be carried out."""

    def __init__(self, text: str, code: bytes | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class BadRequest(Exception):
    """``tag BAD [code] text``: the command is wrong in this context (RFC 9051 7.1.5)."""

    def __init__(self, text: str, code: bytes | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


log = logging.getLogger(__name__)


def tagged_for(tag: bytes, exc: Exception) -> bytes | None:
    """The tagged response for a known refusal, or None for an unexpected exception."""
    if isinstance(exc, Refused):
        return r.no(tag, exc.text, exc.code)
    if isinstance(exc, BadRequest):
        return r.bad(tag, exc.text, exc.code)
    if isinstance(exc, NotFound):
        return r.no(tag, _sentence(exc, "No such mailbox"), Code.NONEXISTENT)
    if isinstance(exc, AlreadyExists):
        return r.no(tag, _sentence(exc, "Mailbox already exists"), Code.ALREADYEXISTS)
    if isinstance(exc, InvalidName):
        return r.no(tag, _sentence(exc, "Invalid mailbox name"), Code.CANNOT)
    if isinstance(exc, InvalidMailboxName):
        return r.no(tag, f"Invalid mailbox name: {exc}", Code.CANNOT)
    if isinstance(exc, QuotaExceeded):
        return r.no(tag, "Quota exceeded: the mailbox is full", Code.OVERQUOTA)
    if isinstance(exc, OSError):
        # A full disk (the store reports a full database the same way): nothing was stored.
        log.warning("storage failure: %s", exc)
        return r.no(tag, "The server cannot store data right now (storage full or unavailable); "
                         "nothing was changed, try again later", Code.UNAVAILABLE)
    return None


def _sentence(exc: Exception, default: str) -> str:
    text = str(exc).strip()
    return text[:1].upper() + text[1:] if text else default
