"""ManageSieve (RFC 5804), sans-IO: the wire format (connection) and the session state machine."""

from __future__ import annotations

from .connection import (
    NEED_DATA,
    Command,
    ConnectionClosed,
    InvalidCommand,
    ManageSieveConnection,
    SaslResponse,
)
from .session import Authenticate, Close, ManageSieveSession, Output, Policy, ScriptOp, StartTls, State

__all__ = [
    "NEED_DATA", "Authenticate", "Close", "Command", "ConnectionClosed", "InvalidCommand", "ManageSieveConnection",
    "ManageSieveSession", "Output", "Policy", "SaslResponse", "ScriptOp", "StartTls", "State",
]
