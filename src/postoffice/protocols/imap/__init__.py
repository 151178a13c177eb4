"""Sans-IO IMAP (RFC 9051 IMAP4rev2 / RFC 3501 IMAP4rev1 and extensions).

No sockets, no asyncio, no store: bytes in, events out, responses to bytes.

* ``ImapConnection`` (connection.py): framing, literals, limits, IDLE/SASL modes.
* ``parse_command`` (parser.py): one complete command -> ``CommandReceived`` /
  ``InvalidCommand``.
* ``commands``: the command dataclasses and the per-state table.
* ``responses``: response and value serialisers.
* ``grammar``: sequence sets, search keys, fetch items, mailbox-name encodings.
"""

from . import responses
from .capabilities import ENABLEABLE, SUPPORTED_EXTENSIONS
from .commands import (
    LIST_RETURN_OPTIONS, LIST_SELECTION_OPTIONS, SEARCH_RETURN_OPTIONS, STATE_COMMANDS,
    STATUS_ITEMS, Append, AppendMessage, Authenticate, CancelUpdate, Capability, Check, Close, Command,
    Compress, Copy, GenUrlAuth, GetMetadata, Notify, NotifyGroup, ResetKey, SetMetadata, UrlFetch,
    Create, Delete, Enable, Examine, Expunge, Fetch, GetQuota, GetQuotaRoot, Id, Idle, List,
    Login, Logout, Lsub, Move, Namespace, Noop, QresyncParams, Rename, Search, Select,
    SetQuota, Sort, StartTls, State, Status, Store, StoreMode, Subscribe, Thread, UidBatches,
    UidExpunge, Unselect, Unsubscribe, command_allowed,
)
from .connection import ImapConnection
from .events import (
    NEED_DATA, CommandReceived, ConnectionClosed, ContinuationNeeded, Event, IdleDone,
    InvalidCommand, LineTooLong, LiteralRejected, NeedData, SaslCancelled, SaslInvalid,
    SaslResponse,
)
from .grammar import (
    FETCH_MACROS, MAX_SEARCH_DEPTH, FetchAtt, InvalidMailboxName, SearchAll, SearchAnd,
    SearchBody, SearchDate, SearchFlag, SearchHeader, SearchKey, SearchModSeq, SearchNew,
    SearchNot, SearchOld, SearchOlder, SearchOr, SearchSeqSet, SearchSize, SearchText,
    SearchUid, SearchYounger, Section, SequenceSet, compress_uids, decode_mailbox_name,
    encode_mailbox_name, utf7_decode, utf7_encode,
)
from .parser import COMMAND_VERBS, parse_command

__all__ = [
    "responses", "ENABLEABLE", "SUPPORTED_EXTENSIONS",
    "LIST_RETURN_OPTIONS", "LIST_SELECTION_OPTIONS", "SEARCH_RETURN_OPTIONS", "STATE_COMMANDS",
    "STATUS_ITEMS", "Append", "AppendMessage", "Authenticate", "CancelUpdate", "Capability", "Check", "Close", "Compress", "GenUrlAuth",
    "ResetKey", "UrlFetch", "GetMetadata", "SetMetadata", "Notify", "NotifyGroup",
    "Command", "Copy", "Create", "Delete", "Enable", "Examine", "Expunge", "Fetch", "GetQuota",
    "GetQuotaRoot", "Id", "Idle", "List", "Login", "Logout", "Lsub", "Move", "Namespace", "Noop",
    "QresyncParams", "Rename", "Search", "Select", "SetQuota", "Sort", "StartTls", "State", "Status",
    "Store", "StoreMode", "Subscribe", "Thread", "UidBatches", "UidExpunge", "Unselect", "Unsubscribe",
    "command_allowed",
    "ImapConnection",
    "NEED_DATA", "CommandReceived", "ConnectionClosed", "ContinuationNeeded", "Event", "IdleDone",
    "InvalidCommand", "LineTooLong", "LiteralRejected", "NeedData", "SaslCancelled", "SaslInvalid",
    "SaslResponse",
    "FETCH_MACROS", "MAX_SEARCH_DEPTH", "FetchAtt", "InvalidMailboxName", "SearchAll", "SearchAnd",
    "SearchBody", "SearchDate", "SearchFlag", "SearchHeader", "SearchKey", "SearchModSeq",
    "SearchNew", "SearchNot", "SearchOld", "SearchOlder", "SearchOr", "SearchSeqSet", "SearchSize",
    "SearchText", "SearchUid", "SearchYounger", "Section", "SequenceSet", "compress_uids",
    "decode_mailbox_name", "encode_mailbox_name", "utf7_decode", "utf7_encode",
    "COMMAND_VERBS", "parse_command",
]
