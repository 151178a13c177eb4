"""Plain records the store hands out, the change events it emits, and its domain errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# IMAP system flags kept as bits in messages.flags (\Recent is per-session, not stored).
SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16
FLAG_BITS: dict[str, int] = {
    "\\seen": SEEN,
    "\\answered": ANSWERED,
    "\\flagged": FLAGGED,
    "\\deleted": DELETED,
    "\\draft": DRAFT,
}
FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (ANSWERED, "\\Answered"),
    (FLAGGED, "\\Flagged"),
    (DELETED, "\\Deleted"),
    (SEEN, "\\Seen"),
    (DRAFT, "\\Draft"),
)

PROTOCOLS = ("imap", "pop3", "smtp")
DOMAIN_POLICIES = ("any", "imap-only", "pop3-only")
POP3_POLICIES = ("delete", "keep", "mark-read", "trash", "archive")
SPECIAL_FOLDERS = (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"),
                   ("Junk", "\\Junk"), ("Archive", "\\Archive"))


def flags_to_bits(flags: object) -> tuple[int, tuple[str, ...]]:
    """Split IMAP flag names into system-flag bits and sorted unique keywords."""
    bits = 0
    keywords: set[str] = set()
    for flag in flags:  # type: ignore[attr-defined]
        bit = FLAG_BITS.get(flag.lower())
        if bit:
            bits |= bit
        elif flag.lower() != "\\recent" and not flag.startswith("\\"):
            keywords.add(flag)
    return bits, tuple(sorted(keywords))


def bits_to_flags(bits: int, keywords: str | tuple[str, ...] = "") -> list[str]:
    names = [name for bit, name in FLAG_NAMES if bits & bit]
    if isinstance(keywords, str):
        keywords = tuple(keywords.split())
    names.extend(keywords)
    return names


class StoreError(Exception):
    """Base of the store's domain errors; servers map them to protocol replies."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class QuotaExceeded(StoreError):
    def __init__(self, address: str) -> None:
        super().__init__(f"mailbox of {address} is over its quota")
        self.address = address


class InvalidName(StoreError):
    pass


@dataclass(frozen=True)
class Domain:
    id: int
    name: str
    protocol_policy: str
    catch_all: str | None
    created_at: float


@dataclass(frozen=True)
class Account:
    id: int
    domain_id: int
    address: str
    display_name: str
    password_hash: str
    password_changed_at: float
    imap_enabled: bool
    pop3_enabled: bool
    smtp_enabled: bool
    quota_bytes: int
    forward_to: str
    pop3_policy: str
    pop3_since: float | None
    created_at: float

    @property
    def local_part(self) -> str:
        return self.address.rsplit("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]


@dataclass(frozen=True)
class Alias:
    id: int
    domain_id: int
    address: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Mailbox:
    id: int
    account_id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    subscribed: bool


@dataclass(frozen=True)
class MessageMeta:
    """One message as a mailbox lists it (no body)."""

    uid: int
    flags: int
    keywords: str
    size: int
    internal_date: float
    modseq: int
    blob_id: str
    internal_zone: int = 0  # minutes east of UTC the INTERNALDATE was given in (APPEND)

    def flag_names(self) -> list[str]:
        return bits_to_flags(self.flags, self.keywords)


#: The INTERNALDATE zone of delivered mail (and of APPEND without a date-time), in minutes east
#: of UTC: UTC, not the host's zone, so every node of a cluster writes the same date whatever its
#: TZ, a DST change cannot shift a day, and clients see what they always saw (``+0000``).
DELIVERY_ZONE = 0


@dataclass(frozen=True)
class BlobInfo:
    """What parsing the message once at delivery left for later: IMAP FETCH reads this."""

    id: str
    size: int
    header_size: int
    envelope: bytes | None
    bodystructure: bytes | None
    body: bytes | None
    structure: str | None


@dataclass(frozen=True)
class MailboxStatus:
    messages: int
    unseen: int
    deleted: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int
    recent: int = 0  # messages no session has claimed as \Recent yet (RFC 3501 6.3.10)


@dataclass(frozen=True)
class Delivered:
    account_id: int
    mailbox_id: int
    uid: int


# -- change events, published after commit -------------------------------------------------


#: A `MessagesAdded` of at most this many messages carries their index fields (``metas``).
ADDED_METAS_MAX = 64


@dataclass(frozen=True)
class MessagesAdded:
    account_id: int
    mailbox_id: int
    uids: tuple[int, ...]
    modseq: int
    # (uid, flags, keywords, size, internal_date, blob_id, internal_zone) of each message when
    # there are at most ADDED_METAS_MAX of them, else (): what a mailbox index adds for a new
    # message, so the sessions of every process need not read it back after each APPEND.
    metas: tuple[tuple[Any, ...], ...] = ()

    def message_metas(self) -> list[MessageMeta]:
        return [MessageMeta(uid, flags, keywords, size, date, self.modseq, blob, zone)
                for uid, flags, keywords, size, date, blob, zone in self.metas]


@dataclass(frozen=True)
class FlagsChanged:
    account_id: int
    mailbox_id: int
    # (uid, flag bits, keywords, modseq) for each message whose flags changed
    changes: tuple[tuple[int, int, str, int], ...]
    origin: object = field(default=None, compare=False)  # the session that made the change


@dataclass(frozen=True)
class MessagesExpunged:
    account_id: int
    mailbox_id: int
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True)
class MailboxesChanged:
    """A mailbox of the account was created, deleted or renamed: the names concerned (what
    IMAP NOTIFY's MailboxName event reports, RFC 5465 section 5.4)."""

    account_id: int
    deleted_mailbox_id: int | None = None
    created: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (old name, new name), children included


@dataclass(frozen=True)
class SubscriptionChanged:
    """A name was added to (``subscribed``) or removed from the account's subscription list."""

    account_id: int
    name: str
    subscribed: bool


@dataclass(frozen=True)
class MetadataChanged:
    """METADATA entries (RFC 5464) of a mailbox (``mailbox`` its name) or of the server
    (``mailbox`` "") were set or removed."""

    account_id: int
    mailbox: str
    entries: tuple[str, ...]


@dataclass(frozen=True)
class AccountChanged:
    """Switches, password or policy of an account (or its domain) changed."""

    account_id: int | None  # None: every account of domain_id
    domain_id: int | None = None
