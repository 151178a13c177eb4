"""Sequence sets (RFC 9051 section 9, RFC 5182 SEARCHRES)::

    seq-number      = nz-number / "*"
    seq-range       = seq-number ":" seq-number
    sequence-set    = (seq-number / seq-range) ["," sequence-set]
    sequence-set    =/ seq-last-command
    seq-last-command = "$"

A :class:`SequenceSet` keeps the ranges as written (``*`` is ``None``) and is
resolved lazily against the current maximum (the number of messages or the
highest UID), so ``1:*`` on a million-message mailbox stays one range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .reader import MAX_NUMBER, ParseError, Reader

__all__ = ["SequenceSet", "parse_sequence_set", "compress_uids"]

_SEQ_RE = re.compile(rb"(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*")


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence set.

    ``items`` holds ``(first, last)`` pairs exactly as written (``None`` stands for
    ``*``; a single number ``n`` is ``(n, n)``). ``saved`` is True for ``$``
    (RFC 5182): the server must substitute the saved search result with
    :meth:`resolve_saved` (or answer BAD/empty when nothing was saved).
    """

    items: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_ints(cls, numbers: Iterable[int]) -> SequenceSet:
        """A compact set covering ``numbers`` (any order, duplicates allowed)."""
        return cls(tuple(_compress(numbers)))

    @classmethod
    def all(cls) -> SequenceSet:
        """``1:*``."""
        return cls(((1, None),))

    @classmethod
    def parse(cls, data: bytes) -> SequenceSet:
        """Parse a standalone sequence set; raises :class:`ParseError`."""
        r = Reader(data)
        value = parse_sequence_set(r)
        if not r.at_end():
            raise ParseError("junk after sequence set", r.pos)
        return value

    def resolve_saved(self, saved: SequenceSet) -> SequenceSet:
        """Replace ``$`` with the saved search result (RFC 5182 section 2.1)."""
        return saved if self.saved else self

    # -- queries --------------------------------------------------------------
    @property
    def uses_star(self) -> bool:
        return any(a is None or b is None for a, b in self.items)

    def ranges(self, star: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ``(low, high)`` ranges with ``*`` = ``star``.

        ``star`` is the highest sequence number / UID in the mailbox (0 when it
        is empty: then any item using ``*`` matches nothing). Note that for
        UIDs ``5:*`` with a highest UID of 3 is ``3:5`` (RFC 9051 6.4.9). Raises
        ``ValueError`` for ``$`` (call :meth:`resolve_saved` first).
        """
        if self.saved:
            raise ValueError("resolve '$' with resolve_saved() first")
        spans = []
        for a, b in self.items:
            if star < 1 and (a is None or b is None):
                continue  # "*" in an empty mailbox matches nothing
            lo = star if a is None else a
            hi = star if b is None else b
            if lo > hi:
                lo, hi = hi, lo  # RFC 9051: "2:4" and "4:2" are equivalent
            if hi < 1:
                continue
            spans.append((max(lo, 1), hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, n: int, star: int) -> bool:
        """Whether ``n`` is in the set, with ``*`` = ``star``."""
        if self.saved:
            raise ValueError("resolve '$' with resolve_saved() first")
        for a, b in self.items:
            if star < 1 and (a is None or b is None):
                continue
            lo = star if a is None else a
            hi = star if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            if lo <= n <= hi:
                return True
        return False

    def iter(self, star: int, limit: int | None = None) -> Iterator[int]:
        """Each member in ascending order, lazily; stops above ``limit`` if given."""
        for lo, hi in self.ranges(star):
            if limit is not None:
                if lo > limit:
                    return
                hi = min(hi, limit)
            yield from range(lo, hi + 1)

    def max_value(self, star: int) -> int:
        """Highest member (0 for an empty resolution). Used to reject sequence
        numbers above EXISTS with BAD (RFC 9051 section 6.4.*)."""
        r = self.ranges(star)
        return r[-1][1] if r else 0

    def count(self, star: int) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges(star))

    def __bytes__(self) -> bytes:
        if self.saved:
            return b"$"
        parts = []
        for a, b in self.items:
            sa = b"*" if a is None else str(a).encode()
            if a == b:
                parts.append(sa)
            else:
                parts.append(sa + b":" + (b"*" if b is None else str(b).encode()))
        return b",".join(parts)

    def __str__(self) -> str:
        return bytes(self).decode("ascii")


def parse_sequence_set(r: Reader, *, allow_saved: bool = True, allow_star: bool = True) -> SequenceSet:
    """Consume a ``sequence-set`` from ``r`` (``$`` only when ``allow_saved``)."""
    if r.peek() == 0x24:  # "$"
        if not allow_saved:
            raise r.fail("'$' is not allowed here")
        r.pos += 1
        return SequenceSet(saved=True)
    m = _SEQ_RE.match(r.data, r.pos, r.end)
    if m is None:
        raise r.fail("expected a sequence set")
    items = []
    for part in m.group().split(b","):
        first, _, last = part.partition(b":")
        a = _seq_number(first, r)
        b = _seq_number(last, r) if last else a
        if not allow_star and (a is None or b is None):
            raise r.fail("'*' is not allowed here")
        items.append((a, b))
    r.pos = m.end()
    return SequenceSet(tuple(items))


def _seq_number(token: bytes, r: Reader) -> int | None:
    if token == b"*":
        return None
    if len(token) > 10 or not 0 < int(token) <= MAX_NUMBER:
        raise r.fail("sequence number must be between 1 and 4294967295")
    return int(token)


def _compress(numbers: Iterable[int]) -> Iterator[tuple[int, int]]:
    it = iter(sorted(set(numbers)))
    for first in it:
        lo = hi = first
        for n in it:
            if n == hi + 1:
                hi = n
            else:
                yield (lo, hi)
                lo = hi = n
        yield (lo, hi)


def compress_uids(numbers: Iterable[int]) -> bytes:
    """``[1,2,3,4,5,7,9,10,11,12]`` -> ``b"1:5,7,9:12"`` (sorts and dedups)."""
    return b",".join(
        b"%d" % lo if lo == hi else b"%d:%d" % (lo, hi) for lo, hi in _compress(numbers)
    )
