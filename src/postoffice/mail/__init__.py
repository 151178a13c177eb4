"""Pure message helpers: MIME analysis (ENVELOPE, BODYSTRUCTURE, sections), addresses, DSN."""

from __future__ import annotations

from .analysis import MessageInfo, analyze, header_value, part_text, search_text
from .imapfmt import body, bodystructure, envelope
from .mime import MAX_DEPTH, Part, canonicalize_crlf, parse
from .sections import (
    UnknownCTE,
    binary_bytes,
    binary_size,
    partial,
    resolve_part,
    section_bytes,
)

__all__ = [
    "MAX_DEPTH",
    "MessageInfo",
    "Part",
    "UnknownCTE",
    "analyze",
    "binary_bytes",
    "binary_size",
    "body",
    "bodystructure",
    "canonicalize_crlf",
    "envelope",
    "header_value",
    "parse",
    "part_text",
    "partial",
    "resolve_part",
    "search_text",
    "section_bytes",
]
