"""What the POP3 session asks the server to do, and what the server tells it back.

Actions (session -> server) are frozen dataclasses the server performs asynchronously; each one
except :class:`Close` is answered by calling exactly one ``Pop3Session.on_*`` callback with a
result value defined here.  See the contract table in :mod:`postoffice.protocols.pop3.session`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence, Union


class MessageInfo(NamedTuple):
    """One message of the maildrop snapshot taken at login.

    ``uid`` is the UIDL unique-id: 1-70 characters in 0x21-0x7E, stable across sessions
    (RFC 1939 §7). ``size`` is the size in octets reported by LIST/STAT.
    """

    uid: str
    size: int


# -- actions: session -> server --------------------------------------------------------------


@dataclass(frozen=True)
class Authenticate:
    """Check credentials and whether the account may use POP3 now.

    Answer with ``session.on_auth_result(AuthOk | AuthInvalid | AuthRefused |
    AuthTemporaryFailure | MaildropInUse)``.  ``mechanism`` is ``"USER"`` for USER/PASS or the
    SASL mechanism name; ``authzid`` is what the client asked to act as ("" for none): the server decides
    whether it is allowed (services.auth.authzid_permitted).
    """

    username: str
    password: str = field(repr=False)
    mechanism: str = "USER"
    authzid: str = ""


@dataclass(frozen=True)
class OpenMaildrop:
    """Lock the account's maildrop and snapshot it (uid, size) in a stable order.

    Answer with ``session.on_maildrop(Maildrop | MaildropInUse | MaildropUnavailable)``.
    """

    username: str


@dataclass(frozen=True)
class SendMessage:
    """Fetch the bytes of message ``msg`` (1-based; ``uid`` identifies it in the store).

    Answer with ``session.on_message(action, data)`` (``data`` None if it cannot be read);
    the session dot-stuffs it (and cuts it for TOP when ``top_lines`` is not None).
    """

    msg: int
    uid: str
    top_lines: int | None = None


@dataclass(frozen=True)
class CommitDeletions:
    """UPDATE state (RFC 1939 §6): delete these messages, then release the maildrop lock.

    Sent only after QUIT in TRANSACTION, possibly with no uids (then just unlock).  Answer with
    ``session.on_commit_result(ok)``.
    """

    uids: tuple[str, ...]


@dataclass(frozen=True)
class StartTls:
    """The STLS +OK has been queued: flush it, call ``Pop3Connection.start_tls()`` (log what it
    discarded), do the TLS handshake, then call ``session.on_tls_started()``.  If the handshake
    fails, close the connection without further replies."""


@dataclass(frozen=True)
class Close:
    """Flush pending output and close the connection.  Release the maildrop lock if one was
    taken; never delete anything (deletions only ever come through CommitDeletions)."""


Action = Union[Authenticate, OpenMaildrop, SendMessage, CommitDeletions, StartTls, Close]


# -- results: server -> session --------------------------------------------------------------


@dataclass(frozen=True)
class AuthOk:
    """Credentials are valid and POP3 is allowed; ``username`` is the canonical account name."""

    username: str


@dataclass(frozen=True)
class AuthInvalid:
    """Wrong user name or password (deliberately not saying which)."""


@dataclass(frozen=True)
class AuthRefused:
    """Valid or not, this login is refused for a reason the user should read, e.g.
    ``"POP3 is disabled for this address by its administrator"`` (sent as ``-ERR [AUTH]``)."""

    reason: str


@dataclass(frozen=True)
class AuthTemporaryFailure:
    """The check could not be made now (database down...): ``-ERR [SYS/TEMP]``."""

    reason: str = "temporary failure, please try again later"


class Default(enum.Enum):
    """Marker: use the server-wide policy value."""

    POLICY = "POLICY"


@dataclass(frozen=True)
class Maildrop:
    """The locked maildrop: the snapshot and, optionally, this user's EXPIRE / LOGIN-DELAY
    values announced by CAPA in TRANSACTION state (RFC 2449 §6.7, §6.8).  ``expire_days``
    None means NEVER."""

    messages: Sequence[MessageInfo] | Sequence[tuple[str, int]]
    expire_days: int | None | Default = Default.POLICY
    login_delay: int | None | Default = Default.POLICY


@dataclass(frozen=True)
class MaildropInUse:
    """Another session holds the lock: ``-ERR [IN-USE]`` (RFC 2449 §8.1.1)."""


@dataclass(frozen=True)
class MaildropUnavailable:
    """The maildrop cannot be opened now: ``-ERR [SYS/TEMP]``."""

    reason: str = "the maildrop cannot be opened right now, please try again later"


AuthResult = Union[AuthOk, AuthInvalid, AuthRefused, AuthTemporaryFailure, MaildropInUse]
MaildropResult = Union[Maildrop, MaildropInUse, MaildropUnavailable]
