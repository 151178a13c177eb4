"""Persistent state: the database (store.db), message bodies (store.blobs) and the Store API."""

from .records import *  # noqa: F401,F403
from .store import Store, validate_mailbox_name  # noqa: F401
