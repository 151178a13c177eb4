"""IMAP command dataclasses, one per wire verb (RFC 9051 section 6 and extensions).

Commands do not carry their tag: the parser wraps them in
``CommandReceived(tag, command)``. Mailbox names stay raw ``bytes`` (the server
decodes them with ``decode_mailbox_name`` depending on UTF8=ACCEPT), except that
a name equal to INBOX in any case is normalised to ``b"INBOX"``.

The ``STATE_COMMANDS`` table says in which connection states each command is
allowed (RFC 9051 section 3 / 6); the server checks it before dispatching.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Union

from .grammar.fetch_att import FetchAtt
from .grammar.search import SearchKey
from .grammar.sequence_set import SequenceSet
from .grammar.sort import SortCriterion

__all__ = [
    "State", "StoreMode", "QresyncParams", "AppendMessage",
    "Capability", "Noop", "Logout", "StartTls", "Authenticate", "Login", "Enable",
    "Select", "Examine", "Create", "Delete", "Rename", "Subscribe", "Unsubscribe",
    "List", "Lsub", "Namespace", "Status", "Append", "Idle", "Check", "Close",
    "Unselect", "Expunge", "UidExpunge", "UidBatches", "Search", "Fetch", "Store", "Copy", "Move",
    "Id", "GetQuota", "GetQuotaRoot", "SetQuota", "Sort", "Thread", "Compress", "CancelUpdate", "GenUrlAuth", "UrlFetch", "ResetKey", "GetMetadata", "SetMetadata", "Notify", "NotifyGroup", "Command", "STATE_COMMANDS",
    "command_allowed", "STATUS_ITEMS", "LIST_SELECTION_OPTIONS", "LIST_RETURN_OPTIONS", "SEARCH_RETURN_OPTIONS",
]


class State(enum.Enum):
    """Connection states (RFC 9051 section 3)."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class StoreMode(enum.Enum):
    """STORE FLAGS (REPLACE), +FLAGS (ADD), -FLAGS (REMOVE)."""

    REPLACE = ""
    ADD = "+"
    REMOVE = "-"


STATUS_ITEMS = frozenset({
    "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
    "HIGHESTMODSEQ", "APPENDLIMIT",
})
LIST_SELECTION_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
SEARCH_RETURN_OPTIONS = frozenset({
    "MIN", "MAX", "ALL", "COUNT", "SAVE",   # RFC 4731, RFC 5182
    "CONTEXT", "UPDATE", "PARTIAL",         # RFC 5267 section 4 (PARTIAL takes a range)
})


# -- any state ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Capability:
    """CAPABILITY (RFC 9051 6.1.1)."""


@dataclass(frozen=True, slots=True)
class Noop:
    """NOOP (6.1.2): also the polling point for untagged updates."""


@dataclass(frozen=True, slots=True)
class Logout:
    """LOGOUT (6.1.3): answer ``* BYE`` then the tagged OK, then close."""


@dataclass(frozen=True, slots=True)
class Id:
    """ID (RFC 2971). ``params`` is None for ``ID NIL``; values may be None (NIL).
    Field names are case-insensitive; keys are kept as sent."""

    params: dict[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class Enable:
    """ENABLE cap... (RFC 5161); capability names upper-cased."""

    capabilities: tuple[str, ...]


# -- not authenticated --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StartTls:
    """STARTTLS (6.2.1): after the OK call ``ImapConnection.start_tls()``."""


@dataclass(frozen=True, slots=True)
class Authenticate:
    """AUTHENTICATE mechanism [initial-response] (6.2.2, RFC 4959 SASL-IR).

    ``mechanism`` is upper-cased. ``initial_response`` is the base64-decoded
    initial response (``b""`` for "="), or None when absent: then the server
    sends ``+ `` and calls ``expect_sasl_response()``.
    """

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Login:
    """LOGIN username password (6.2.3)."""

    username: bytes
    password: bytes

    def __repr__(self) -> str:  # never log passwords
        return f"Login(username={self.username!r}, password=<{len(self.password)} bytes>)"


# -- authenticated ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QresyncParams:
    """SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)]))
    (RFC 7162 3.2.5). ``seq_match`` is (known-sequence-set, known-uid-set)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT mailbox [(CONDSTORE) / (QRESYNC (...))] (6.3.2, RFC 7162).
    QRESYNC is only valid once enabled: the server checks that."""

    mailbox: bytes
    condstore: bool = False
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class Examine:
    """EXAMINE: like SELECT but read-only (6.3.3)."""

    mailbox: bytes
    condstore: bool = False
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class Create:
    """CREATE mailbox [(USE (\\Drafts ...))] (6.3.4, RFC 6154 section 3)."""

    mailbox: bytes
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Rename:
    mailbox: bytes
    new_name: bytes


@dataclass(frozen=True, slots=True)
class Subscribe:
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class List:
    """LIST (6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154).

    ``patterns`` holds one or more list-mailbox patterns (wildcards ``*``/``%``
    kept). ``selection_options`` / ``return_options`` are upper-cased names;
    when STATUS is among the return options ``status_items`` lists its items.
    ``extended`` is True when the client used any LIST-EXTENDED syntax
    (selection options, return options or a parenthesised pattern list),
    which affects the response format (RFC 5258 section 3).
    """

    reference: bytes
    patterns: tuple[bytes, ...]
    selection_options: frozenset[str] = frozenset()
    return_options: frozenset[str] = frozenset()
    status_items: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    """LSUB reference pattern (RFC 3501 6.3.9; deprecated in IMAP4rev2)."""

    reference: bytes
    pattern: bytes


@dataclass(frozen=True, slots=True)
class Namespace:
    """NAMESPACE (RFC 2342, RFC 9051 6.3.10)."""


@dataclass(frozen=True, slots=True)
class Status:
    """STATUS mailbox (items) (6.3.11); items upper-cased, from STATUS_ITEMS."""

    mailbox: bytes
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND (MULTIAPPEND allows several).

    ``binary`` is True when sent as literal8 ``~{n}`` (RFC 3516: the data may
    contain NUL and must be stored after decoding; answer NO [UNKNOWN-CTE] if
    it cannot). ``utf8`` is True for the ``UTF8 (~{n})`` form (RFC 6855).
    """

    data: bytes
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    binary: bool = False
    utf8: bool = False
    #: CATENATE (RFC 4469): the parts in order, ("TEXT", octets) or ("URL", url); ``data``
    #: is then empty and the server builds the message from the parts.
    catenate: tuple[tuple[str, bytes], ...] | None = None

    def __repr__(self) -> str:
        return (
            f"AppendMessage(<{len(self.data)} bytes>, flags={self.flags!r}, "
            f"internal_date={self.internal_date!r}, binary={self.binary}, utf8={self.utf8}"
            + (f", catenate=<{len(self.catenate)} parts>" if self.catenate is not None else "") + ")"
        )


@dataclass(frozen=True, slots=True)
class Append:
    """APPEND mailbox message... (6.3.12, RFC 3502 MULTIAPPEND): all messages
    are appended atomically or none."""

    mailbox: bytes
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle:
    """IDLE (RFC 2177): send ``+ idling`` then call ``expect_idle_done()``."""


@dataclass(frozen=True, slots=True)
class Compress:
    """COMPRESS algorithm (RFC 4978 section 3); the algorithm name upper-cased. After the
    tagged OK both directions are raw DEFLATE (RFC 1951)."""

    algorithm: str


@dataclass(frozen=True, slots=True)
class GenUrlAuth:
    """GENURLAUTH (url-rump mechanism)... (RFC 4467 section 6.1); mechanisms upper-cased."""

    requests: tuple[tuple[bytes, str], ...]


@dataclass(frozen=True, slots=True)
class UrlFetch:
    """URLFETCH url... (RFC 4467 section 6.2). ``params`` (RFC 5524, URLAUTH=BINARY), one per
    URL when given: None for a plain URL, else the upper-cased names asked for with it in
    parentheses (BODY, BINARY, BODYPARTSTRUCTURE)."""

    urls: tuple[bytes, ...]
    params: tuple[tuple[str, ...] | None, ...] = ()


@dataclass(frozen=True, slots=True)
class ResetKey:
    """RESETKEY [mailbox [mechanism...]] (RFC 4467 section 6.3)."""

    mailbox: bytes | None = None
    mechanisms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GetMetadata:
    """GETMETADATA [(MAXSIZE n DEPTH d)] mailbox entries (RFC 5464 section 4.2); mailbox
    ``b""`` names the server. Entry names are lower-cased (they are case-insensitive);
    ``depth`` is 0, 1 or -1 for "infinity"."""

    mailbox: bytes
    entries: tuple[str, ...]
    maxsize: int | None = None
    depth: int = 0


@dataclass(frozen=True, slots=True)
class SetMetadata:
    """SETMETADATA mailbox (entry value ...) (RFC 5464 section 4.3); a None value removes
    the entry; names lower-cased."""

    mailbox: bytes
    items: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """One event group of NOTIFY SET (RFC 5465 section 8): which mailboxes (``filter`` is
    SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED, SUBTREE or MAILBOXES, upper
    case; ``mailboxes`` the names of the last two) and which events (their canonical names,
    e.g. ``MessageNew``; an unknown event keeps its spelling; ``None`` for NONE).
    ``fetch_atts`` are MessageNew's FETCH attributes."""

    filter: str
    events: tuple[str, ...] | None
    mailboxes: tuple[bytes, ...] = ()
    fetch_atts: tuple[FetchAtt, ...] = ()


@dataclass(frozen=True, slots=True)
class Notify:
    """NOTIFY SET [STATUS] event-groups / NOTIFY NONE (RFC 5465 section 3.1); ``groups`` is
    None for NONE."""

    groups: tuple[NotifyGroup, ...] | None
    status: bool = False


@dataclass(frozen=True, slots=True)
class GetQuota:
    """GETQUOTA quota-root (RFC 9208)."""

    root: bytes


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    """GETQUOTAROOT mailbox (RFC 9208)."""

    mailbox: bytes


@dataclass(frozen=True, slots=True)
class SetQuota:
    """SETQUOTA quota-root (resource limit ...) (RFC 9208); names upper-cased."""

    root: bytes
    limits: tuple[tuple[str, int], ...]


# -- selected -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Check:
    """CHECK (RFC 3501 6.4.1; removed in rev2, treat like NOOP)."""


@dataclass(frozen=True, slots=True)
class Close:
    """CLOSE (6.4.1): expunge silently (unless read-only) and unselect."""


@dataclass(frozen=True, slots=True)
class Unselect:
    """UNSELECT (RFC 3691, 9051 6.4.2): unselect without expunging."""


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE (6.4.3)."""


@dataclass(frozen=True, slots=True)
class UidExpunge:
    """UID EXPUNGE uid-set (RFC 4315 UIDPLUS, 9051 6.4.9)."""

    seqset: SequenceSet


@dataclass(frozen=True, slots=True)
class Search:
    """[UID] SEARCH [RETURN (...)] [CHARSET x] keys (6.4.4, RFC 4731, 5182).

    ``key`` is one node (several top-level keys become ``SearchAnd``).
    ``charset`` is upper-cased or None. ``return_options`` is None for a plain
    SEARCH (answer ``* SEARCH``) and a tuple for ESEARCH (``()`` from
    ``RETURN ()`` already expanded to ``("ALL",)``; RFC 4731 section 3.1).
    """

    key: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    uid: bool = False
    partial: tuple[int, int] | None = None  # RETURN (PARTIAL lo:hi), RFC 5267 section 4.4


@dataclass(frozen=True, slots=True)
class Sort:
    """[UID] SORT [RETURN (...)] (criteria) charset keys (RFC 5256 section 3, RFC 5957,
    RFC 5267 ESORT). ``charset`` is upper-cased and mandatory; ``return_options`` is None
    for a plain SORT (answer ``* SORT``), else as for :class:`Search`."""

    criteria: tuple[SortCriterion, ...]
    key: SearchKey
    charset: str
    return_options: tuple[str, ...] | None = None
    uid: bool = False
    partial: tuple[int, int] | None = None  # RETURN (PARTIAL lo:hi), RFC 5267 section 4.4


@dataclass(frozen=True, slots=True)
class CancelUpdate:
    """CANCELUPDATE "tag" ... (RFC 5267 section 4.3.5): stop the updates of those contexts."""

    tags: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Thread:
    """[UID] THREAD algorithm charset keys (RFC 5256 section 3); algorithm upper-cased."""

    algorithm: str
    key: SearchKey
    charset: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Fetch:
    """[UID] FETCH set items [(CHANGEDSINCE n [VANISHED])] (6.4.5, RFC 7162).

    Macros are expanded. For UID FETCH the server must also return UID
    (RFC 9051 6.4.9). With CHANGEDSINCE the server adds MODSEQ to each
    response. ``vanished`` is only accepted with UID FETCH + CHANGEDSINCE.
    """

    seqset: SequenceSet
    items: tuple[FetchAtt, ...]
    changedsince: int | None = None
    vanished: bool = False
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Store:
    """[UID] STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags (6.4.6, RFC 7162)."""

    seqset: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    unchangedsince: int | None = None
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Copy:
    """[UID] COPY set mailbox (6.4.7); answer with COPYUID (RFC 4315)."""

    seqset: SequenceSet
    mailbox: bytes
    uid: bool = False


@dataclass(frozen=True, slots=True)
class UidBatches:
    """UIDBATCHES batch-size [batch-range] (RFC 10022): UID ranges that split the mailbox
    into batches of ``size`` messages, newest first; ``batches`` is (first, last) batch
    number as given (not checked for order here)."""

    size: int
    batches: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Move:
    """[UID] MOVE set mailbox (RFC 6851, 9051 6.4.8)."""

    seqset: SequenceSet
    mailbox: bytes
    uid: bool = False


Command = Union[
    Capability, Noop, Logout, Id, Enable, StartTls, Authenticate, Login, Select, Examine,
    Create, Delete, Rename, Subscribe, Unsubscribe, List, Lsub, Namespace, Status, Append,
    Idle, GetQuota, GetQuotaRoot, SetQuota, Check, Close, Unselect, Expunge, UidExpunge,
    Search, Fetch, Store, Copy, Move, Sort, Thread, Compress, CancelUpdate, GenUrlAuth, UrlFetch,
    ResetKey, GetMetadata, SetMetadata, Notify, UidBatches,
]

_ANY = (Capability, Noop, Logout, Id)
_AUTH = (
    Enable, Select, Examine, Create, Delete, Rename, Subscribe, Unsubscribe, List, Lsub,
    Namespace, Status, Append, Idle, GetQuota, GetQuotaRoot, SetQuota, Compress, GenUrlAuth, UrlFetch,
    ResetKey, GetMetadata, SetMetadata, Notify,
)
_SELECTED = (Check, Close, Unselect, Expunge, UidExpunge, Search, Fetch, Store, Copy, Move, Sort, Thread,
             CancelUpdate, UidBatches)

#: Which command classes are valid in which state (RFC 9051 section 6).
#: A command outside its state gets ``tag BAD`` (mox answers BAD too).
STATE_COMMANDS: dict[State, frozenset[type]] = {
    State.NOT_AUTHENTICATED: frozenset((*_ANY, StartTls, Authenticate, Login)),
    State.AUTHENTICATED: frozenset((*_ANY, *_AUTH)),
    State.SELECTED: frozenset((*_ANY, *_AUTH, *_SELECTED)),
    State.LOGOUT: frozenset(),
}


def command_allowed(state: State, command: Command) -> bool:
    """Whether ``command`` may be issued in ``state`` (see ``STATE_COMMANDS``)."""
    return type(command) in STATE_COMMANDS[state]
