"""Sieve mail filtering (RFC 5228 and extensions), sans-IO.

``grammar.parse`` turns script text into a tree (sievelib, extended), ``interpreter.evaluate``
runs it against :class:`message.MessageFacts` and returns the actions; doing them (storing,
queueing, replying) is services/sieve.py's job.
"""

from __future__ import annotations

from .grammar import EXTENSIONS, Script, SieveSyntaxError, parse
from .interpreter import (
    Discard,
    FileInto,
    Keep,
    Outcome,
    Redirect,
    Reject,
    SieveRuntimeError,
    Vacation,
    evaluate,
)
from .message import MessageFacts

__all__ = [
    "EXTENSIONS", "Discard", "FileInto", "Keep", "MessageFacts", "Outcome", "Redirect", "Reject", "Script",
    "SieveRuntimeError", "SieveSyntaxError", "Vacation", "evaluate", "parse",
]
