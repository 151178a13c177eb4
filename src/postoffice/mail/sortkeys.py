"""The values SORT and THREAD compare (RFC 5256, RFC 5957), computed once per message.

Delivery calls :func:`sort_keys` on the raw message and keeps the result (``blobs.sortkeys``,
a small JSON list); the IMAP server loads it into its per-mailbox index, so neither SORT nor
THREAD ever parses a header again.

* ``base_subject`` is RFC 5256 section 2.1 exactly (steps 1-7 and the subject ABNF of
  section 5), including RFC 2047 decoding, and reports whether the message is a reply or a
  forward (section 2.1 / THREAD=REFERENCES step 5: the extraction removed a subj-refwd, a
  "(fwd)" subj-trailer, or a subj-fwd-hdr and subj-fwd-trl).
* FROM / TO / CC sort on the IMAP addr-mailbox of the first address (RFC 5256 section 3);
  DISPLAYFROM / DISPLAYTO on its decoded display name, or ``mailbox@host`` when it has none
  (RFC 5957 section 3). Group markers are skipped: the first real address counts.
* The Message-ID, and the References (or, without any, the first In-Reply-To id) for
  THREAD=REFERENCES (RFC 5256 section 3, REFERENCES step 1).
* The sent date: the Date: field as a UTC timestamp, or None when it is missing or cannot be
  parsed (the caller then uses the INTERNALDATE, RFC 5256 section 2.2).

:func:`casemap` is the i;ascii-casemap collation (RFC 4790 section 9.2): ASCII letters
upper-cased, then octet order, which for Python strings is code point order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .headers import (
    bytes_to_text, decode_header_value, decode_words, find_header_end, parse_date, split_fields, unfold,
)
from .imapfmt import parse_address_list

__all__ = ["SortKeys", "sort_keys", "load_stored", "base_subject", "casemap", "SORTKEYS_VERSION"]

#: Bumped when the computation changes, so stored keys of an older version are recomputed.
SORTKEYS_VERSION = 1

_CASEMAP = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def casemap(text: str) -> str:
    """i;ascii-casemap (RFC 4790 section 9.2): only a-z are folded (to A-Z)."""
    return text.translate(_CASEMAP)


# RFC 5256 section 5 (subject ABNF). The literal strings are case-insensitive (RFC 5234
# section 2.3), in ASCII only: re.ASCII keeps e.g. U+017F from matching "s".
#   subj-blob   = "[" *BLOBCHAR "]" *WSP ; BLOBCHAR = any CHAR except "[" and "]"
#   subj-refwd  = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
#   subj-leader = (*subj-blob subj-refwd) / WSP
_BLOB = r"\[[^\[\]]*\][ \t]*"
_REFWD = r"(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:"
_LEADER_REFWD = re.compile(r"(?:" + _BLOB + r")*" + _REFWD, re.ASCII | re.IGNORECASE)
_BLOB_RE = re.compile(_BLOB)
_FWD_TRAILER = "(fwd)"
_WS_RUN = re.compile(r"[ \t\r\n]+")


def base_subject(subject: str, *, decoded: bool = False) -> tuple[str, bool]:
    """(base subject, is reply or forward) of a Subject field value (RFC 5256 section 2.1).

    ``subject`` is the unfolded field text; its encoded-words are decoded first unless
    ``decoded`` says that was done already.
    """
    # (1) RFC 2047 encoded-words to UTF-8 text; tabs and continuations to a space; runs of
    # spaces to one space.
    text = subject if decoded else decode_words(subject)
    s = _WS_RUN.sub(" ", text)
    reply = False
    while True:
        # (2) Remove every trailing subj-trailer ("(fwd)" / WSP), until none is left.
        while True:
            if s.endswith((" ", "\t")):
                s = s.rstrip(" \t")
                continue
            if s[-5:].lower() == _FWD_TRAILER:
                s = s[:-5]
                reply = True
                continue
            break
        # (5) Repeat (3) and (4) until neither removes anything.
        while True:
            changed = False
            # (3) Remove all leading subj-leader text: WSP, or *subj-blob subj-refwd.
            while True:
                if s[:1] in (" ", "\t") and s:
                    s = s.lstrip(" \t")
                    changed = True
                    continue
                m = _LEADER_REFWD.match(s)
                if m is not None:
                    s = s[m.end():]
                    reply = True
                    changed = True
                    continue
                break
            # (4) A leading subj-blob goes if what is left is a non-empty subj-base.
            m = _BLOB_RE.match(s)
            if m is not None and s[m.end():].strip(" \t"):
                s = s[m.end():]
                changed = True
            if not changed:
                break
        # (6) "[fwd:" subject "]": remove the wrapper and start again at (2).
        if s[:5].lower() == "[fwd:" and s.endswith("]"):
            s = s[5:-1]
            reply = True
            continue
        break
    # (7) What remains is the base subject.
    return s, reply


_MSGID = re.compile(rb"<([^<>]*)>")
_MSGID_JUNK = re.compile(r'[\s"\\]')


def _msg_ids(value: bytes) -> list[str]:
    """The msg-ids of a Message-ID / In-Reply-To / References field, in order.

    RFC 5256 (REFERENCES step 1) compares Message IDs as msg-id values; quoting, escapes and
    whitespace inside the angle brackets do not make two ids different (RFC 5322 section
    3.6.4 obs-id-left), so they are removed. An empty ``<>`` is not a valid id.
    """
    out = []
    for m in _MSGID.finditer(value):
        mid = _MSGID_JUNK.sub("", bytes_to_text(m.group(1)))
        if mid:
            out.append(mid)
    return out


def _first_address(value: bytes | None) -> tuple[str, str]:
    """(addr-mailbox, display) of the first address of an address-list field ("" if none)."""
    if value is None:
        return "", ""
    for name, _adl, mailbox, host in parse_address_list(value):
        if host is None:  # a group marker (RFC 9051 section 7.5.2), not an address
            continue
        mbox = bytes_to_text(mailbox or b"")
        addr = mbox + "@" + bytes_to_text(host)
        display = decode_header_value(name).strip() if name else ""
        # RFC 5957 section 3: the display name if there is one, otherwise the address.
        return mbox, display or addr
    return "", ""


@dataclass(frozen=True, slots=True)
class SortKeys:
    """What SORT and THREAD need of one message (see the module docstring)."""

    subject: str            # base subject (not yet case-mapped)
    reply: bool             # the subject marks a reply or forward
    from_mailbox: str
    from_display: str
    to_mailbox: str
    to_display: str
    cc_mailbox: str
    message_id: str         # "" when missing or invalid
    references: tuple[str, ...]
    sent: float | None      # Date: as a UTC timestamp; None when missing/unparseable

    def stored(self) -> list[Any]:
        """What is kept (``blobs.sortkeys``) and what SORT/THREAD compare: the strings already
        case-mapped (i;ascii-casemap), so loading them is a JSON decode and nothing else::

            [subject, reply, from, display from, to, display to, cc, message-id, [references], sent]
        """
        return [casemap(self.subject), int(self.reply), casemap(self.from_mailbox),
                casemap(self.from_display), casemap(self.to_mailbox), casemap(self.to_display),
                casemap(self.cc_mailbox), self.message_id, list(self.references), self.sent]

    def to_json(self) -> str:
        return json.dumps([SORTKEYS_VERSION, *self.stored()], ensure_ascii=False, separators=(",", ":"))


def load_stored(text: str | None) -> list[Any] | None:
    """The list :meth:`SortKeys.stored` made, from its JSON; None when absent, damaged or of
    another version (then the keys are computed again from the message)."""
    if not text:
        return None
    try:
        d = json.loads(text)
    except ValueError:
        return None
    if not isinstance(d, list) or len(d) != 11 or d[0] != SORTKEYS_VERSION:
        return None
    del d[0]
    return d


def sort_keys(raw: bytes) -> SortKeys:
    """Compute the SORT/THREAD keys of a message (never raises for any input)."""
    first: dict[bytes, bytes] = {}
    for name, _fs, vs, fe in split_fields(raw, 0, find_header_end(raw, 0, len(raw))):
        if name and name not in first:
            first[name] = unfold(raw[vs:fe])
    subject = first.get(b"subject")
    base, reply = base_subject(bytes_to_text(subject)) if subject is not None else ("", False)
    from_mailbox, from_display = _first_address(first.get(b"from"))
    to_mailbox, to_display = _first_address(first.get(b"to"))
    cc_mailbox, _ = _first_address(first.get(b"cc"))
    ids = _msg_ids(first.get(b"message-id", b""))
    # REFERENCES step 1: the References ids; without any valid one, the first valid
    # In-Reply-To id is the only reference.
    refs = _msg_ids(first.get(b"references", b""))
    if not refs:
        refs = _msg_ids(first.get(b"in-reply-to", b""))[:1]
    date = parse_date(first[b"date"]) if b"date" in first else None
    try:
        sent = date.timestamp() if date is not None else None
    except (OverflowError, ValueError, OSError):
        sent = None
    return SortKeys(base, reply, from_mailbox, from_display, to_mailbox, to_display, cc_mailbox,
                    ids[0] if ids else "", tuple(refs), sent)
