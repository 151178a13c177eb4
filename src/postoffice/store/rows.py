"""Shared pieces of the store modules: column lists, row converters, the mixin base."""

from __future__ import annotations

import concurrent.futures
from typing import Any, TypeVar

from .blobs import BlobStore
from .db import JobRunner
from .records import Account, Domain, Mailbox, MessageMeta


T = TypeVar("T")
#: Threads writing message bodies (see Store.__init__).
BLOB_WRITERS = 32
BLOB_GRACE_SECONDS = 3600

_ACCOUNT_COLUMNS = (
    "id, domain_id, address, display_name, password_hash, password_changed_at, imap_enabled, "
    "pop3_enabled, smtp_enabled, quota_bytes, forward_to, pop3_policy, pop3_since, created_at"
)
# ``subscribed`` comes from the subscription list (migration 5), whatever the old column says
_MAILBOX_COLUMNS = ("id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq, "
                    "EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id "
                    "AND s.name = mailboxes.name)")
_MESSAGE_COLUMNS = "uid, flags, keywords, size, internal_date, modseq, blob_id, internal_zone"


class StoreBase:
    """What every store mixin relies on; `Store` provides it."""

    db: JobRunner
    blobs: BlobStore
    spool: Any  # store.spool.Spool
    _writers: concurrent.futures.ThreadPoolExecutor


def _account(row: Any) -> Account:
    return Account(
        id=row[0], domain_id=row[1], address=row[2], display_name=row[3], password_hash=row[4],
        password_changed_at=row[5], imap_enabled=bool(row[6]), pop3_enabled=bool(row[7]),
        smtp_enabled=bool(row[8]), quota_bytes=row[9], forward_to=row[10], pop3_policy=row[11],
        pop3_since=row[12], created_at=row[13],
    )


def _mailbox(row: Any) -> Mailbox:
    return Mailbox(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))


def _message(row: Any) -> MessageMeta:
    return MessageMeta(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


def _domain(row: Any) -> Domain:
    return Domain(row[0], row[1], row[2], row[3], row[4])
