"""Email address parsing and normalisation for routing (RFC 5321 / 5322 addr-spec, RFC 6531).

THE normalisation policy (the one place it is defined; every lookup of accounts, aliases and
domains, every login name and every address created by the CLI, the panel or the API goes
through :func:`normalize_address` / :func:`normalize_domain`):

* domain: IDNA 2008 with UTS #46 mapping -> lower-case A-labels (``bücher.example`` ->
  ``xn--bcher-kva.example``), trailing dot dropped; an address literal ``[1.2.3.4]`` is kept
  (lower-cased).
* local part: PRECIS UsernameCaseMapped (RFC 8265 §3.3) without its width mapping: the
  characters are checked first, then lower-cased (``str.lower``, Unicode toLowerCase) and put
  in NFC. ASCII local parts are therefore case-insensitive (``Alice`` = ``alice``), and a
  Unicode local part is compared in NFC after lower-casing (``JOSÉ`` = ``josé``; NFD input from
  a Mac equals NFC input).  No character is *folded onto another*: ``ß`` stays ``ß``.
* refused in a local part (:class:`InvalidAddress`, so such an address can be neither created
  nor looked up, and never reaches another mailbox):
  - controls, format and invisible characters, unassigned code points and any space but the
    ASCII one inside a quoted local part (categories Cc, Cf, Cs, Co, Cn, Zs, Zl, Zp:
    U+200B ZERO WIDTH SPACE, U+00AD SOFT HYPHEN, U+202E RIGHT-TO-LEFT OVERRIDE, U+0085 NEL);
  - compatibility characters, those NFKC would replace (PRECIS "HasCompat", RFC 8264 §9.17):
    ``ſ`` (long s), ``ﬃ``, the Kelvin sign, fullwidth ``ｕｓｅｒ``, circled and superscript
    letters.  ``casefold()`` (this module's rule before issue #12) mapped ``uſer`` onto ``user``
    and ``\u212aen`` onto ``ken``: mail for a look-alike landed in the real mailbox.
  PRECIS maps fullwidth to ASCII instead; we refuse, which keeps look-alikes out entirely.
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
    "local_part_problem",
    "normalize_address",
    "base_local_part",
    "split_plus",
    "is_valid_address",
]


class InvalidAddress(ValueError):
    """Not a syntactically valid addr-spec, or one our policy refuses; ``reason`` says why
    in words fit for a form field ("" when it is plain bad syntax)."""

    def __init__(self, address: str, reason: str = "") -> None:
        super().__init__(address)
        self.address = address
        self.reason = reason


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


#: Unicode general categories never allowed in a local part (see the module policy).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def local_part_problem(text: str, *, quoted: bool = False) -> str:
    """Why ``text`` (a local part, unquoted) may not name a mailbox here, or "" if it may.

    The ASCII space is allowed only inside a quoted local part (RFC 5321 qtextSMTP)."""
    if text.isascii():
        for ch in text:
            if ord(ch) < 0x20 or ch == "\x7f" or (ch == " " and not quoted):
                return f"it contains the control or space character U+{ord(ch):04X}"
        return ""
    for ch in text:
        if ch == " " and quoted:
            continue
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES:
            name = unicodedata.name(ch, "")
            named = f" ({name})" if name else ""
            return f"it contains the invisible, space or control character U+{ord(ch):04X}{named}"
        if ch >= "\x80" and unicodedata.normalize("NFKC", ch) != ch:
            name = unicodedata.name(ch, "?")
            return (f"it contains U+{ord(ch):04X} ({name}), a compatibility form of "
                    f"{unicodedata.normalize('NFKC', ch)!r}; use the plain character")
    return ""


def normalize_local_part(local: str) -> str:
    """Checked, lower-cased, NFC (see the module policy); dot-atom content of a quoted local
    part is unquoted. Raises :class:`InvalidAddress` for a refused character."""
    inner = _unquote(local)
    text = inner if inner is not None else local
    problem = local_part_problem(text, quoted=inner is not None)
    if problem:
        raise InvalidAddress(local, problem)
    if text.isascii():
        mapped = text.lower()
    else:
        # RFC 8265 §3.3.2: case mapping, then NFC. Lower-casing an allowed character never
        # yields a refused one or plain ASCII (U+0130 gives "i" + U+0307, still distinct);
        # checked once more all the same (RFC 8264 §7: the rules apply after the mappings).
        mapped = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).lower())
        problem = local_part_problem(mapped, quoted=inner is not None)
        if problem:
            raise InvalidAddress(local, problem)
    if inner is None or _DOT_ATOM.fullmatch(mapped):
        return mapped
    return '"' + re.sub(r'(["\\])', r"\\\1", mapped) + '"'


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
