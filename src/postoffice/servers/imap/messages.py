"""Message commands: APPEND, CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, SEARCH, FETCH,
STORE, COPY and MOVE, with their UID forms (RFC 9051 6.3.12, 6.4; RFC 4315 UIDPLUS, 6851
MOVE, 7162 CONDSTORE/QRESYNC, 4731 ESEARCH, 5182 SEARCHRES, 3502 MULTIAPPEND).

FETCH and SEARCH themselves live in ``fetch.py`` and ``search.py``; this module resolves
sequence sets against the session's view, does the implicit ``\\Seen`` (RFC 9051 6.4.5),
and answers ``FETCH (UID FLAGS MODSEQ)``-only requests straight from the shared index (no
query at all: the common "what changed" poll of a 100,000-message mailbox).

Expunges caused here (EXPUNGE, UID EXPUNGE, MOVE) are not answered directly: the store's
MessagesExpunged event reaches the session's view like any other session's change, and the
post-command sync reports it (EXPUNGE or VANISHED), so there is exactly one code path.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ...protocols.imap import FetchAtt, SearchModSeq
from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.grammar import search as sk
from ...protocols.imap.responses import Code
from ...store import SEEN, MessageMeta, NotFound, bits_to_flags, flags_to_bits
from .errors import BadRequest, Refused
from .mailboxes import find_mailbox
from .selected import SelectedMailbox

if TYPE_CHECKING:
    from .session import Session

FETCH_BATCH = 1000
_FAST_ATTS = {"UID", "FLAGS", "MODSEQ"}
_STORE_MODES = {c.StoreMode.REPLACE: "set", c.StoreMode.ADD: "add", c.StoreMode.REMOVE: "remove"}
CHARSETS = ("UTF-8", "US-ASCII")


def _view(s: Session) -> SelectedMailbox:
    assert s.selected is not None
    return s.selected


def _positions(s: Session, seqset: object, uid: bool) -> list[int]:
    view = _view(s)
    try:
        return view.resolve(seqset, uid, s.saved)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadRequest(f"Invalid sequence number: {exc}") from None


def _writable(s: Session, what: str) -> SelectedMailbox:
    view = _view(s)
    if view.readonly:
        raise Refused(f"{what} is not allowed: the mailbox was opened read-only (EXAMINE)")
    return view


# == APPEND ==========================================================================================

async def do_append(s: Session, tag: bytes, cmd: c.Append) -> bytes:
    assert s.account is not None
    try:
        box = await find_mailbox(s, cmd.mailbox)
    except Refused as exc:
        raise Refused(exc.text, Code.TRYCREATE) from None
    items = []
    for message in cmd.messages:
        if not message.data:
            raise Refused("Empty messages cannot be appended")
        bits, keywords = flags_to_bits(message.flags)
        when = message.internal_date.timestamp() if message.internal_date else time.time()
        items.append((message.data, bits, " ".join(keywords), when))
    uidvalidity, uids = await s.app.store.append(s.account.id, box.id, items)
    return r.ok(tag, "APPEND completed", Code.appenduid(uidvalidity, uids))


# == CHECK / CLOSE / UNSELECT / EXPUNGE ============================================================

async def do_check(s: Session, tag: bytes, cmd: c.Check) -> bytes:
    return r.ok(tag, "CHECK completed")


async def do_close(s: Session, tag: bytes, cmd: c.Close) -> bytes:
    assert s.account is not None
    view = _view(s)
    mailbox_id, readonly = view.mailbox_id, view.readonly
    s.unselect()  # RFC 9051 6.4.1: no untagged EXPUNGE responses
    if not readonly:
        try:
            await s.app.store.expunge(s.account.id, mailbox_id)
        except NotFound:
            pass
    return r.ok(tag, "CLOSE completed")


async def do_unselect(s: Session, tag: bytes, cmd: c.Unselect) -> bytes:
    s.unselect()
    return r.ok(tag, "UNSELECT completed")


async def do_expunge(s: Session, tag: bytes, cmd: c.Expunge | c.UidExpunge) -> bytes:
    assert s.account is not None
    view = _writable(s, "EXPUNGE")
    if isinstance(cmd, c.UidExpunge):
        uids = [view.uids[i] for i in _positions(s, cmd.seqset, True)]
        if uids:
            await s.app.store.expunge(s.account.id, view.mailbox_id, uids)
        return r.ok(tag, "UID EXPUNGE completed")
    await s.app.store.expunge(s.account.id, view.mailbox_id)
    return r.ok(tag, "EXPUNGE completed")


# == FETCH ===========================================================================================

async def do_fetch(s: Session, tag: bytes, cmd: c.Fetch) -> bytes:
    from .fetch import FetchError, fetch_responses

    assert s.account is not None
    view = _view(s)
    verb = "UID FETCH" if cmd.uid else "FETCH"
    if cmd.vanished and not (cmd.uid and cmd.changedsince is not None):
        raise BadRequest("VANISHED needs UID FETCH with CHANGEDSINCE")
    if cmd.vanished and not s.qresync:
        raise BadRequest("VANISHED needs ENABLE QRESYNC first")
    if cmd.changedsince is not None or any(a.name == "MODSEQ" for a in cmd.items):
        s.enable_condstore()
    positions = _positions(s, cmd.seqset, cmd.uid)
    index = view.index
    await index.refresh()
    targets: list[tuple[int, int, int]] = []  # (seq, uid, index position)
    missing = False
    for p in positions:
        uid = view.uids[p]
        i = index.position(uid)
        if i < 0:
            missing = True  # expunged by another session; not reported yet
            continue
        if cmd.changedsince is not None and index.modseqs[i] <= cmd.changedsince:
            continue
        targets.append((p + 1, uid, i))
    if cmd.vanished and cmd.changedsince is not None:
        _, gone = await s.app.store.changes_since(view.mailbox_id, cmd.changedsince)
        star = view.uids[-1] if view.uids else 0
        gone = [u for u in gone if cmd.seqset.contains(u, star) and not view.seq_of(u)]
        if gone:
            s.send(r.vanished(gone, earlier=True))
    atts = list(cmd.items)
    if not view.readonly and any(a.sets_seen for a in atts):
        unseen = [uid for _, uid, i in targets if not index.bits[i] & SEEN]
        if unseen:
            await s.app.store.store_flags(s.account.id, view.mailbox_id, unseen, "add", SEEN, (), origin=s)
            await index.refresh()
            targets = [(seq, uid, index.position(uid)) for seq, uid, _ in targets]
            targets = [t for t in targets if t[2] >= 0]
            if not any(a.name == "FLAGS" for a in atts):
                atts.append(FetchAtt("FLAGS"))
    include_modseq = cmd.changedsince is not None
    if {a.name for a in atts} <= _FAST_ATTS:
        await _fetch_from_index(s, view, targets, atts, include_uid=cmd.uid, include_modseq=include_modseq)
    else:
        try:
            for start in range(0, len(targets), FETCH_BATCH):
                batch = targets[start:start + FETCH_BATCH]
                metas = {m.uid: m for m in await s.app.store.get_messages(view.mailbox_id, [t[1] for t in batch])}
                items = [(seq, metas[uid]) for seq, uid, _ in batch if uid in metas]
                missing = missing or len(items) < len(batch)
                async for chunk in fetch_responses(s.app.store, items, atts, include_uid=cmd.uid,
                                                   include_modseq=include_modseq, utf8=s.utf8):
                    s.send(chunk)
                    await s.io.maybe_flush()
        except FetchError as exc:
            code = exc.code if isinstance(exc.code, bytes) else str(exc.code).encode()
            return r.no(tag, exc.text, code)
    if missing and not cmd.uid:  # a UID FETCH reports the expunge itself, right after
        return r.ok(tag, f"{verb} completed; some messages were expunged meanwhile", Code.EXPUNGEISSUED)
    return r.ok(tag, f"{verb} completed")


async def _fetch_from_index(s: Session, view: SelectedMailbox, targets: list[tuple[int, int, int]],
                            atts: list[FetchAtt], *, include_uid: bool, include_modseq: bool) -> None:
    index = view.index
    names = [a.name for a in atts]
    order = list(dict.fromkeys((["UID"] if include_uid and "UID" not in names else []) + names
                               + (["MODSEQ"] if include_modseq and "MODSEQ" not in names else [])))
    bits, modseqs, keywords = index.bits, index.modseqs, index.keywords
    flag_cache: dict[tuple[int, str], bytes] = {}
    want_flags = "FLAGS" in order
    out: list[bytes] = []
    size = 0
    for seq, uid, i in targets:
        parts = []
        for name in order:
            if name == "UID":
                parts.append(b"UID %d" % uid)
            elif name == "FLAGS" and want_flags:
                key = (bits[i], keywords.get(uid, ""))
                fl = flag_cache.get(key)
                if fl is None:
                    fl = flag_cache[key] = b"FLAGS " + r.flag_list(bits_to_flags(*key))
                parts.append(fl)
            else:
                parts.append(b"MODSEQ (%d)" % modseqs[i])
        line = b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts))
        out.append(line)
        size += len(line)
        if size >= 256 * 1024:
            s.send(b"".join(out))
            out, size = [], 0
            await s.io.maybe_flush()
    if out:
        s.send(b"".join(out))


# == STORE ===========================================================================================

async def do_store(s: Session, tag: bytes, cmd: c.Store) -> bytes:
    assert s.account is not None
    view = _writable(s, "STORE")
    verb = "UID STORE" if cmd.uid else "STORE"
    if cmd.unchangedsince is not None:
        s.enable_condstore()
    positions = _positions(s, cmd.seqset, cmd.uid)
    uids = [view.uids[p] for p in positions]
    bits, keywords = flags_to_bits(cmd.flags)
    failed: list[int] = []
    if uids:
        _, failed = await s.app.store.store_flags(
            s.account.id, view.mailbox_id, uids, _STORE_MODES[cmd.mode], bits, keywords,
            unchangedsince=cmd.unchangedsince, origin=s)
    index = view.index
    await index.refresh()
    failed_set = set(failed)
    if not cmd.silent:
        for p in positions:
            uid = view.uids[p]
            i = index.position(uid)
            if i >= 0 and uid not in failed_set:
                s.send(view.flags_response(p + 1, i, uid=cmd.uid or s.qresync, modseq=s.condstore))
    if failed:
        numbers = failed if cmd.uid else [view.seq_of(u) for u in failed]
        return r.ok(tag, f"{verb} completed; some messages changed meanwhile", Code.modified(numbers))
    return r.ok(tag, f"{verb} completed")


# == COPY / MOVE =====================================================================================

async def do_copy(s: Session, tag: bytes, cmd: c.Copy | c.Move) -> bytes:
    assert s.account is not None
    move = isinstance(cmd, c.Move)
    verb = ("UID " if cmd.uid else "") + ("MOVE" if move else "COPY")
    view = _writable(s, "MOVE") if move else _view(s)
    positions = _positions(s, cmd.seqset, cmd.uid)
    try:
        target = await find_mailbox(s, cmd.mailbox)
    except Refused as exc:
        raise Refused(exc.text, Code.TRYCREATE) from None
    uids = [view.uids[p] for p in positions if p < len(view.uids)]
    if not uids:
        return r.ok(tag, f"{verb} completed (no messages)")
    uidvalidity, pairs = await s.app.store.copy_messages(s.account.id, view.mailbox_id, uids, target.id, move=move)
    if not pairs:
        return r.no(tag, "The messages were expunged meanwhile", Code.EXPUNGEISSUED)
    code = Code.copyuid(uidvalidity, [a for a, _ in pairs], [b for _, b in pairs])
    if move:
        s.send(r.untagged_ok("Moved", code))  # RFC 6851 4.3: COPYUID before the expunges
        return r.ok(tag, f"{verb} completed")
    return r.ok(tag, f"{verb} completed", code)


# == SEARCH ==========================================================================================

def _uses_modseq(key: object) -> bool:
    stack, seen = [key], 0
    while stack and seen < 10000:
        node = stack.pop()
        seen += 1
        if isinstance(node, SearchModSeq):
            return True
        if isinstance(node, sk.SearchNot):
            stack.append(node.key)
        elif isinstance(node, sk.SearchOr):
            stack.extend((node.left, node.right))
        elif isinstance(node, sk.SearchAnd):
            stack.extend(node.keys)
    return False


async def do_search(s: Session, tag: bytes, cmd: c.Search) -> bytes:
    from .search import search as run_search

    assert s.account is not None
    view = _view(s)
    verb = "UID SEARCH" if cmd.uid else "SEARCH"
    if cmd.charset is not None and cmd.charset not in CHARSETS:
        raise Refused(f"Charset {cmd.charset} is not supported", Code.badcharset(CHARSETS))
    uses_modseq = _uses_modseq(cmd.key)
    if uses_modseq:
        s.enable_condstore()
    metas = {m.uid: m for m in await s.app.store.list_messages(view.mailbox_id)}
    messages = [metas.get(u) or MessageMeta(u, 0, "", 0, 0.0, 0, "") for u in view.uids]
    saved = list(s.saved) if s.saved is not None else None
    wants_save = cmd.return_options is not None and "SAVE" in cmd.return_options
    try:
        seqs = await run_search(s.app.store, view.mailbox_id, messages, cmd.key, saved=saved, now=datetime.now(timezone.utc))
    except Exception:
        if wants_save:
            s.saved = []  # RFC 5182 2.1: a failed SEARCH SAVE empties the saved result
        raise
    seqs = [n for n in seqs if view.uids[n - 1] in metas]
    numbers = [view.uids[n - 1] for n in seqs] if cmd.uid else seqs
    modseq = None
    if uses_modseq and seqs:
        modseq = max(metas[view.uids[n - 1]].modseq for n in seqs)
    options = cmd.return_options
    if options is None and not s.rev2:
        s.send(r.search(numbers, modseq))
        return r.ok(tag, f"{verb} completed")
    options = options or ("ALL",)
    if wants_save:
        chosen = seqs
        if "MIN" in options or "MAX" in options:  # RFC 5182 2.4
            pick = set()
            if seqs and "MIN" in options:
                pick.add(seqs[0])
            if seqs and "MAX" in options:
                pick.add(seqs[-1])
            if "ALL" in options or "COUNT" in options:
                pick = set(seqs)
            chosen = sorted(pick)
        s.saved = [view.uids[n - 1] for n in chosen]
    if set(options) != {"SAVE"}:
        s.send(r.esearch(
            tag, uid=cmd.uid,
            min=numbers[0] if numbers and "MIN" in options else None,
            max=numbers[-1] if numbers and "MAX" in options else None,
            all=numbers if numbers and "ALL" in options else None,
            count=len(numbers) if "COUNT" in options else None,
            modseq=modseq,
        ))
    return r.ok(tag, f"{verb} completed")


__all__ = [
    "do_append", "do_check", "do_close", "do_unselect", "do_expunge", "do_fetch", "do_store",
    "do_copy", "do_search",
]
