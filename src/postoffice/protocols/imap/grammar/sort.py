"""SORT criteria and THREAD algorithms (RFC 5256 section 5, RFC 5957 section 4)::

    sort            = ["UID" SP] "SORT" SP sort-criteria SP search-criteria
    sort-criteria   = "(" sort-criterion *(SP sort-criterion) ")"
    sort-criterion  = ["REVERSE" SP] sort-key
    sort-key        = "ARRIVAL" / "CC" / "DATE" / "FROM" / "SIZE" / "SUBJECT" / "TO"
    sort-key        =/ "DISPLAYFROM" / "DISPLAYTO"                        ; RFC 5957
    thread          = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
    thread-alg      = "ORDEREDSUBJECT" / "REFERENCES" / thread-alg-ext
    search-criteria = charset 1*(SP search-key)

With ESORT (RFC 5267 section 3) a RETURN list may follow "SORT", as for SEARCH.
"""

from __future__ import annotations

from dataclasses import dataclass

from .reader import Reader

__all__ = ["SortCriterion", "SORT_KEYS", "THREAD_ALGORITHMS", "parse_sort_criteria", "parse_thread_algorithm"]

SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """One sort key, upper-cased (from SORT_KEYS); ``reverse`` for a preceding REVERSE."""

    key: str
    reverse: bool = False


def parse_sort_criteria(r: Reader) -> tuple[SortCriterion, ...]:
    """Consume ``sort-criteria``; an unknown key or a dangling REVERSE is a ParseError."""

    def criterion() -> SortCriterion:
        name = r.upper_atom("a sort key")
        reverse = False
        if name == "REVERSE":
            reverse = True
            r.sp()
            name = r.upper_atom("a sort key after REVERSE")
        if name not in SORT_KEYS:
            raise r.fail(f"unknown sort key {name}")
        return SortCriterion(name, reverse)

    return tuple(r.paren_list(criterion, allow_empty=False, what="sort criteria"))


def parse_thread_algorithm(r: Reader) -> str:
    """Consume ``thread-alg`` (upper-cased); algorithms we do not implement are refused."""
    name = r.upper_atom("a threading algorithm")
    if name not in THREAD_ALGORITHMS:
        raise r.fail(f"unsupported threading algorithm {name}")
    return name
