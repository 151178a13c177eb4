"""The IMAP server (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1) on 143 and 993.

* ``server``    the asyncio loop: I/O, timeouts, STARTTLS, IDLE, ending sessions from outside
* ``session``   per-connection state and the explicit command dispatch table
* ``selected``  the selected-mailbox view and the shared per-mailbox flag index
* ``mailboxes`` SELECT, LIST, STATUS, CREATE, DELETE, RENAME, SUBSCRIBE, NAMESPACE, QUOTA
* ``messages``  APPEND, FETCH, STORE, COPY, MOVE, EXPUNGE, SEARCH glue
* ``fetch``, ``search``  FETCH responses and SEARCH evaluation
"""

from .server import ImapServer

__all__ = ["ImapServer"]
