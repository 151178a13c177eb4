"""UIDBATCHES (RFC 10022): UID ranges that split the selected mailbox into batches of a given
number of messages, so a client can FETCH, SEARCH or STORE one batch at a time.

Batch 1 holds the newest messages. The ranges tile the UID space with no gaps: each starts one
below the previous one's lowest UID and the oldest reaches down to UID 1, so a message that
arrives below a range later still falls into one. The messages are those this session knows
(its sequence-number map), as for SEARCH.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.responses import Code
from .errors import BadRequest, Refused

if TYPE_CHECKING:
    from .session import Session

__all__ = ["do_uidbatches", "batch_ranges", "MIN_BATCH_SIZE", "MAX_BATCHES"]

MIN_BATCH_SIZE = 500  # smaller batches are refused with TOOFEW (RFC 10022's minimum)
MAX_BATCHES = 1000    # ranges in one response; past it TOOMANY


async def do_uidbatches(s: Session, tag: bytes, cmd: c.UidBatches) -> bytes:
    assert s.selected is not None
    if cmd.size < MIN_BATCH_SIZE:
        raise Refused(f"Batches must have at least {MIN_BATCH_SIZE} messages", Code.TOOFEW)
    first, last = cmd.batches or (1, None)
    if last is not None and first > last:
        raise BadRequest("The batch range must go from the lower number to the higher", Code.CLIENTBUG)
    uids = s.selected.uids
    total = -(-len(uids) // cmd.size)
    if (last if last is not None else total) - first + 1 > MAX_BATCHES:
        raise Refused(f"At most {MAX_BATCHES} batches per UIDBATCHES", Code.TOOMANY)
    s.send(r.uidbatches(tag, batch_ranges(uids, cmd.size, first, last)))
    return r.ok(tag, "UIDBATCHES completed")


def batch_ranges(uids: Sequence[int], size: int, first: int = 1,
                 last: int | None = None) -> list[tuple[int, int]]:
    """(high, low) of batches ``first`` to ``last`` (1 = the newest) of ``uids`` (ascending)."""
    n = len(uids)
    total = -(-n // size)
    last = total if last is None else min(last, total)
    out = []
    for batch in range(first, last + 1):
        top = n - (batch - 1) * size  # one past the batch's newest message
        bottom = top - size
        high = uids[n - 1] if batch == 1 else uids[top] - 1
        low = 1 if bottom <= 0 else uids[bottom]
        out.append((high, low))
    return out
