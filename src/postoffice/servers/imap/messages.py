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

import asyncio
import dataclasses
import time
from array import array
from bisect import bisect_left
from datetime import datetime, timezone
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ...mail.binary import encode_binary_parts
from ...protocols.imap import FetchAtt, SearchModSeq
from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.grammar import search as sk
from ...protocols.imap.responses import Code
from ...store import DELIVERY_ZONE, SEEN, NotFound, bits_to_flags, flags_to_bits
from . import context
from .errors import BadRequest, Refused
from .mailboxes import find_mailbox
from .selected import Departed, SelectedMailbox

if TYPE_CHECKING:
    from .session import Session

FETCH_BATCH = 1000
# FETCH items answered from the shared index alone (see _fetch_from_index)
_FAST_ATTS = {"UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE"}
_DETAIL_ATTS = {"RFC822.SIZE", "INTERNALDATE"}  # need MailboxIndex.details()
_INDEX_FORMATS = {"UID": b"UID %d", "FLAGS": b"FLAGS %s", "MODSEQ": b"MODSEQ (%d)",
                  "RFC822.SIZE": b"RFC822.SIZE %d", "INTERNALDATE": b"INTERNALDATE %s"}
_INDEX_SLICE = 4096  # messages formatted per slice (about 200-400 KiB of responses)
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
        if message.catenate is not None:  # RFC 4469: built from text and IMAP URLs
            from .catenate import build_message
            message = dataclasses.replace(message, data=await build_message(s, message.catenate))
        if not message.data:
            raise Refused("Empty messages cannot be appended")
        bits, keywords = flags_to_bits(message.flags)
        when, zone = _internal_date(message.internal_date)
        data = message.data
        if message.binary:
            # RFC 3516 4.4: binary parts of a literal8 are kept exactly, stored base64-encoded
            # (BODY[] never carries NUL; BINARY[n] gives the octets back) -- off the event loop
            data = await asyncio.to_thread(lambda raw=data: encode_binary_parts(bytes(raw)))
        items.append((data, bits, " ".join(keywords), when, zone))
    view = s.selected
    if view is not None and view.mailbox_id == box.id and view.claims_recent:
        # RFC 3501 2.3.2: this session is the first told of them: claimed as it commits,
        # not by a second write when the sync below reports them
        uidvalidity, uids, recent_from = await s.app.store.append_claiming_recent(s.account.id, box.id, items)
        if uids:
            view.claimed(recent_from, uids[-1] + 1)
    else:
        uidvalidity, uids = await s.app.store.append(s.account.id, box.id, items)
    return r.ok(tag, "APPEND completed", Code.appenduid(uidvalidity, uids))


def _internal_date(given: datetime | None) -> tuple[float, int]:
    """APPEND's date-time as (instant, zone in minutes east of UTC): the zone is kept for FETCH
    INTERNALDATE and SEARCH BEFORE/ON/SINCE (RFC 9051 6.4.4); none given: now, as delivered."""
    if given is None:
        return time.time(), DELIVERY_ZONE
    offset = given.utcoffset()
    return given.timestamp(), int(offset.total_seconds()) // 60 if offset is not None else DELIVERY_ZONE


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
    from .fetch import FetchError, fetch_responses, needs_blob_info

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
    for line in view.new_keywords():  # RFC 3501 7.2.6: FLAGS before a FETCH shows a new keyword
        s.send(line)
    fast = {a.name for a in cmd.items} <= _FAST_ATTS  # (items that set \Seen are never fast)
    if fast and any(a.name in _DETAIL_ATTS for a in cmd.items):
        await index.details()  # before positions are taken: it may apply queued events
    removals = index.removals  # positions below stay valid while this does not change
    targets: list[tuple[int, int, int]] = []  # (seq, uid, index position)
    departed: list[tuple[int, int, Departed]] = []  # expunged elsewhere, the client not told yet
    missing = False
    for p in positions:
        uid = view.uids[p]
        i = index.position(uid)
        if i < 0:
            # (a UID FETCH reports the expunge itself, right after: no data for it)
            gone = index.departed.get(uid) if fast and not cmd.uid else None
            if gone is not None and cmd.changedsince is None:
                departed.append((p + 1, uid, gone))
            else:
                missing = True  # expunged by another session; not reported yet
            continue
        if cmd.changedsince is not None and index.modseqs[i] <= cmd.changedsince:
            continue
        targets.append((p + 1, uid, i))
    if cmd.vanished and cmd.changedsince is not None:
        _, gone = await s.app.store.changes_since(view.mailbox_id, cmd.changedsince)
        # "*" is the highest UID ever assigned here, as for SELECT ... QRESYNC: "1:*" must
        # also report the expunged messages above the last remaining one (RFC 7162 3.2.6)
        star = max(index.uidnext - 1, view.uids[-1] if view.uids else 0)
        gone = [u for u in gone if cmd.seqset.contains(u, star) and not view.seq_of(u)]
        if gone:
            s.send(r.vanished(gone, earlier=True))
    atts = list(cmd.items)
    include_uid = cmd.uid
    include_modseq = cmd.changedsince is not None
    if not view.readonly and any(a.sets_seen for a in atts):
        unseen = [uid for _, uid, i in targets if not index.bits[i] & SEEN]
        if unseen:
            # The FLAGS this adds report a flag change: with CONDSTORE it carries MODSEQ,
            # with QRESYNC also UID (RFC 7162 3.1, 3.2.4), as for a STORE
            include_modseq = include_modseq or s.condstore
            include_uid = include_uid or s.qresync
            await s.app.store.store_flags(s.account.id, view.mailbox_id, unseen, "add", SEEN, (), origin=s)
            await index.refresh()
            removals = index.removals
            targets = [(seq, uid, index.position(uid)) for seq, uid, _ in targets]
            targets = [t for t in targets if t[2] >= 0]
            if not any(a.name == "FLAGS" for a in atts):
                atts.append(FetchAtt("FLAGS"))
    if fast:
        start = 0
        for entry in departed:  # in sequence order, between the index's answers
            cut = bisect_left(targets, entry[0], start, key=itemgetter(0))
            await _fetch_from_index(s, view, targets[start:cut], atts, removals, include_uid=include_uid,
                                    include_modseq=include_modseq)
            start = cut
            missing = _fetch_departed(s, view, entry, atts, include_uid=include_uid,
                                      include_modseq=include_modseq) or missing
        await _fetch_from_index(s, view, targets[start:], atts, removals, include_uid=include_uid,
                                include_modseq=include_modseq)
    else:
        with_info = needs_blob_info(atts)
        try:
            for start in range(0, len(targets), FETCH_BATCH):
                batch = targets[start:start + FETCH_BATCH]
                uids = [t[1] for t in batch]
                infos = None
                if with_info:  # one database round trip for both
                    found, infos = await s.app.store.get_messages_with_info(view.mailbox_id, uids)
                else:
                    found = await s.app.store.get_messages(view.mailbox_id, uids)
                metas = {m.uid: m for m in found}
                items = [(seq, metas[uid]) for seq, uid, _ in batch if uid in metas]
                missing = missing or len(items) < len(batch)
                async for chunk in fetch_responses(s.app.store, items, atts, include_uid=include_uid,
                                                   include_modseq=include_modseq, utf8=s.utf8,
                                                   recent=view.recent_predicate(), known_infos=infos):
                    s.send(chunk)
                    await s.io.maybe_flush()
        except FetchError as exc:
            code = exc.code if isinstance(exc.code, bytes) else str(exc.code).encode()
            return r.no(tag, exc.text, code)
    if missing and not cmd.uid:  # a UID FETCH reports the expunge itself, right after
        return r.ok(tag, f"{verb} completed; some messages were expunged meanwhile", Code.EXPUNGEISSUED)
    return r.ok(tag, f"{verb} completed")


async def _fetch_from_index(s: Session, view: SelectedMailbox, targets: list[tuple[int, int, int]],
                            atts: list[FetchAtt], removals: int, *, include_uid: bool,
                            include_modseq: bool) -> None:
    """Answer a FETCH of UID/FLAGS/MODSEQ/RFC822.SIZE/INTERNALDATE from the shared index:
    no query, no per-message object. Columns are built per slice and formatted with one
    ``%`` per message; a slice is re-resolved by UID if the index lost messages while this
    coroutine waited for the socket (another session's expunge shifts positions)."""
    from .fetch import internal_date

    index = view.index
    names = [a.name for a in atts]
    order = list(dict.fromkeys((["UID"] if include_uid and "UID" not in names else []) + names
                               + (["MODSEQ"] if include_modseq and "MODSEQ" not in names else [])))
    fmt = b"* %d FETCH (" + b" ".join(_INDEX_FORMATS[n] for n in order) + b")\r\n"
    by_bits: dict[int, bytes] = {}
    by_flags: dict[tuple[int, str], bytes] = {}
    recent = view.recent_predicate()

    def flags_column(bits: bytes, uids: list[int]) -> list[bytes]:
        col = []
        for b in bits:
            fl = by_bits.get(b)
            if fl is None:
                fl = by_bits[b] = r.flag_list(bits_to_flags(b, ""))
            col.append(fl)
        keywords = index.keywords
        if keywords:
            for k, u in enumerate(uids):
                kw = keywords.get(u)
                if kw:
                    key = (bits[k], kw)
                    fl = by_flags.get(key)
                    if fl is None:
                        fl = by_flags[key] = r.flag_list(bits_to_flags(*key))
                    col[k] = fl
        if recent is not None:  # RFC 3501 2.3.2: this session's \Recent messages
            for k, u in enumerate(uids):
                if recent(u):
                    col[k] = b"(\\Recent" + (b" " if col[k] != b"()" else b"") + col[k][1:]
        return col

    step = _INDEX_SLICE
    for start in range(0, len(targets), step):
        chunk = targets[start:start + step]
        if index.removals != removals:  # positions may have moved: look them up again
            chunk = [(seq, uid, index.position(uid)) for seq, uid, _ in chunk]
            chunk = [t for t in chunk if t[2] >= 0]
            if not chunk:
                continue
        seqs = [t[0] for t in chunk]
        uids = [t[1] for t in chunk]
        positions = [t[2] for t in chunk]
        first, last = positions[0], positions[-1]
        if positions == list(range(first, last + 1)):  # contiguous (1:*): slices, no lookups
            def column(arr: Any) -> Any:
                return arr[first:last + 1]
        else:
            pick = itemgetter(*positions)

            def column(arr: Any) -> Any:
                got = pick(arr)
                return got if len(chunk) > 1 else (got,)
        cols: list[Any] = [seqs]
        for name in order:
            if name == "UID":
                cols.append(uids)
            elif name == "FLAGS":
                cols.append(flags_column(bytes(column(index.bits)), uids))
            elif name == "MODSEQ":
                cols.append(column(index.modseqs))
            elif name == "RFC822.SIZE":
                cols.append(column(index.sizes))
            else:  # INTERNALDATE
                cols.append(list(map(internal_date, column(index.dates), column(index.zones))))
        s.send(b"".join(map(fmt.__mod__, zip(*cols))))
        await s.io.maybe_flush()


def _fetch_departed(s: Session, view: SelectedMailbox, entry: tuple[int, int, Departed],
                    atts: list[FetchAtt], *, include_uid: bool, include_modseq: bool) -> bool:
    """FETCH of a message another session expunged that this client still knows: RFC 2180
    section 4.1.1 lets the server return its data until it can send the EXPUNGE (as Dovecot
    does), from what the index remembered when it left. True if it could not be answered
    (a size or date that was never loaded)."""
    from .fetch import internal_date

    seq, uid, gone = entry
    names = list(dict.fromkeys((["UID"] if include_uid else []) + [a.name for a in atts]
                               + (["MODSEQ"] if include_modseq else [])))
    if gone.size is None and ("RFC822.SIZE" in names or "INTERNALDATE" in names):
        return True
    values = {"UID": b"UID %d" % uid, "MODSEQ": b"MODSEQ (%d)" % gone.modseq}
    flags = bits_to_flags(gone.bits, gone.keywords)
    recent = view.recent_predicate()
    if recent is not None and recent(uid):
        flags.insert(0, "\\Recent")
    values["FLAGS"] = b"FLAGS " + r.flag_list(flags)
    if gone.size is not None and gone.date is not None:
        values["RFC822.SIZE"] = b"RFC822.SIZE %d" % gone.size
        values["INTERNALDATE"] = b"INTERNALDATE " + internal_date(gone.date, gone.zone)
    s.send(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(values[n] for n in names)))
    return False


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
    for line in view.new_keywords():  # RFC 3501 7.2.6: announce a keyword this STORE added first
        s.send(line)
    failed_set = set(failed)
    if not cmd.silent:
        for p in positions:
            uid = view.uids[p]
            i = index.position(uid)
            if i >= 0 and uid not in failed_set:
                s.send(view.flags_response(p + 1, i, uid=cmd.uid or s.qresync, modseq=s.condstore))
    elif s.condstore:
        # RFC 7162 3.1.3: with CONDSTORE an untagged FETCH is sent even for .SILENT, and it
        # carries MODSEQ (without FLAGS), so the client's cached mod-sequences stay right
        for p in positions:
            uid = view.uids[p]
            i = index.position(uid)
            if i >= 0 and uid not in failed_set:
                prefix = b"UID %d " % uid if cmd.uid or s.qresync else b""
                s.send(b"* %d FETCH (%sMODSEQ (%d))\r\n" % (p + 1, prefix, index.modseqs[i]))
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
    await _learn_junk_move(s, view.mailbox, target, [b for _, b in pairs])
    if move:
        s.send(r.untagged_ok("Moved", code))  # RFC 6851 4.3: COPYUID before the expunges
        return r.ok(tag, f"{verb} completed")
    return r.ok(tag, f"{verb} completed", code)


async def _learn_junk_move(s: Session, source: Any, target: Any, uids: list[int]) -> None:
    """Issue 15: a message moved or copied into Junk is learned by rspamd as spam, one taken
    out of Junk as ham (services.spamfilter.RspamdLearner; in the background)."""
    learner = getattr(s.app, "spam_learner", None)
    if learner is None or not uids:
        return
    kind = learner.kind_of_move(source, target)
    if kind is None:
        return
    account_id = s.account.id if s.account is not None else 0
    if not (await s.app.store.spam_filter_wanted([account_id])).get(account_id, True):
        return  # filtering is off for this address: its moves teach rspamd nothing either
    store, mailbox_id = s.app.store, target.id

    async def load() -> list[bytes]:
        return [await store.read_blob(m.blob_id) for m in await store.get_messages(mailbox_id, uids)]
    learner.schedule(kind, load)


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
    from .search import needs_details
    from .search import search as run_search

    assert s.account is not None
    view = _view(s)
    verb = "UID SEARCH" if cmd.uid else "SEARCH"
    if cmd.charset is not None and cmd.charset not in CHARSETS:
        raise Refused(f"Charset {cmd.charset} is not supported", Code.badcharset(CHARSETS))
    context.check_tag(s, tag, cmd.return_options)  # RFC 5267 4.3: UPDATE with a live tag is BAD
    uses_modseq = _uses_modseq(cmd.key)
    if uses_modseq:
        s.enable_condstore()
    messages, present = await _search_columns(view, needs_details(cmd.key))
    saved = list(s.saved) if s.saved is not None else None
    wants_save = cmd.return_options is not None and "SAVE" in cmd.return_options
    try:
        seqs = await run_search(s.app.store, view.mailbox_id, messages, cmd.key, saved=saved,
                                now=datetime.now(timezone.utc), recent=view.recent_predicate())
    except Exception:
        if wants_save:
            s.saved = []  # RFC 5182 2.1: a failed SEARCH SAVE empties the saved result
        raise
    if present is not None:  # leave out what was expunged meanwhile (still in the view)
        seqs = [n for n in seqs if n - 1 in present]
    numbers = [view.uids[n - 1] for n in seqs] if cmd.uid else seqs
    options = cmd.return_options
    modseq = None
    if uses_modseq and seqs:
        # RFC 4731 3.2 / RFC 7162 3.1.5: the highest mod-sequence of the messages *returned*:
        # a lone MIN or MAX (or both, without ALL/COUNT) returns only those messages
        returned = seqs
        if options and not {"ALL", "COUNT"} & set(options) and {"MIN", "MAX"} & set(options):
            returned = ([seqs[0]] if "MIN" in options else []) + ([seqs[-1]] if "MAX" in options else [])
        modseq = max(messages.modseqs[n - 1] for n in returned)
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
        s.send(context.result(tag, cmd.uid, options, numbers, modseq, cmd.partial))
    if "UPDATE" in options:  # CONTEXT=SEARCH (RFC 5267 4.3): keep this result current
        context.register(s, tag, cmd.uid, cmd.key, None, [view.uids[n - 1] for n in seqs])
    return r.ok(tag, f"{verb} completed")


async def _search_columns(view: SelectedMailbox, details: bool) -> tuple[Any, set[int] | None]:
    """The session's view as SEARCH columns, from the shared index (no query unless sizes and
    dates are needed for the first time), and the view positions still in the index (None:
    all of them). The arrays are copied (memcpy): the index may change while SEARCH awaits."""
    from .search import Columns

    index = view.index
    await index.refresh()
    if details:
        await index.details()
    # No await from here on.
    keywords = dict(index.keywords)
    n = len(view.uids)
    if index.uids[:n] == view.uids:  # the usual case (maybe with new messages not announced yet)
        return Columns(index.uids[:n], bytes(index.bits[:n]), keywords,
                       index.sizes[:n] if details and index.sizes is not None else None,
                       index.dates[:n] if details and index.dates is not None else None,
                       index.modseqs[:n],
                       zones=index.zones[:n] if details and index.zones is not None else None), None
    # Messages expunged elsewhere but not yet reported stay in the view (RFC 9051 7.5.1) and
    # get placeholder values; new messages the view has not announced are left out.
    pos = [index.position(u) for u in view.uids]
    present = {k for k, i in enumerate(pos) if i >= 0}

    def col(arr: Any, typecode: str, empty: Any) -> Any:
        return array(typecode, [arr[i] if i >= 0 else empty for i in pos])
    return Columns(view.uids[:], col(index.bits, "B", 0), keywords,
                   col(index.sizes, "Q", 0) if details and index.sizes is not None else None,
                   col(index.dates, "d", 0.0) if details and index.dates is not None else None,
                   col(index.modseqs, "Q", 0),
                   zones=col(index.zones, "h", 0) if details and index.zones is not None else None), present


__all__ = [
    "do_append", "do_check", "do_close", "do_unselect", "do_expunge", "do_fetch", "do_store",
    "do_copy", "do_search",
]
