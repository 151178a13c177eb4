"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 section 4): PARTIAL windows, the CONTEXT hint,
and UPDATE -- searches whose result the server keeps current with ESEARCH ADDTO/REMOVEFROM
until CANCELUPDATE or the mailbox is closed.

A context remembers its search key (and sort criteria) and its result as UIDs, in result
order (mailbox order for SEARCH, the sort order for SORT). ``Session.sync`` calls
:func:`updates` whenever it runs with contexts open; when the mailbox changed since the
context was last evaluated (new messages, flag changes by anyone, expunges), the search runs
again over the session's view and the difference is sent:

* REMOVEFROM first, numbered as the client knew the mailbox before this sync's EXPUNGEs
  (section 4.3.4: it must precede the expunge notification), ADDTO last, after EXISTS
  (section 4.3.3);
* SEARCH contexts use context position 0 and a set in mailbox order (sections 4.3.3/4.3.4);
  SORT contexts give positions: removals from the highest position down, so each pair is
  valid when applied in order, additions in ascending position of the new order. Sort keys
  never change for a message, so survivors keep their relative order.

Tags: an UPDATE search whose tag is already in use by a live context is BAD (section 4.3);
past ``MAX_CONTEXTS`` a search still completes but its UPDATE is refused with
``* NO [NOUPDATE "tag"]`` (section 4.3.1; at least one context per client is guaranteed).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.grammar.sequence_set import compress_uids
from ...protocols.imap.responses import Code
from .errors import BadRequest

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Context", "MAX_CONTEXTS", "check_tag", "window", "register", "updates", "do_cancelupdate"]

MAX_CONTEXTS = 16


@dataclass(slots=True)
class Context:
    tag: bytes
    uid: bool
    key: Any
    criteria: tuple[Any, ...] | None  # None: a SEARCH context (mailbox order)
    results: list[int]                # UIDs in result order
    state: tuple[int, ...] = field(default=())  # the mailbox state the results reflect


def window(numbers: Sequence[int], partial: tuple[int, int] | None) -> list[int]:
    """The PARTIAL lo:hi slice of a result (1-based, inclusive; RFC 5267 section 4.4): what
    exists of it, possibly nothing."""
    if partial is None:
        return list(numbers)
    lo, hi = partial
    return list(numbers[lo - 1:hi])


def result(tag: bytes, uid: bool, options: Sequence[str], numbers: Sequence[int], modseq: int | None,
           partial: tuple[int, int] | None, ordered: bool = False) -> bytes:
    """The ESEARCH answer of a SEARCH or SORT with RETURN options (RFC 4731 section 3.1,
    RFC 5267 sections 3.1 and 4.4): ``numbers`` in the order they are reported."""
    return r.esearch(
        tag, uid=uid,
        min=numbers[0] if numbers and "MIN" in options else None,
        max=numbers[-1] if numbers and "MAX" in options else None,
        all=numbers if numbers and "ALL" in options else None,
        count=len(numbers) if "COUNT" in options else None,
        modseq=modseq, ordered=ordered,
        partial=(partial, window(numbers, partial)) if partial else None,
    )


def check_tag(s: Session, tag: bytes, options: Sequence[str] | None) -> None:
    """Refuse an UPDATE search whose tag a live context already uses (section 4.3: BAD)."""
    if options and "UPDATE" in options and s.contexts and tag in s.contexts:
        raise BadRequest("Tag reuse: a search with this tag is still being updated")


def _state(s: Session) -> tuple[int, ...]:
    view = s.selected
    assert view is not None
    index = view.index
    return (index.highestmodseq, len(index.uids), index.removals, len(view.uids),
            view.uids[-1] if view.uids else 0)


def register(s: Session, tag: bytes, uid: bool, key: Any, criteria: tuple[Any, ...] | None,
             results: list[int]) -> None:
    """Open an UPDATE context for the search just answered (``results``: UIDs in order)."""
    if s.contexts is None:
        s.contexts = {}
    if len(s.contexts) >= MAX_CONTEXTS:
        s.send(r.untagged_no("Too many updating searches; this one will not be updated",
                             Code.noupdate(tag)))
        return
    s.contexts[tag] = Context(tag, uid, key, criteria, list(results), _state(s))


async def _evaluate(s: Session, ctx: Context) -> list[int]:
    from .sort import matches, sorted_uids

    view = s.selected
    assert view is not None
    seqs, _ = await matches(s, view, ctx.key)
    if ctx.criteria is None:
        return [view.uids[n - 1] for n in seqs]
    return await sorted_uids(s, view, seqs, ctx.criteria)


def _seq(uids: Sequence[int], uid: int) -> int:
    i = bisect_left(uids, uid)
    return i + 1 if i < len(uids) and uids[i] == uid else 0


async def updates(s: Session, before: Sequence[int]) -> tuple[list[bytes], list[bytes]]:
    """(REMOVEFROM lines, ADDTO lines) for every context whose result changed. ``before`` is
    the view's UID list as the client knew it before this sync (for REMOVEFROM numbers)."""
    view = s.selected
    if not s.contexts or view is None:
        return [], []
    state = _state(s)
    pre: list[bytes] = []
    post: list[bytes] = []
    for ctx in list(s.contexts.values()):
        if ctx.state == state:
            continue
        new = await _evaluate(s, ctx)
        ctx.state = state
        old = ctx.results
        if new == old:
            continue
        ctx.results = new
        new_set, old_set = set(new), set(old)
        removed = [(pos, u) for pos, u in enumerate(old, 1) if u not in new_set]
        added = [(pos, u) for pos, u in enumerate(new, 1) if u not in old_set]
        if removed:
            number = (lambda u: u) if ctx.uid else (lambda u: _seq(before, u))
            if ctx.criteria is None:
                pairs = [(0, compress_uids(number(u) for _, u in removed))]
            else:
                pairs = [(pos, b"%d" % number(u)) for pos, u in reversed(removed)]
            pre.append(r.esearch_update(ctx.tag, uid=ctx.uid, items=[(b"REMOVEFROM", pairs)]))
        if added:
            number = (lambda u: u) if ctx.uid else view.seq_of
            if ctx.criteria is None:
                pairs = [(0, compress_uids(number(u) for _, u in added))]
            else:
                pairs = [(pos, b"%d" % number(u)) for pos, u in added]
            post.append(r.esearch_update(ctx.tag, uid=ctx.uid, items=[(b"ADDTO", pairs)]))
    return pre, post


async def do_cancelupdate(s: Session, tag: bytes, cmd: c.CancelUpdate) -> bytes:
    """CANCELUPDATE "tag"... (section 4.3.5): no more updates for those contexts. A tag
    without a context (already cancelled, or never updating) is ignored."""
    if s.contexts:
        for t in cmd.tags:
            s.contexts.pop(t, None)
    return r.ok(tag, "CANCELUPDATE completed")
