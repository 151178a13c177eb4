"""Email address parsing and normalisation for routing (RFC 5321 / 5322 addr-spec, RFC 6531).

THE normalisation policy (the one place it is defined; every lookup of accounts, aliases and
domains must go through :func:`normalize_address` / :func:`normalize_domain`):

* domain: IDNA 2008 with UTS #46 mapping -> lower-case A-labels (``bücher.example`` ->
  ``xn--bcher-kva.example``), trailing dot dropped; an address literal ``[1.2.3.4]`` is kept
  (lower-cased).
* local part: Unicode NFC, then ``str.casefold()`` (so ``ß`` -> ``ss``, Kelvin sign -> ``k``,
  ``İ`` -> ``i̇``), then NFC again.  Two spellings that fold together are *the same* mailbox,
  which means two distinct accounts can never collide: the second one is a duplicate.
* a quoted local part whose content is a valid dot-atom is unquoted (RFC 5321 4.1.2 treats
  them as equal); otherwise it stays quoted with minimal escaping.
* plus-addressing: ``user+tag`` routes to ``user`` (:func:`base_local_part`); normalisation
  itself keeps the tag.
"""

from __future__ import annotations

import re
import unicodedata

import idna

__all__ = [
    "InvalidAddress",
    "split_address",
    "normalize_domain",
    "normalize_local_part",
    "normalize_address",
    "base_local_part",
    "split_plus",
    "is_valid_address",
]


class InvalidAddress(ValueError):
    """Not a syntactically valid addr-spec."""


# atext (RFC 5322 3.2.3) plus UTF8-non-ascii (RFC 6532 3.2)
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_ASCII_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
# qtext / quoted-pair content of a quoted-string (no CR, LF, NUL)
_QCONTENT = re.compile(r'"((?:[^"\\\r\n\x00]|\\[^\r\n\x00])*)"')
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ADDR_LITERAL = re.compile(r"\[[^\[\]\\\s]+\]")


def split_address(addr: str) -> tuple[str, str]:
    """``local@domain`` -> (local, domain), split at the last ``@`` outside quotes.

    Angle brackets around the address are stripped.  Raises :class:`InvalidAddress`.
    """
    a = addr.strip()
    if a.startswith("<") and a.endswith(">"):
        a = a[1:-1].strip()
    at = a.rfind("@")
    if at <= 0 or at == len(a) - 1:
        raise InvalidAddress(addr)
    return a[:at], a[at + 1 :]


def _unquote(local: str) -> str | None:
    m = _QCONTENT.fullmatch(local)
    if not m:
        return None
    return re.sub(r"\\(.)", r"\1", m.group(1))


def _valid_local(local: str, smtputf8: bool) -> bool:
    if not local or len(local.encode("utf-8")) > 64:
        return False
    pattern = _DOT_ATOM if smtputf8 else _ASCII_DOT_ATOM
    if pattern.fullmatch(local):
        return True
    if _QCONTENT.fullmatch(local):
        return smtputf8 or local.isascii()
    return False


def normalize_domain(domain: str) -> str:
    """Lower-case A-label form of ``domain`` (see module policy).  Raises InvalidAddress."""
    d = domain.strip()
    if d.endswith("."):
        d = d[:-1]
    if not d:
        raise InvalidAddress(domain)
    if d.startswith("["):
        if not _ADDR_LITERAL.fullmatch(d):
            raise InvalidAddress(domain)
        return d.lower()
    try:
        if d.isascii():
            a = d.lower()
            if "xn--" in a:
                idna.decode(a)  # validates existing A-labels
        else:
            a = idna.encode(d, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise InvalidAddress(domain) from exc
    labels = a.split(".")
    if len(a) > 253 or not all(_LDH_LABEL.fullmatch(lbl) for lbl in labels):
        raise InvalidAddress(domain)
    return a


def normalize_local_part(local: str) -> str:
    """NFC + casefold + NFC; dot-atom content of a quoted local part is unquoted."""
    inner = _unquote(local)
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", inner if inner is not None else local).casefold())
    if inner is None or _DOT_ATOM.fullmatch(folded):
        return folded
    return '"' + re.sub(r'(["\\])', r"\\\1", folded) + '"'


def normalize_address(addr: str) -> str:
    """The canonical routing key ``local@domain`` for ``addr`` (see module policy).

    Raises :class:`InvalidAddress` for anything that is not a valid addr-spec.
    """
    local, domain = split_address(addr)
    if not _valid_local(local, smtputf8=True):
        raise InvalidAddress(addr)
    return normalize_local_part(local) + "@" + normalize_domain(domain)


def split_plus(local: str, separator: str = "+") -> tuple[str, str | None]:
    """``user+tag`` -> (``user``, ``tag``); (``local``, None) without a tag.  A local part that
    starts with the separator is not split (``+foo`` stays whole)."""
    i = local.find(separator)
    if i <= 0:
        return local, None
    return local[:i], local[i + len(separator) :]


def base_local_part(local: str, separator: str = "+") -> str:
    """Local part without its plus-address tag: ``base_local_part("user+tag") == "user"``."""
    return split_plus(local, separator)[0]


def is_valid_address(addr: str, smtputf8: bool = True) -> bool:
    """True for a syntactically valid addr-spec (dot-atom or quoted local part; UTF-8 only
    when ``smtputf8``); the domain must survive IDNA normalisation."""
    try:
        local, domain = split_address(addr)
    except InvalidAddress:
        return False
    if len(addr.strip().strip("<>").encode("utf-8")) > 254:
        return False
    if not _valid_local(local, smtputf8):
        return False
    if not smtputf8 and not domain.isascii():
        return False
    try:
        normalize_domain(domain)
    except InvalidAddress:
        return False
    return True
