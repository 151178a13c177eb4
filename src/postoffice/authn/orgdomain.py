"""Organizational domain (RFC 7489 3.2) from the Public Suffix List.

The list is read from ``/usr/share/publicsuffix/public_suffix_list.dat`` (Debian's
``publicsuffix`` package) or from a path given to :func:`load_public_suffix_list`. When no list
file is available we fall back to a heuristic: the last two labels, or three when the last two
form a well-known two-level public suffix (``co.uk``, ``com.au``, ...). The heuristic is wrong for
many private registries (``github.io``, ``blogspot.com``) and rare ccTLD structures; relaxed
DMARC alignment is then looser or stricter than intended for those domains.
"""

from __future__ import annotations

import functools
import os

__all__ = ["organizational_domain", "load_public_suffix_list", "PSL_PATHS"]

PSL_PATHS = (
    "/usr/share/publicsuffix/public_suffix_list.dat",
    "/usr/share/publicsuffix/effective_tld_names.dat",
)

_TWO_LEVEL_SUFFIXES = frozenset(
    """co.uk org.uk ac.uk gov.uk me.uk net.uk ltd.uk plc.uk sch.uk nhs.uk
    com.au net.au org.au edu.au gov.au asn.au id.au co.nz org.nz net.nz ac.nz govt.nz
    co.jp ne.jp or.jp ac.jp go.jp co.kr or.kr ac.kr go.kr com.br net.br org.br gov.br
    com.cn net.cn org.cn gov.cn edu.cn com.tw org.tw net.tw edu.tw com.hk org.hk net.hk
    co.in net.in org.in gov.in ac.in firm.in com.mx org.mx gob.mx com.ar gob.ar org.ar
    co.za org.za gov.za ac.za com.sg org.sg edu.sg gov.sg com.my org.my gov.my co.il org.il
    ac.il gov.il com.tr org.tr gov.tr edu.tr co.th ac.th go.th com.ua org.ua gov.ua
    com.pl net.pl org.pl co.id or.id ac.id go.id com.ph org.ph com.vn com.pk com.eg com.sa""".split()
)


class _PSL:
    def __init__(self, lines: list[str]) -> None:
        self.rules: set[str] = set()
        self.wildcards: set[str] = set()
        self.exceptions: set[str] = set()
        for raw in lines:
            line = raw.strip().split(" ")[0] if raw.strip() else ""
            if not line or line.startswith("//"):
                continue
            line = line.lower()
            try:
                line = ".".join(
                    lab.encode("idna").decode("ascii") if not lab.isascii() else lab
                    for lab in line.split(".")
                )
            except UnicodeError:
                continue
            if line.startswith("!"):
                self.exceptions.add(line[1:])
            elif line.startswith("*."):
                self.wildcards.add(line[2:])
            else:
                self.rules.add(line)

    def public_suffix_len(self, labels: list[str]) -> int:
        """Number of rightmost labels forming the public suffix (PSL algorithm)."""
        best = 1  # the implicit "*" rule
        n = len(labels)
        for i in range(n):
            cand = ".".join(labels[i:])
            size = n - i
            if cand in self.exceptions:
                return size - 1  # exception rules win, minus their leftmost label
            if cand in self.rules:
                best = max(best, size)
            if i + 1 < n and ".".join(labels[i + 1 :]) in self.wildcards:
                best = max(best, size)
        return best


_psl: _PSL | None = None
_psl_loaded = False


def load_public_suffix_list(path: str | None = None) -> bool:
    """Load the PSL from ``path`` (or the default locations). Returns whether a list is in use."""
    global _psl, _psl_loaded
    candidates = [path] if path else list(PSL_PATHS)
    psl = None
    for p in candidates:
        if p and os.path.exists(p):
            with open(p, encoding="utf-8") as fh:
                psl = _PSL(fh.readlines())
            break
    # Switched in whole once built: the server loads it in a thread at start (parsing the list
    # takes ~100 ms, too long for the event loop) while lookups may already be running.
    _psl = psl
    _psl_loaded = True
    organizational_domain.cache_clear()
    return _psl is not None


@functools.lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (the domain itself if shorter)."""
    if not _psl_loaded:
        load_public_suffix_list()
    d = domain.strip().rstrip(".").lower()
    try:
        d = d.encode("idna").decode("ascii") if not d.isascii() else d
    except UnicodeError:
        pass
    labels = [lab for lab in d.split(".") if lab]
    if not labels:
        return d
    if _psl is not None:
        suffix = _psl.public_suffix_len(labels)
    else:
        suffix = 2 if len(labels) >= 2 and ".".join(labels[-2:]) in _TWO_LEVEL_SUFFIXES else 1
    keep = min(len(labels), suffix + 1)
    return ".".join(labels[-keep:])
