"""Turning a received message into a stored body: canonical CRLF, sha256, the file, the parse.

These functions run in a worker process for large messages (``postoffice.cpu.in_process``) and
in a blob-writer thread for small ones; they take and return only values that pickle (a
`MessageSource`, paths, tuples). The parse is :func:`postoffice.mail.analyze`, which keeps what
FETCH and SEARCH reuse in the ``blobs`` row.

In a worker process the body is written to the blob store's ``tmp`` directory and fsynced, and
the parent finishes the job with ``BlobStore.adopt`` (rename into place, or re-use an identical
stored body under the store's lock), so the garbage collector's rules stay in one process.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from ..mail import analyze
from ..mail.sortkeys import sort_keys
from ..mail.mime import canonicalize_crlf
from .blobs import temp_path
from .spool import MessageSource

__all__ = ["blob_row", "prepare_file"]


def blob_row(blob_id: str, raw: bytes) -> tuple[Any, ...]:
    """Parse the message once (mail.analyze) and keep what FETCH and SEARCH reuse."""
    info = analyze(raw)
    return (
        blob_id, len(raw), info.tree.body_start, info.envelope, info.bodystructure, info.body,
        info.tree.to_json(), info.subject, info.from_, info.to, info.cc, info.bcc, info.message_id,
        info.in_reply_to, info.date.timestamp() if info.date else None, time.time(),
        info.date.isoformat() if info.date else None,
        sort_keys(raw).to_json(),
    )


def prepare_file(source: MessageSource, tmp_dir: str) -> tuple[str, str, tuple[Any, ...], int]:
    """Canonicalise, hash and write ``source`` to a fsynced file in ``tmp_dir``, and parse it.

    Returns (temporary path, blob id, blobs row, stored size). The caller adopts the file."""
    data = canonicalize_crlf(source.read())
    blob_id = hashlib.sha256(data).hexdigest()
    path = temp_path(tmp_dir, blob_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    try:
        row = blob_row(blob_id, data)
    except BaseException:
        os.unlink(path)
        raise
    return path, blob_id, row, len(data)
