"""Mailbox commands: SELECT/EXAMINE (with CONDSTORE/QRESYNC), CREATE, DELETE, RENAME,
SUBSCRIBE/UNSUBSCRIBE, LIST (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE), LSUB, NAMESPACE,
STATUS and QUOTA (RFC 9051 6.3, RFC 5258, 5819, 6154, 7162, 9208).

Names: the store keeps UTF-8 names with "/" as the separator, one namespace per account
(``("" "/")``); on the wire they are modified UTF-7 unless UTF8=ACCEPT or IMAP4rev2 is enabled
(``mailbox_name`` / ``wire_name``). ``validate_mailbox_name`` refuses empty parts, "." and "..",
control characters and wildcards, so a name can never reach outside the account.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

from ...protocols.imap import Examine, decode_mailbox_name, encode_mailbox_name
from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.responses import Code
from ...store import DELETED, SEEN, AlreadyExists, Mailbox, MailboxStatus, NotFound, validate_mailbox_name
from ...store.records import FLAG_NAMES
from .errors import BadRequest, Refused
from .selected import SelectedMailbox

if TYPE_CHECKING:
    from .session import Session

SEPARATOR = "/"
SPECIAL_USES = {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
SYSTEM_FLAGS = [name for _, name in FLAG_NAMES]
# bits -> 1 if \Seen (for finding the first unseen message with bytes.find)
_SEEN_TABLE = bytes(1 if b & SEEN else 0 for b in range(256))


def mailbox_name(s: Session, raw: bytes) -> str:
    """Decode a mailbox name from a command and normalise it (INBOX, validity)."""
    name = decode_mailbox_name(raw, s.utf8)
    return validate_mailbox_name(name)


def wire_name(s: Session, name: str) -> bytes:
    return encode_mailbox_name(name, s.utf8)


async def find_mailbox(s: Session, raw: bytes) -> Mailbox:
    assert s.account is not None
    name = mailbox_name(s, raw)
    box = await s.server.mailboxes.get(s.account.id, name)
    if box is None:
        raise Refused(f"Mailbox {name} does not exist", Code.NONEXISTENT)
    return box


# == SELECT / EXAMINE ============================================================================

async def do_select(s: Session, tag: bytes, cmd: c.Select | c.Examine) -> bytes:
    assert s.account is not None
    readonly = isinstance(cmd, Examine)
    verb = "EXAMINE" if readonly else "SELECT"
    if cmd.qresync is not None and not s.qresync:
        raise BadRequest("QRESYNC parameters need ENABLE QRESYNC first")
    had = s.selected is not None
    s.unselect()  # RFC 9051 6.3.2: even a failing SELECT leaves no mailbox selected
    if had:
        s.send(r.untagged_ok("Previous mailbox is now closed", Code.CLOSED))
    box = await find_mailbox(s, cmd.mailbox)
    if cmd.condstore or cmd.qresync is not None:
        s.enable_condstore()
    view = await SelectedMailbox.open(s.server.indexes, s.app.bus, box, box.name, readonly)
    s.selected = view
    s.state = c.State.SELECTED
    s.saved = None
    index = view.index
    flags_lines = view.flags_lines()  # FLAGS and PERMANENTFLAGS, keywords included
    s.send(flags_lines[0])
    s.send(r.exists(view.exists))
    if s.rev2:  # RFC 9051 6.3.2: LIST with the mailbox name and accurate attributes
        names = {b.name for b in await s.server.mailboxes.list(s.account.id)}
        attrs = [_children_attr(box.name, _parents(names))] + ([box.special_use] if box.special_use else [])
        s.send(r.list_response(attrs, SEPARATOR, wire_name(s, box.name)))
    else:
        await view.start_recent()  # RFC 3501 2.3.2: EXAMINE claims nothing
        s.send(r.recent(view.recent_count()))
        first_unseen = bytes(index.bits).translate(_SEEN_TABLE).find(b"\x00")
        if first_unseen >= 0:
            s.send(r.untagged_ok(f"Message {first_unseen + 1} is the first unseen", Code.unseen(first_unseen + 1)))
    if readonly:
        s.send(r.untagged_ok("No permanent flags permitted", b"PERMANENTFLAGS ()"))
    else:
        s.send(flags_lines[1])
    s.send(r.untagged_ok("UIDs valid", Code.uidvalidity(index.uidvalidity)))
    s.send(r.untagged_ok("Predicted next UID", Code.uidnext(index.uidnext)))
    s.send(r.untagged_ok("Highest", Code.highestmodseq(index.highestmodseq)))
    q = cmd.qresync
    if q is not None and q.uidvalidity == index.uidvalidity and q.modseq < index.highestmodseq:
        await _qresync(s, view, q)
    code = Code.READ_ONLY if readonly else Code.READ_WRITE
    return r.ok(tag, f"{verb} completed", code)


async def _qresync(s: Session, view: SelectedMailbox, q: c.QresyncParams) -> None:
    """RFC 7162 3.2.5.2: VANISHED (EARLIER) for what was expunged since the client's modseq,
    then FETCH (UID FLAGS MODSEQ) for what changed. The tombstones make this cost what changed."""
    changed, vanished = await s.app.store.changes_since(view.mailbox_id, q.modseq)
    if q.known_uids is not None:
        star = max(view.index.uidnext - 1, 0)
        vanished = [u for u in vanished if q.known_uids.contains(u, star)]
    # A UID still in the view was expunged after the snapshot: it is reported the normal way.
    vanished = [u for u in vanished if not view.seq_of(u)]
    if vanished:
        s.send(r.vanished(vanished, earlier=True))
    index = view.index
    for meta in changed:
        seq, i = view.seq_of(meta.uid), index.position(meta.uid)
        if seq and i >= 0:
            s.send(view.flags_response(seq, i, uid=True, modseq=True))


# == CREATE / DELETE / RENAME / SUBSCRIBE ========================================================

async def do_create(s: Session, tag: bytes, cmd: c.Create) -> bytes:
    assert s.account is not None
    raw = cmd.mailbox[:-1] if cmd.mailbox.endswith(b"/") else cmd.mailbox  # RFC 9051 6.3.4
    name = mailbox_name(s, raw)
    if name == "INBOX":
        raise Refused("INBOX always exists", Code.ALREADYEXISTS)
    use = None
    if cmd.special_use:
        uses = {u.capitalize() if not u.startswith("\\") else "\\" + u[1:].capitalize() for u in cmd.special_use}
        if len(uses) > 1 or not uses <= SPECIAL_USES:
            raise Refused("Only one of " + " ".join(sorted(SPECIAL_USES)) + " may be given", b"USEATTR")
        use = uses.pop()
    try:
        await s.app.store.create_mailbox(s.account.id, name, use)
    finally:
        s.server.mailboxes.invalidate(s.account.id)
    return r.ok(tag, "CREATE completed")


async def do_delete(s: Session, tag: bytes, cmd: c.Delete) -> bytes:
    assert s.account is not None
    name = mailbox_name(s, cmd.mailbox)
    if name == "INBOX":
        raise Refused("INBOX cannot be deleted", Code.CANNOT)
    box = await s.app.store.get_mailbox(s.account.id, name)
    if box is None:
        raise Refused(f"Mailbox {name} does not exist", Code.NONEXISTENT)
    try:
        await s.app.store.delete_mailbox(s.account.id, name)
    except AlreadyExists:
        raise Refused(f"Mailbox {name} has child mailboxes; delete them first", Code.HASCHILDREN) from None
    finally:
        s.server.mailboxes.invalidate(s.account.id)
    return r.ok(tag, "DELETE completed")


async def do_rename(s: Session, tag: bytes, cmd: c.Rename) -> bytes:
    assert s.account is not None
    old = mailbox_name(s, cmd.mailbox)
    new = mailbox_name(s, cmd.new_name)
    if new == "INBOX":
        raise Refused("INBOX already exists", Code.ALREADYEXISTS)
    if await s.app.store.get_mailbox(s.account.id, old) is None:
        raise Refused(f"Mailbox {old} does not exist", Code.NONEXISTENT)
    try:
        await s.app.store.rename_mailbox(s.account.id, old, new)
    finally:
        s.server.mailboxes.invalidate(s.account.id)
    return r.ok(tag, "RENAME completed")


async def do_subscribe(s: Session, tag: bytes, cmd: c.Subscribe | c.Unsubscribe) -> bytes:
    assert s.account is not None
    name = mailbox_name(s, cmd.mailbox)
    subscribe = isinstance(cmd, c.Subscribe)
    try:
        await s.app.store.set_subscribed(s.account.id, name, subscribe)
    except NotFound:
        raise Refused(f"Mailbox {name} does not exist", Code.NONEXISTENT) from None
    finally:
        s.server.mailboxes.invalidate(s.account.id)  # no event for subscriptions
    return r.ok(tag, ("SUBSCRIBE" if subscribe else "UNSUBSCRIBE") + " completed")


# == LIST / LSUB ==================================================================================

class _Pattern:
    """A LIST pattern (RFC 9051 6.3.9: ``*`` matches anything, ``%`` anything but the separator)
    matched without backtracking: a bit-parallel NFA (one bit per pattern position, Python ints),
    so ``LIST "" "****...x"`` or ``"*a*a*a..."`` costs len(name) big-int steps, never exponential
    time (a regex ``.*.*.*x`` would backtrack catastrophically and block the event loop)."""

    __slots__ = ("literal", "star", "percent", "closure", "accept")

    def __init__(self, pattern: str) -> None:
        tokens: list[str] = []
        for ch in pattern:
            if ch in "*%" and tokens and tokens[-1] in "*%":
                # a run of wildcards is one wildcard: "*" if any of them is "*"
                tokens[-1] = "*" if "*" in (ch, tokens[-1]) else "%"
            else:
                tokens.append(ch)
        self.literal: dict[str, int] = {}
        self.star = self.percent = 0
        for i, tok in enumerate(tokens):
            if tok == "*":
                self.star |= 1 << i
            elif tok == "%":
                self.percent |= 1 << i
            else:
                self.literal[tok] = self.literal.get(tok, 0) | 1 << i
        self.closure = self.star | self.percent  # a wildcard may match nothing
        self.accept = 1 << len(tokens)

    def fullmatch(self, name: str) -> bool:
        wild = self.closure
        state = 1 | (1 & wild) << 1
        for ch in name:
            loop = self.star if ch == SEPARATOR else wild
            state = (state & self.literal.get(ch, 0)) << 1 | (state & loop)
            if not state:
                return False
            state |= (state & wild) << 1
        return bool(state & self.accept)


def _matcher(s: Session, reference: bytes, patterns: tuple[bytes, ...]) -> list[_Pattern]:
    regexes = []
    for raw in patterns:
        full = reference + raw
        try:
            text = decode_mailbox_name(full, s.utf8) if full else ""
        except ValueError:
            continue  # a pattern no name can match
        if not text.isascii():
            text = unicodedata.normalize("NFC", text)  # names are stored in NFC (RFC 9051 §5.1)
        if text[:5].upper() == "INBOX" and (len(text) == 5 or text[5] in "/*%"):
            text = "INBOX" + text[5:]
        regexes.append(_Pattern(text))
    return regexes


async def do_list(s: Session, tag: bytes, cmd: c.List) -> bytes:
    """LIST with the LIST-EXTENDED selection options (RFC 5258 3, RFC 9051 6.3.9).

    With SUBSCRIBED the candidates are the subscription list, which is its own list of names
    (RFC 5258 3.5): a subscribed name whose mailbox is gone is listed ``\\NonExistent``. With
    RECURSIVEMATCH a name that matches the pattern is also returned, with
    ``CHILDINFO ("SUBSCRIBED")``, when a subscribed descendant does *not* itself match the
    pattern (so it would not be listed): RFC 5258 3.5 and its example 9 ("Foo2" is listed
    for "Foo2/Bar1" under "*2", "Baz2" is not, its subscribed children match "*2")."""
    assert s.account is not None
    sel, ret = cmd.selection_options, cmd.return_options
    if "RECURSIVEMATCH" in sel and not (sel - {"RECURSIVEMATCH", "REMOTE"}):
        raise BadRequest("RECURSIVEMATCH needs another selection option (RFC 5258)")
    if len(cmd.patterns) == 1 and cmd.patterns[0] == b"" and not sel:
        # RFC 9051 6.3.9: the hierarchy delimiter and root name
        s.send(r.list_response(["\\Noselect"], SEPARATOR, b""))
        return r.ok(tag, "LIST completed")
    regexes = _matcher(s, cmd.reference, cmd.patterns)
    boxes = await s.server.mailboxes.list(s.account.id)
    by_name = {b.name: b for b in boxes}
    names = set(by_name)
    subscribed_only = "SUBSCRIBED" in sel
    special_only = "SPECIAL-USE" in sel
    recursive = "RECURSIVEMATCH" in sel and subscribed_only
    show_subscribed = subscribed_only or "SUBSCRIBED" in ret
    subs = set(await s.app.store.list_subscriptions(s.account.id)) if show_subscribed else set()
    status_items = cmd.status_items if "STATUS" in ret else None

    def matches(name: str) -> bool:
        return any(rx.fullmatch(name) for rx in regexes)

    parents = _parents(names)  # every name with a mailbox below it: one pass, not one per name
    candidates = set(names)
    if subscribed_only:
        candidates |= subs
    if recursive:
        candidates |= {SEPARATOR.join(n.split(SEPARATOR)[:k]) for n in subs for k in range(1, n.count(SEPARATOR) + 1)}
    for name in sorted(candidates):
        if not matches(name):
            continue
        box = by_name.get(name)
        extended: dict[str, bytes] = {}
        meets = not (subscribed_only and name not in subs) and not (special_only and not (box and box.special_use))
        if recursive:
            prefix = name + SEPARATOR
            if any(n.startswith(prefix) and not matches(n) for n in subs):
                extended["CHILDINFO"] = b'("SUBSCRIBED")'
        if not meets and not extended:
            continue
        attrs: list[str] = []
        if box is None:
            attrs.append("\\NonExistent")  # RFC 5258 3.4 (implies \\Noselect)
            if name in parents:
                attrs.append("\\HasChildren")
        else:
            attrs.append(_children_attr(name, parents))
            if box.special_use:
                attrs.append(box.special_use)
        if show_subscribed and name in subs:
            attrs.append("\\Subscribed")
        s.send(r.list_response(attrs, SEPARATOR, wire_name(s, name), extended=extended or None))
        if status_items and box is not None:
            s.send(await status_line(s, box, status_items))
    return r.ok(tag, "LIST completed")


def _parents(names: set[str]) -> set[str]:
    """Every name (existing or not) that has a mailbox of ``names`` somewhere below it."""
    out: set[str] = set()
    for name in names:
        parts = name.split(SEPARATOR)
        out.update(SEPARATOR.join(parts[:k]) for k in range(1, len(parts)))
    return out


def _children_attr(name: str, parents: set[str]) -> str:
    """RFC 3348 / RFC 9051 7.3.1: ``parents`` from `_parents` of the account's mailboxes."""
    return "\\HasChildren" if name in parents else "\\HasNoChildren"


async def do_lsub(s: Session, tag: bytes, cmd: c.Lsub) -> bytes:
    """LSUB (RFC 3501 6.3.9) over the subscription list, deleted mailboxes' names included."""
    assert s.account is not None
    regexes = _matcher(s, cmd.reference, (cmd.pattern,))
    subscribed = set(await s.app.store.list_subscriptions(s.account.id))
    # RFC 3501 6.3.9: when "%" stops above a subscribed mailbox whose parent is not
    # subscribed ("foo/bar" subscribed, "foo" not, LSUB "" "%"), the parent is returned
    # flagged \\Noselect.
    parents: set[str] = set()
    for name in subscribed:
        if any(rx.fullmatch(name) for rx in regexes):
            continue
        parts = name.split(SEPARATOR)
        for k in range(1, len(parts)):
            parent = SEPARATOR.join(parts[:k])
            if parent not in subscribed and any(rx.fullmatch(parent) for rx in regexes):
                parents.add(parent)
    for name in sorted(subscribed | parents):
        if name in parents:
            s.send(r.lsub_response(["\\Noselect"], SEPARATOR, wire_name(s, name)))
        elif any(rx.fullmatch(name) for rx in regexes):
            s.send(r.lsub_response([], SEPARATOR, wire_name(s, name)))
    return r.ok(tag, "LSUB completed")


async def do_namespace(s: Session, tag: bytes, cmd: c.Namespace) -> bytes:
    s.send(r.namespace([(b"", SEPARATOR)], None, None))
    return r.ok(tag, "NAMESPACE completed")


# == STATUS =======================================================================================

# STATUS items the shared index answers (SIZE needs the sizes: the query)
_INDEX_STATUS = frozenset({"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED",
                           "HIGHESTMODSEQ", "APPENDLIMIT"})  # RECENT: the store knows the claims
_DELETED_TABLE = bytes(1 if b & DELETED else 0 for b in range(256))


async def _index_status(s: Session, box: Mailbox, items: tuple[str, ...]) -> MailboxStatus | None:
    """STATUS from the mailbox's shared index when one is loaded (the index follows every
    change event, as for SELECT): no query. None: ask the store."""
    indexes = s.server.indexes
    index = indexes.peek(box)
    if index is None or not _INDEX_STATUS.issuperset(items):
        return None
    await index.refresh()
    if indexes.peek(box) is not index:  # released and closed, or gone, meanwhile
        return None
    bits = index.bits
    n = len(bits)
    return MailboxStatus(n, n - bits.translate(_SEEN_TABLE).count(1), bits.translate(_DELETED_TABLE).count(1),
                         0, index.uidnext, index.uidvalidity, index.highestmodseq)


async def status_line(s: Session, box: Mailbox, items: tuple[str, ...]) -> bytes:
    st = await _index_status(s, box, items) or await s.app.store.mailbox_status(box.id)
    values = {
        "MESSAGES": st.messages, "UIDNEXT": st.uidnext, "UIDVALIDITY": st.uidvalidity,
        "UNSEEN": st.unseen, "DELETED": st.deleted, "SIZE": st.size, "RECENT": st.recent,
        "HIGHESTMODSEQ": st.highestmodseq, "APPENDLIMIT": s.app.config.limits.imap_max_literal,
    }
    return r.status_response(wire_name(s, box.name), {k: values[k] for k in items if k in values})


async def do_status(s: Session, tag: bytes, cmd: c.Status) -> bytes:
    box = await find_mailbox(s, cmd.mailbox)
    if "HIGHESTMODSEQ" in cmd.items:
        s.enable_condstore()
    s.send(await status_line(s, box, cmd.items))
    return r.ok(tag, "STATUS completed")


# == QUOTA (RFC 9208) =============================================================================

QUOTA_ROOT = b""


async def _quota_lines(s: Session) -> list[bytes] | None:
    assert s.account is not None
    account = await s.app.store.get_account_by_id(s.account.id)
    if account is None or not account.quota_bytes:
        return None
    used = await s.app.store.quota_used(account.id)
    return [r.quota(QUOTA_ROOT, [("STORAGE", (used + 1023) // 1024, account.quota_bytes // 1024)])]


async def do_getquotaroot(s: Session, tag: bytes, cmd: c.GetQuotaRoot) -> bytes:
    box = await find_mailbox(s, cmd.mailbox)
    lines = await _quota_lines(s)
    s.send(r.quotaroot(wire_name(s, box.name), [QUOTA_ROOT] if lines else []))
    for line in lines or ():
        s.send(line)
    return r.ok(tag, "GETQUOTAROOT completed")


async def do_getquota(s: Session, tag: bytes, cmd: c.GetQuota) -> bytes:
    lines = await _quota_lines(s) if cmd.root == QUOTA_ROOT else None
    if not lines:
        raise Refused("No such quota root", Code.NONEXISTENT)
    for line in lines:
        s.send(line)
    return r.ok(tag, "GETQUOTA completed")


async def do_setquota(s: Session, tag: bytes, cmd: c.SetQuota) -> bytes:
    raise Refused("Quotas are set by the administrator in the control panel", Code.NOPERM)


__all__ = [
    "do_select", "do_create", "do_delete", "do_rename", "do_subscribe", "do_list", "do_lsub",
    "do_namespace", "do_status", "do_getquota", "do_getquotaroot", "do_setquota", "mailbox_name",
    "wire_name", "find_mailbox",
]
