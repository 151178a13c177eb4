"""Sans-IO POP3 (RFC 1939, 2449, 2595, 3206, 5034): parser, connection, session state machine.

* :mod:`.commands` — command dataclasses and ``parse_command``;
* :mod:`.connection` — ``Pop3Connection`` (framing, limits, SASL lines, STLS buffer hygiene);
* :mod:`.responses` — replies, ``dot_stuff``, ``top``;
* :mod:`.actions` — what the session asks the server to do and the results it gets back;
* :mod:`.session` — ``Pop3Session``, the state machine; its docstring is the server contract.
"""

from __future__ import annotations

from .actions import (
    Action,
    AuthInvalid,
    AuthOk,
    AuthRefused,
    AuthResult,
    AuthTemporaryFailure,
    Authenticate,
    Close,
    CommitDeletions,
    Maildrop,
    MaildropInUse,
    MaildropResult,
    MaildropUnavailable,
    MessageInfo,
    OpenMaildrop,
    SendMessage,
    StartTls,
)
from .commands import (
    Apop,
    Auth,
    Capa,
    Command,
    Dele,
    InvalidCommand,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    parse_command,
)
from .connection import NEED_DATA, ConnectionClosed, Event, Pop3Connection, SaslResponse
from .responses import (
    Continuation,
    Err,
    MultiLine,
    Ok,
    Reply,
    ResponseCode,
    dot_stuff,
    message_body,
    top,
)
from .session import ALLOWED, Output, Pop3Policy, Pop3Session, Pop3SessionError, State

__all__ = [
    "ALLOWED", "NEED_DATA", "Action", "Apop", "Auth", "AuthInvalid", "AuthOk", "AuthRefused",
    "AuthResult", "AuthTemporaryFailure", "Authenticate", "Capa", "Close", "Command",
    "CommitDeletions", "ConnectionClosed", "Continuation", "Dele", "Err", "Event",
    "InvalidCommand", "List", "Maildrop", "MaildropInUse", "MaildropResult",
    "MaildropUnavailable", "MessageInfo", "MultiLine", "Noop", "Ok", "OpenMaildrop", "Output",
    "Pass", "Pop3Connection", "Pop3Policy", "Pop3Session", "Pop3SessionError", "Quit", "Reply",
    "ResponseCode", "Retr", "Rset", "SaslResponse", "SendMessage", "StartTls", "Stat", "State",
    "Stls", "Top", "Uidl", "User", "dot_stuff", "message_body", "parse_command", "top",
]
