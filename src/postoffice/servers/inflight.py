"""The in-flight byte budget: octets of messages being received, across every connection.

Without it, memory (IMAP literals are held in memory until the APPEND is stored) and the SMTP
spool grow with the number of clients uploading at once. Each server process has one budget
(``limits.max_inflight_bytes`` divided among the worker processes); SMTP reserves DATA/BDAT
octets as they arrive (and checks a SIZE= announcement up front), IMAP the announced size of
each literal before it is read. When a reservation does not fit, the transfer is refused with a
temporary error - SMTP ``452 4.3.1``, IMAP ``NO [LIMIT]`` - and the session goes on; the octets
are given back when the message has been stored or refused.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

#: At most one warning per this many seconds while refusals go on.
LOG_EVERY = 10.0


class InflightBudget:
    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self.used = 0
        self.refused = 0  # reservations refused so far (metrics, tests)
        self._logged = -LOG_EVERY
        self._unlogged = 0

    @property
    def available(self) -> int:
        return max(0, self.limit - self.used)

    def fits(self, octets: int) -> bool:
        return self.used + octets <= self.limit

    def reserve(self, octets: int, who: str = "") -> bool:
        """Take ``octets`` from the budget; False (and nothing taken) when they do not fit."""
        if octets <= 0:
            return True
        if self.used + octets > self.limit:
            self.refuse(octets, who)
            return False
        self.used += octets
        return True

    def release(self, octets: int) -> None:
        self.used = max(0, self.used - octets)

    def refuse(self, octets: int, who: str) -> None:
        """Count (and log, at most every LOG_EVERY seconds) a transfer refused for want of room."""
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY:
            log.warning("in-flight budget exhausted (limits.max_inflight_bytes: %d of %d octets in use): "
                        "refused %d octets from %s (%d refusals since the last report)",
                        self.used, self.limit, octets, who or "a client", self._unlogged)
            self._logged = now
            self._unlogged = 0


__all__ = ["InflightBudget"]
