"""IMAP ENVELOPE / BODYSTRUCTURE / BODY wire formats (RFC 9051 sections 7.5.2 and 9).

All functions return ``bytes`` ready to splice into a FETCH response.  Header values are sent
raw (RFC 2047 encoded-words left as-is); 8-bit text is sent as a literal.
"""

from __future__ import annotations

import re

from .headers import decode_header_value, field_map, split_fields
from .imapstring import NIL, nstring, string
from .mime import Part

MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"

# ---------------------------------------------------------------- address-list parsing ----

# Token kinds (_COMMENT only when asked for: its value is the comment's text)
_ATOM, _QS, _DLIT, _SPECIAL, _COMMENT = 0, 1, 2, 3, 4
_SPECIALS = frozenset(b"<>@,;:.")
_ATOM_RE = re.compile(rb'[^<>@,;:."\[( \t\r\n]+')
_WS_RE = re.compile(rb"[ \t\r\n]+")


def _tokenize(s: bytes, comments: bool = False) -> list[tuple[int, bytes, bytes, bool]]:
    """(kind, value, raw, whitespace-or-comment-before) tokens of an RFC 5322 address list.

    Comments are skipped (nesting handled) or, with ``comments``, returned as _COMMENT tokens
    whose value is the text inside the outer parentheses (quoted pairs undone); unterminated
    constructs run to the end.
    """
    toks: list[tuple[int, bytes, bytes, bool]] = []
    i, n = 0, len(s)
    space = False
    while i < n:
        c = s[i]
        if c in b" \t\r\n":
            space = True
            i = _WS_RE.match(s, i).end()  # type: ignore[union-attr]
        elif c == 0x28:  # "(" comment, nestable, quoted-pair aware
            depth = 0
            start = i
            text = bytearray()
            while i < n:
                c = s[i]
                if c == 0x5C:
                    text += s[i + 1 : i + 2]
                    i += 2
                    continue
                if c == 0x28:
                    depth += 1
                    if depth > 1:
                        text.append(c)
                elif c == 0x29:
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                    text.append(c)
                else:
                    text.append(c)
                i += 1
            if comments:
                toks.append((_COMMENT, bytes(text), s[start:i], space))
            space = True
        elif c == 0x22:  # quoted-string
            j = i + 1
            buf = bytearray()
            while j < n and s[j] != 0x22:
                if s[j] == 0x5C and j + 1 < n:
                    j += 1
                buf.append(s[j])
                j += 1
            j = min(j + 1, n)
            toks.append((_QS, bytes(buf), s[i:j], space))
            space = False
            i = j
        elif c == 0x5B:  # domain literal
            j = s.find(b"]", i)
            j = n if j < 0 else j + 1
            toks.append((_DLIT, s[i:j], s[i:j], space))
            space = False
            i = j
        elif c in _SPECIALS:
            toks.append((_SPECIAL, s[i : i + 1], s[i : i + 1], space))
            space = False
            i += 1
        else:
            m = _ATOM_RE.match(s, i)
            j = m.end() if m else i + 1
            toks.append((_ATOM, s[i:j], s[i:j], space))
            space = False
            i = j
    return toks


def _phrase(toks: list[tuple[int, bytes, bytes, bool]]) -> bytes | None:
    out = bytearray()
    for k, (_kind, value, _raw, sp) in enumerate(toks):
        if k and sp:
            out += b" "
        out += value
    return bytes(out) if out else None


def _addr_spec(toks: list[tuple[int, bytes, bytes, bool]]) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(adl, local, domain) from the tokens of ``[route:] local@domain`` (raw spelling kept)."""
    adl = None
    # obs-route: "@a,@b:" before the addr-spec
    if toks and toks[0][1] == b"@":
        for idx, t in enumerate(toks):
            if t[0] == _SPECIAL and t[1] == b":":
                adl = b"".join(x[2] for x in toks[:idx])
                toks = toks[idx + 1 :]
                break
    at = -1
    for idx in range(len(toks) - 1, -1, -1):
        if toks[idx][0] == _SPECIAL and toks[idx][1] == b"@":
            at = idx
            break
    if at < 0:
        local = b"".join(t[2] for t in toks)
        return adl, local or None, None
    local = b"".join(t[2] for t in toks[:at])
    domain = b"".join(t[2] for t in toks[at + 1 :])
    return adl, local or None, domain or None


Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


def parse_address_list(value: bytes) -> list[Address]:
    """RFC 5322 address-list -> IMAP address tuples (name, adl, mailbox, host).

    Group syntax is returned as RFC 9051 markers: start ``(None, None, group-name, None)``,
    end ``(None, None, None, None)``.  Lenient: never raises.
    """
    toks = _tokenize(value, comments=True)
    out: list[Address] = []
    words: list[tuple[int, bytes, bytes, bool]] = []
    # Comments after a bare addr-spec: the legacy form ``user@domain (Real Name)`` (RFC 5322
    # 3.4 / RFC 822 practice) names the person in a comment; every major server returns it
    # as the personal name. A comment inside the addr-spec (``u(c)@h``) is no name.
    notes: list[tuple[int, bytes]] = []
    angle: list[tuple[int, bytes, bytes, bool]] | None = None
    phrase: list[tuple[int, bytes, bytes, bool]] = []
    in_group = False

    def flush() -> None:
        nonlocal words, angle, phrase, notes
        if angle is not None:
            adl, local, domain = _addr_spec(angle)
            name = _phrase(phrase)
            if local or domain or name:
                out.append((name, adl, local or MISSING_MAILBOX, domain or MISSING_DOMAIN))
        elif words:
            adl, local, domain = _addr_spec(words)
            if local or domain:
                trailing = [x for k, x in notes if k == len(words)]  # not "u(c)@h"
                note = b" ".join(_WS_RE.sub(b" ", x).strip() for x in trailing).strip() or None
                out.append((note, adl, local or MISSING_MAILBOX, domain or MISSING_DOMAIN))
        words, angle, phrase, notes = [], None, [], []

    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        kind, val = t[0], t[1]
        if kind == _COMMENT:
            if angle is None:
                notes.append((len(words), val))
            i += 1
            continue
        if kind == _SPECIAL and val == b"<":
            phrase = words
            words = []
            j = i + 1
            inner = []
            while j < n and not (toks[j][0] == _SPECIAL and toks[j][1] == b">"):
                if toks[j][0] != _COMMENT:
                    inner.append(toks[j])
                j += 1
            angle = inner
            i = j + 1
            continue
        if kind == _SPECIAL and val == b":" and angle is None and not in_group:
            # A ':' after a leading '@' is an obs-route inside a bare addr-spec; otherwise a group.
            if not (words and words[0][1] == b"@"):
                out.append((None, None, _phrase(words) or b"", None))
                words = []
                in_group = True
                i += 1
                continue
        if kind == _SPECIAL and val == b";":
            flush()
            if in_group:
                out.append((None, None, None, None))
                in_group = False
            i += 1
            continue
        if kind == _SPECIAL and val == b",":
            flush()
            i += 1
            continue
        if angle is not None:
            i += 1  # junk after "<...>" is ignored
            continue
        words.append(t)
        i += 1
    flush()
    if in_group:
        out.append((None, None, None, None))
    return out


def address_text(value: bytes) -> str:
    """The addresses of an address-list header as ENVELOPE sees them, written out for SEARCH
    FROM/TO/CC/BCC (RFC 9051 6.4.4: "the envelope structure's FROM field"): comments and
    source routes removed, each ``Name <mailbox@host>`` or ``mailbox@host`` (the name RFC
    2047-decoded), joined by ", "; group names are kept as words. What Dovecot matches too."""
    out: list[str] = []
    for name, _adl, mailbox, host in parse_address_list(value):
        if host is None:
            if mailbox is not None:  # a group's start: its display name
                out.append(decode_header_value(mailbox))
            continue
        local = "" if mailbox in (None, MISSING_MAILBOX) else mailbox.decode("utf-8", "replace")
        domain = "" if host == MISSING_DOMAIN else host.decode("utf-8", "replace")
        addr = f"{local}@{domain}" if local and domain else local or domain
        if name:
            out.append(f"{decode_header_value(name)} <{addr}>")
        elif addr:
            out.append(addr)
    return ", ".join(out)


def _addr_list(value: bytes | None) -> bytes:
    if value is None:
        return NIL
    addrs = parse_address_list(value)
    if not addrs:
        return NIL
    return b"(" + b"".join(
        b"(" + b" ".join(nstring(x) for x in a) + b")" for a in addrs
    ) + b")"


# -------------------------------------------------------------------------- ENVELOPE ----

def envelope_from_header(raw: bytes, start: int, end: int) -> bytes:
    """ENVELOPE for the message whose header block is raw[start:end]."""
    fm = field_map(raw, split_fields(raw, start, end))

    def ns(name: bytes) -> bytes:
        v = fm.get(name)
        return nstring(v) if v else NIL

    frm = _addr_list(fm.get(b"from"))
    sender = _addr_list(fm.get(b"sender"))
    reply_to = _addr_list(fm.get(b"reply-to"))
    # RFC 9051 7.5.2: absent or empty Sender / Reply-To take the value of From.
    if sender == NIL:
        sender = frm
    if reply_to == NIL:
        reply_to = frm
    return b"(" + b" ".join(
        [
            ns(b"date"),
            ns(b"subject"),
            frm,
            sender,
            reply_to,
            _addr_list(fm.get(b"to")),
            _addr_list(fm.get(b"cc")),
            _addr_list(fm.get(b"bcc")),
            ns(b"in-reply-to"),
            ns(b"message-id"),
        ]
    ) + b")"


def envelope(raw: bytes, message: Part) -> bytes:
    """ENVELOPE of ``message`` (the tree root, or ``part.message`` of a message/rfc822 part)."""
    return envelope_from_header(raw, message.header_start, message.body_start)


# --------------------------------------------------------------------- BODYSTRUCTURE ----

def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _params(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return NIL
    return b"(" + b" ".join(string(_b(k.upper())) + b" " + string(_b(v)) for k, v in params) + b")"


def _part_params(part: Part) -> list[tuple[str, str]]:
    params = part.params
    if part.type == "text" and part.param("charset") is None:
        # RFC 2045 5.2 / RFC 2046 4.1.2: text defaults to charset us-ascii.
        params = [("charset", "US-ASCII"), *params]
    return params


def _nstr(s: str | None) -> bytes:
    return NIL if s is None else string(_b(s))


def _dsp(part: Part) -> bytes:
    d = part.disposition
    if d is None:
        return NIL
    return b"(" + string(_b(d[0].upper())) + b" " + _params(d[1]) + b")"


def _lang(part: Part) -> bytes:
    lang = part.language
    if not lang:
        return NIL
    if len(lang) == 1:
        return string(_b(lang[0]))
    return b"(" + b" ".join(string(_b(x)) for x in lang) + b")"


def _body(raw: bytes, part: Part, ext: bool, out: list[bytes]) -> None:
    """Append the ``body`` production for ``part`` to ``out``.  Recursion depth is bounded by
    the parser's MAX_DEPTH (deeper structures were made opaque leaves)."""
    if part.type == "multipart" and part.children:
        out.append(b"(")
        for child in part.children:  # 1*body with no separator (RFC 9051 body-type-mpart)
            _body(raw, child, ext, out)
        out.append(b" " + string(_b(part.subtype.upper())))
        if ext:  # body-ext-mpart
            out.append(b" " + _params(part.params) + b" " + _dsp(part) + b" " + _lang(part)
                       + b" " + _nstr(part.location))
        out.append(b")")
        return
    typ, sub = part.type, part.subtype
    if typ == "multipart":  # defensive: a childless multipart cannot be expressed
        typ, sub = "application", "octet-stream"
    enc = (part.encoding or "7bit").upper()
    fields = b" ".join([
        _params(_part_params(part) if typ == part.type else part.params),
        _nstr(part.id),
        _nstr(part.description),
        string(_b(enc)),
        b"%d" % part.size,
    ])
    out.append(b"(" + string(_b(typ.upper())) + b" " + string(_b(sub.upper())) + b" " + fields)
    if part.message is not None:
        out.append(b" " + envelope(raw, part.message) + b" ")
        _body(raw, part.message, ext, out)
        out.append(b" %d" % (part.lines or 0))
    elif typ == "text":
        out.append(b" %d" % (part.lines or 0))
    if ext:  # body-ext-1part
        out.append(b" " + _nstr(part.md5) + b" " + _dsp(part) + b" " + _lang(part)
                   + b" " + _nstr(part.location))
    out.append(b")")


def bodystructure(raw: bytes, part: Part, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (``extensible=True``) or BODY (``False``) of ``part`` (normally the root)."""
    out: list[bytes] = []
    _body(raw, part, extensible, out)
    return b"".join(out)


def body(raw: bytes, part: Part) -> bytes:
    """Non-extensible BODY form."""
    return bodystructure(raw, part, extensible=False)
