"""Per-user connection limits decided at login (the per-address limits are servers/listener.py's).

``limits.max_connections_per_user_ip`` (Dovecot's ``mail_max_userip_connections``, 10): how many
sessions of one protocol one account may have open from one client address. A client that
leaks connections, or a misconfigured device that opens one per folder, is stopped at its own
user; other users behind the same NAT address are not affected (the per-address limit,
``max_connections_per_ip``, is a much larger backstop). The count is the session registry's,
which spans every worker process. POP3 needs no such limit: its maildrop lock already allows
one session per account.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def user_ip_refusal(sessions: Any, limits: Any, account: Any, protocol: str, remote_ip: str) -> str | None:
    """The text to refuse this login with, or None when it may go ahead. A refusal is logged
    with the limit that caused it."""
    limit = limits.max_connections_per_user_ip
    if limit <= 0:
        return None
    open_now = sum(1 for s in sessions.for_account(account.id) if s.protocol == protocol and s.remote == remote_ip)
    if open_now < limit:
        return None
    log.warning("%s login of %s from %s refused: limits.max_connections_per_user_ip = %d reached",
                protocol.upper(), account.address, remote_ip, limit)
    return (f"Too many {protocol.upper()} connections for {account.address} from your address "
            f"(the limit is {limit}); close some and try again")
