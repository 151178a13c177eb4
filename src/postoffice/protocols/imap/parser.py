"""``parse_command``: one complete command (literals inline) -> event value.

RFC 9051 section 9::

    command         = tag SP (command-any / command-auth / command-nonauth /
                      command-select) CRLF
    command-any     = "CAPABILITY" / "LOGOUT" / "NOOP" / id
    command-auth    = append / create / delete / enable / examine / list /
                      namespace-command / rename / select / status / subscribe /
                      unsubscribe / idle / getquota / getquotaroot / setquota
    command-nonauth = login / authenticate / "STARTTLS"
    command-select  = "CHECK" / "CLOSE" / "UNSELECT" / "EXPUNGE" / copy / move /
                      fetch / store / search / uid
    uid             = "UID" SP (copy / move / fetch / search / store / uid-expunge)

Extensions: RFC 7162 (CONDSTORE/QRESYNC), 5258/5819 (LIST-EXTENDED/STATUS),
6154 (SPECIAL-USE), 4731/5182 (ESEARCH/SEARCHRES), 3502 (MULTIAPPEND),
3516 (BINARY), 6855 (UTF8=ACCEPT), 2971 (ID), 9208 (QUOTA), 4959 (SASL-IR).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable

from .commands import (
    LIST_RETURN_OPTIONS, LIST_SELECTION_OPTIONS, SEARCH_RETURN_OPTIONS, STATUS_ITEMS,
    Append, AppendMessage, Authenticate, CancelUpdate, Capability, Check, Close, Command, Compress, Copy,
    Create,
    Delete, Enable, Examine, Expunge, Fetch, GenUrlAuth, GetMetadata, GetQuota, GetQuotaRoot, Id, Idle,
    List, Login,
    Logout, Lsub, Move, Namespace, Noop, Notify, NotifyGroup, QresyncParams, Rename, ResetKey, Search, Select, SetMetadata,
    SetQuota,
    Sort, StartTls, Status, Store, StoreMode, Subscribe, Thread, UidBatches, UidExpunge, Unselect,
    Unsubscribe, UrlFetch,
)
from .events import CommandReceived, InvalidCommand
from .grammar.fetch_att import FetchAtt, parse_fetch_att, parse_fetch_atts
from .grammar.reader import ATOM_RE, MAX_NUMBER64, TAG_RE, ParseError, Reader
from .grammar.search import MAX_SEARCH_DEPTH, SearchAnd, SearchKey, parse_flag, parse_search_key
from .grammar.sequence_set import SequenceSet, parse_sequence_set
from .grammar.sort import parse_sort_criteria, parse_thread_algorithm

__all__ = ["parse_command", "COMMAND_VERBS"]

_Parser = Callable[[Reader], Command]


def parse_command(data: bytes, *, max_search_depth: int = MAX_SEARCH_DEPTH,
                  literals: dict[int, bytearray] | None = None) -> CommandReceived | InvalidCommand:
    """Parse one complete command.

    ``data`` is the tag, the command and its arguments with every literal's
    contents inline exactly as on the wire (``{n}`` / ``{n+}`` / ``~{n}``
    header, CRLF, then n bytes); the final CRLF is optional. Returns
    ``CommandReceived(tag, command)`` or ``InvalidCommand(tag, message)``;
    never raises for bad input. A literal whose contents start at offset k may
    instead be left out of ``data`` and given as ``literals[k]`` (the
    connection does so for large APPEND literals, which are never copied).
    """
    m = TAG_RE.match(data)
    if m is None or data[m.end() : m.end() + 1] != b" ":
        tag = m.group() if m is not None and m.end() == len(data.rstrip(b"\r\n")) else None
        return InvalidCommand(tag, "missing command" if tag else "invalid or missing tag")
    tag = m.group()
    r = Reader(data, m.end() + 1, literals=literals)
    vm = ATOM_RE.match(data, r.pos)
    if vm is None:
        return InvalidCommand(tag, "missing or invalid command name")
    verb = vm.group().upper()
    r.pos = vm.end()
    uid = verb == b"UID"
    if uid:
        if not r.try_sp() or (um := ATOM_RE.match(data, r.pos)) is None:
            return InvalidCommand(tag, "UID needs a command", verb=verb)
        sub = um.group().upper()
        r.pos = um.end()
        verb = b"UID " + sub
        handler = _UID_COMMANDS.get(sub)
    else:
        handler = _COMMANDS.get(verb)
    if handler is None:
        return InvalidCommand(
            tag, f"unknown command {verb.decode('ascii', 'replace')}", unknown=True, verb=verb
        )
    try:
        if handler in (_search, _sort, _thread):
            command: Command = handler(r, uid=uid, max_depth=max_search_depth)
        elif uid:
            command = handler(r, True)  # type: ignore[call-arg]
        else:
            command = handler(r)
        rest = data[r.pos :]
        if rest not in (b"", b"\r\n", b"\n"):
            raise ParseError("unexpected data after the command" if rest[:1] != b"\r" else "stray CR", r.pos)
    except ParseError as exc:
        return InvalidCommand(tag, f"{verb.decode('ascii')}: {exc.message}", verb=verb)
    except RecursionError:  # pragma: no cover - depth limits make this unreachable
        return InvalidCommand(tag, "command is nested too deeply", verb=verb)
    return CommandReceived(tag, command)


# -- helpers ----------------------------------------------------------------------
def _no_args(cls: type) -> _Parser:
    def parse(r: Reader) -> Command:
        return cls()  # type: ignore[no-any-return]

    return parse


def _mod_sequence(r: Reader, *, zero_ok: bool = True) -> int:
    # mod-sequence-value = 1*DIGIT (positive 63-bit); mod-sequence-valzer allows 0.
    n = r.number("a mod-sequence value", limit=MAX_NUMBER64)
    if n == 0 and not zero_ok:
        raise r.fail("mod-sequence value must be positive")
    return n


def _flag_list(r: Reader) -> tuple[str, ...]:
    return tuple(r.paren_list(lambda: parse_flag(r), what="flag list"))


# -- any state ---------------------------------------------------------------
def _id(r: Reader) -> Command:
    # id = "ID" SP id-params-list; id-params-list = "(" *(string SP nstring) ")" / nil
    r.sp()
    if r.try_keyword(b"NIL"):
        return Id(None)
    r.expect(b"(", "'(' or NIL")
    params: dict[str, str | None] = {}
    if r.peek() == 0x29:
        r.pos += 1
        return Id(params)
    while True:
        key = r.string().decode("utf-8", "replace")
        r.sp()
        value = r.nstring()
        params[key] = None if value is None else value.decode("utf-8", "replace")
        if r.peek() == 0x29:
            r.pos += 1
            return Id(params)
        r.sp()


def _enable(r: Reader) -> Command:
    # enable = "ENABLE" 1*(SP capability)
    caps = []
    r.sp()
    caps.append(r.upper_atom("a capability name"))
    while r.try_sp():
        caps.append(r.upper_atom("a capability name"))
    return Enable(tuple(caps))


# -- not authenticated ---------------------------------------------------------
def _authenticate(r: Reader) -> Command:
    # authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp] ; RFC 4959
    # initial-resp = (base64 / "=")
    r.sp()
    mechanism = r.upper_atom("a SASL mechanism name")
    if not r.try_sp():
        return Authenticate(mechanism)
    if r.at(b"=") and r.data[r.pos + 1 : r.pos + 2] in (b"", b"\r", b"\n"):
        r.pos += 1
        return Authenticate(mechanism, b"")
    raw = r.base64("a base64 initial response")
    try:
        decoded = binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        raise r.fail("invalid base64 in the initial response") from None
    return Authenticate(mechanism, decoded)


def _login(r: Reader) -> Command:
    r.sp()
    user = r.astring("a user name")
    r.sp()
    return Login(user, r.astring("a password"))


# -- authenticated --------------------------------------------------------------
def _select_params(r: Reader) -> tuple[bool, QresyncParams | None]:
    # select-params = SP "(" select-param *(SP select-param) ")"      ; RFC 4466
    # select-param  = "CONDSTORE" / "QRESYNC" SP "(" uidvalidity SP
    #                 mod-sequence-value [SP known-uids] [SP seq-match-data] ")"
    condstore = False
    qresync: QresyncParams | None = None

    def param() -> None:
        nonlocal condstore, qresync
        name = r.upper_atom("a SELECT parameter")
        if name == "CONDSTORE":
            condstore = True
        elif name == "QRESYNC":
            r.sp()
            r.expect(b"(")
            uidvalidity = r.nz_number("a UIDVALIDITY")
            r.sp()
            modseq = _mod_sequence(r, zero_ok=False)
            known = None
            seq_match = None
            if r.try_sp():
                if r.peek() != 0x28:
                    # known-uids = sequence-set; "*" is not allowed (RFC 7162 section 7)
                    known = parse_sequence_set(r, allow_saved=False, allow_star=False)
                    if r.try_sp():
                        seq_match = _seq_match(r)
                else:
                    seq_match = _seq_match(r)
            r.expect(b")", "')' closing the QRESYNC parameters")
            qresync = QresyncParams(uidvalidity, modseq, known, seq_match)
        else:
            raise r.fail(f"unknown SELECT parameter {name}")

    r.paren_list(param, allow_empty=False, what="SELECT parameters")
    return condstore, qresync


def _seq_match(r: Reader) -> tuple[SequenceSet, SequenceSet]:
    # seq-match-data = "(" known-sequence-set SP known-uid-set ")"
    r.expect(b"(", "'(' starting the sequence match data")
    seqs = parse_sequence_set(r, allow_saved=False, allow_star=False)
    r.sp()
    uids = parse_sequence_set(r, allow_saved=False, allow_star=False)
    r.expect(b")", "')' closing the sequence match data")
    return seqs, uids


def _select_or_examine(cls: type[Select] | type[Examine]) -> _Parser:
    def parse(r: Reader) -> Command:
        r.sp()
        mailbox = r.mailbox()
        condstore, qresync = False, None
        if r.try_sp():
            condstore, qresync = _select_params(r)
        return cls(mailbox, condstore, qresync)

    return parse


_USE_ATTRS = {a.upper(): a for a in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")}


def _use_attr(r: Reader) -> str:
    # use-attr = "\All" / "\Archive" / "\Drafts" / "\Flagged" / "\Junk" / "\Sent" /
    #            "\Trash" / use-attr-ext ; RFC 6154 section 6
    r.expect(b"\\", "a special-use attribute such as \\Sent")
    name = "\\" + r.atom("a special-use attribute").decode("ascii")
    return _USE_ATTRS.get(name.upper(), name)


def _create(r: Reader) -> Command:
    # create = "CREATE" SP mailbox [create-params]
    # create-param =/ "USE" SP "(" [use-attr *(SP use-attr)] ")"  ; RFC 6154
    r.sp()
    mailbox = r.mailbox()
    uses: list[str] = []
    if r.try_sp():

        def param() -> None:
            name = r.upper_atom("a CREATE parameter")
            if name != "USE":
                raise r.fail(f"unknown CREATE parameter {name}")
            r.sp()
            uses.extend(r.paren_list(lambda: _use_attr(r), what="USE list"))

        r.paren_list(param, allow_empty=False, what="CREATE parameters")
    return Create(mailbox, tuple(uses))


def _mailbox_only(cls: type) -> _Parser:
    def parse(r: Reader) -> Command:
        r.sp()
        return cls(r.mailbox())  # type: ignore[no-any-return]

    return parse


def _rename(r: Reader) -> Command:
    r.sp()
    old = r.mailbox()
    r.sp()
    return Rename(old, r.mailbox())


def _status_items(r: Reader) -> tuple[str, ...]:
    def item() -> str:
        name = r.upper_atom("a status item")
        if name not in STATUS_ITEMS:
            raise r.fail(f"unknown status item {name}")
        return name

    return tuple(r.paren_list(item, allow_empty=False, what="status item list"))


def _list(r: Reader) -> Command:
    # list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
    # (RFC 5258 section 6, RFC 9051 section 9)
    r.sp()
    extended = False
    selection: list[str] = []
    if r.peek() == 0x28:
        extended = True

        def sel() -> str:
            name = r.upper_atom("a LIST selection option")
            if name not in LIST_SELECTION_OPTIONS:
                # RFC 5258 section 3: unrecognised selection options are BAD
                raise r.fail(f"unknown LIST selection option {name}")
            return name

        selection = r.paren_list(sel, what="selection options")
        r.sp()
        sel_set = set(selection)
        # RFC 5258 section 3.1: RECURSIVEMATCH alone (or only with REMOTE) is BAD.
        if "RECURSIVEMATCH" in sel_set and not (sel_set - {"RECURSIVEMATCH", "REMOTE"}):
            raise r.fail("RECURSIVEMATCH needs another selection option")
    reference = r.astring("a reference name")
    r.sp()
    if r.peek() == 0x28:
        extended = True
        patterns = tuple(r.paren_list(r.list_mailbox, allow_empty=False, what="pattern list"))
    else:
        patterns = (r.list_mailbox(),)
    returns: list[str] = []
    status_items: tuple[str, ...] | None = None
    if r.try_sp():
        extended = True
        r.keyword(b"RETURN")
        r.sp()

        def ret() -> str:
            nonlocal status_items
            name = r.upper_atom("a LIST return option")
            if name not in LIST_RETURN_OPTIONS:
                raise r.fail(f"unknown LIST return option {name}")
            if name == "STATUS":
                # RFC 5819: "STATUS" SP "(" status-att *(SP status-att) ")"
                r.sp()
                status_items = _status_items(r)
            return name

        returns = r.paren_list(ret, what="return options")
    return List(reference, patterns, frozenset(selection), frozenset(returns), status_items, extended)


def _lsub(r: Reader) -> Command:
    r.sp()
    reference = r.astring("a reference name")
    r.sp()
    return Lsub(reference, r.list_mailbox())


def _status(r: Reader) -> Command:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return Status(mailbox, _status_items(r))


def _append(r: Reader) -> Command:
    # append = "APPEND" SP mailbox 1*append-message                 ; RFC 3502
    # append-message = append-opts SP append-data
    # append-opts = [SP flag-list] [SP date-time]
    # append-data = literal / literal8 / "UTF8" SP "(" literal8 ")" ; RFC 3516, 6855
    r.sp()
    mailbox = r.mailbox()
    messages = []
    while r.try_sp():
        flags: tuple[str, ...] = ()
        internal_date = None
        if r.peek() == 0x28:
            flags = _flag_list(r)
            r.sp()
        if r.peek() == 0x22:
            internal_date = r.date_time()
            r.sp()
        utf8 = False
        if r.try_keyword(b"CATENATE"):
            # append-data =/ "CATENATE" SP "(" cat-part *(SP cat-part) ")"   ; RFC 4469 section 5
            # cat-part = text-literal / url ; text-literal = "TEXT" SP literal ; url = "URL" SP astring
            r.sp()

            def cat_part() -> tuple[str, bytes]:
                kind = r.upper_atom("TEXT or URL")
                r.sp()
                if kind == "TEXT":
                    if r.peek() not in (0x7B,):
                        raise r.fail("TEXT needs a literal")
                    return "TEXT", r.literal()[0]
                if kind == "URL":
                    return "URL", r.astring("an IMAP URL")
                raise r.fail(f"unknown CATENATE part {kind}")

            parts = tuple(r.paren_list(cat_part, allow_empty=False, what="CATENATE parts"))
            messages.append(AppendMessage(b"", flags, internal_date, False, False, parts))
            continue
        if r.try_keyword(b"UTF8"):
            r.sp()
            r.expect(b"(")
            if not r.at(b"~{"):
                raise r.fail("UTF8 APPEND data must be a literal8 (~{n})")
            data, binary = r.literal(allow_literal8=True)
            r.expect(b")")
            utf8 = True
        elif r.peek() in (0x7B, 0x7E):
            data, binary = r.literal(allow_literal8=True)
        else:
            raise r.fail("message data must be a literal")
        messages.append(AppendMessage(data, flags, internal_date, binary, utf8))
    if not messages:
        raise r.fail("expected a message literal")
    return Append(mailbox, tuple(messages))


def _cancelupdate(r: Reader) -> Command:
    # command-select =/ "CANCELUPDATE" 1*(SP quoted)      ; RFC 5267 section 5
    tags = []
    while r.try_sp():
        tags.append(r.quoted())
    if not tags:
        raise r.fail("CANCELUPDATE needs the quoted tag of a search")
    return CancelUpdate(tuple(tags))


def _mechanism(r: Reader) -> str:
    # mechanism = "INTERNAL" / 1*(ALPHA / DIGIT / "-" / ".")      ; RFC 4467 section 9
    return r.upper_atom("a URLAUTH mechanism")


def _genurlauth(r: Reader) -> Command:
    # genurlauth = "GENURLAUTH" 1*(SP url-rump SP mechanism) ; url-rump = astring
    requests = []
    while r.try_sp():
        url = r.astring("a URL")
        r.sp()
        requests.append((url, _mechanism(r)))
    if not requests:
        raise r.fail("GENURLAUTH needs a URL and a mechanism")
    return GenUrlAuth(tuple(requests))


URLFETCH_PARAMS = frozenset({"BODY", "BINARY", "BODYPARTSTRUCTURE"})


def _urlfetch(r: Reader) -> Command:
    # urlfetch = "URLFETCH" 1*(SP url-full) ; url-full = astring       ; RFC 4467 section 9
    # RFC 5524 also: "(" url-full 1*(SP ("BODY" / "BINARY" / "BODYPARTSTRUCTURE")) ")"
    urls: list[bytes] = []
    params: list[tuple[str, ...] | None] = []
    while r.try_sp():
        if r.peek() != 0x28:
            urls.append(r.astring("a URL"))
            params.append(None)
            continue
        r.pos += 1
        urls.append(r.astring("a URL"))
        names = []
        while r.try_sp():
            name = r.upper_atom("a URLFETCH parameter")
            if name not in URLFETCH_PARAMS:
                raise r.fail(f"unknown URLFETCH parameter {name}")
            names.append(name)
        if not names:
            raise r.fail("a parenthesised URL needs BODY, BINARY or BODYPARTSTRUCTURE")
        r.expect(b")", "')' closing the URLFETCH parameters")
        params.append(tuple(names))
    if not urls:
        raise r.fail("URLFETCH needs a URL")
    return UrlFetch(tuple(urls), tuple(params) if any(p is not None for p in params) else ())


def _resetkey(r: Reader) -> Command:
    # resetkey = "RESETKEY" [SP mailbox *(SP mechanism)]
    if not r.try_sp():
        return ResetKey()
    mailbox = r.mailbox()
    mechs = []
    while r.try_sp():
        mechs.append(_mechanism(r))
    return ResetKey(mailbox, tuple(mechs))


_ENTRY_RE = re.compile(rb"/(?:private|shared)(?:/[\x21-\x24\x26-\x29\x2b-\x2e\x30-\x7e]+)*", re.IGNORECASE)


def _entry(r: Reader) -> str:
    # entry = astring: slash-separated, "/private" or "/shared" first; no "*", "%", "//" or
    # trailing "/" and only printable ASCII (RFC 5464 section 3.2)
    raw = r.astring("a metadata entry name")
    if not _ENTRY_RE.fullmatch(raw):
        raise r.fail("invalid metadata entry name (it starts with /private or /shared)")
    return raw.decode("ascii").lower()


def _getmetadata(r: Reader) -> Command:
    # getmetadata = "GETMETADATA" [SP getmetadata-options] SP mailbox SP entries
    # getmetadata-option = "MAXSIZE" SP number / "DEPTH" SP ("0" / "1" / "infinity")
    # entries = entry / "(" entry *(SP entry) ")"                   ; RFC 5464 section 5
    r.sp()
    maxsize: int | None = None
    depth = 0
    if r.peek() == 0x28:

        def option() -> None:
            nonlocal maxsize, depth
            name = r.upper_atom("MAXSIZE or DEPTH")
            r.sp()
            if name == "MAXSIZE":
                maxsize = r.number("a size")
            elif name == "DEPTH":
                d = r.upper_atom("0, 1 or infinity")
                if d not in ("0", "1", "INFINITY"):
                    raise r.fail("DEPTH is 0, 1 or infinity")
                depth = -1 if d == "INFINITY" else int(d)
            else:
                raise r.fail(f"unknown GETMETADATA option {name}")

        r.paren_list(option, allow_empty=False, what="GETMETADATA options")
        r.sp()
    mailbox = r.mailbox()
    r.sp()
    if r.peek() == 0x28:
        entries = tuple(r.paren_list(lambda: _entry(r), allow_empty=False, what="entry list"))
    else:
        entries = (_entry(r),)
    return GetMetadata(mailbox, entries, maxsize, depth)


def _setmetadata(r: Reader) -> Command:
    # setmetadata = "SETMETADATA" SP mailbox SP "(" entry-value *(SP entry-value) ")"
    # entry-value = entry SP value ; value = nstring / literal8
    r.sp()
    mailbox = r.mailbox()
    r.sp()

    def entry_value() -> tuple[str, bytes | None]:
        name = _entry(r)
        r.sp()
        if r.at(b"~{"):
            return name, r.literal(allow_literal8=True)[0]
        return name, r.nstring()

    return SetMetadata(mailbox, tuple(r.paren_list(entry_value, allow_empty=False, what="entry list")))


# -- NOTIFY (RFC 5465 section 8) ----------------------------------------------------
#: The events RFC 5465 names, by their upper-case spelling (any other atom is an event-ext).
NOTIFY_EVENT_NAMES = {name.upper(): name for name in (
    "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
    "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange",
    "QuotaExceeded", "QuotaWithin", "QuotaChange")}
NOTIFY_MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange"})
_SELECTED_FILTERS = ("SELECTED", "SELECTED-DELAYED")
_OTHER_FILTERS = ("INBOXES", "PERSONAL", "SUBSCRIBED")
_NAMED_FILTERS = ("SUBTREE", "MAILBOXES")


def _notify(r: Reader) -> Command:
    # notify = "NOTIFY" SP (notify-set / notify-none)
    # notify-set = "SET" [status-indicator] SP event-groups ; status-indicator = SP "STATUS"
    # event-groups = event-group *(SP event-group)
    r.sp()
    verb = r.upper_atom("SET or NONE")
    if verb == "NONE":
        return Notify(None)
    if verb != "SET":
        raise r.fail("NOTIFY takes SET or NONE")
    r.sp()
    status = r.try_keyword(b"STATUS")
    if status:
        r.sp()
    groups = [_event_group(r)]
    while r.try_sp():
        groups.append(_event_group(r))
    if sum(g.filter in _SELECTED_FILTERS for g in groups) > 1:
        # section 6.1: only one of SELECTED and SELECTED-DELAYED, once
        raise r.fail("SELECTED or SELECTED-DELAYED may be given only once")
    return Notify(tuple(groups), status)


def _event_group(r: Reader) -> NotifyGroup:
    # event-group = "(" filter-mailboxes SP events ")"
    # filter-mailboxes = "selected" / "selected-delayed" / "inboxes" / "personal" /
    #     "subscribed" / ("subtree" SP one-or-more-mailbox) / ("mailboxes" SP one-or-more-mailbox)
    # one-or-more-mailbox = mailbox / many-mailboxes ; many-mailboxes = "(" mailbox *(SP mailbox) ")"
    r.expect(b"(", "'(' starting an event group")
    kind = r.upper_atom("a mailbox filter")
    names: tuple[bytes, ...] = ()
    if kind in _NAMED_FILTERS:
        r.sp()
        if r.peek() == 0x28:
            names = tuple(r.paren_list(r.mailbox, allow_empty=False, what="mailbox list"))
        else:
            names = (r.mailbox(),)
    elif kind not in _SELECTED_FILTERS + _OTHER_FILTERS:
        raise r.fail(f"unknown mailbox filter {kind}")
    r.sp()
    group = _events(r, kind, names)
    r.expect(b")", "')' ending the event group")
    return group


def _events(r: Reader, kind: str, names: tuple[bytes, ...]) -> NotifyGroup:
    # events = ("(" event *(SP event) ")") / "NONE"
    # event = message-event / mailbox-event / user-event / event-ext
    # message-event = ("MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"]) / "MessageExpunge" /
    #     "FlagChange" / "AnnotationChange"
    if r.try_keyword(b"NONE"):
        return NotifyGroup(kind, None, names)
    fetch_atts: tuple[FetchAtt, ...] = ()

    def event() -> str:
        nonlocal fetch_atts
        raw = r.atom("an event name").decode("ascii")
        name = NOTIFY_EVENT_NAMES.get(raw.upper(), raw)
        if name == "MessageNew" and r.at(b" ("):
            r.pos += 1
            fetch_atts = tuple(r.paren_list(lambda: parse_fetch_att(r), allow_empty=False,
                                            what="fetch attribute list"))
        return name

    events = tuple(dict.fromkeys(r.paren_list(event, allow_empty=False, what="event list")))
    present = set(events)
    # section 5: MessageNew and MessageExpunge come together; FlagChange and AnnotationChange
    # need both; section 6.1: SELECTED and SELECTED-DELAYED take message events only
    if ("MessageNew" in present) != ("MessageExpunge" in present):
        raise r.fail("MessageNew and MessageExpunge must be given together")
    if present & {"FlagChange", "AnnotationChange"} and "MessageNew" not in present:
        raise r.fail("FlagChange and AnnotationChange need MessageNew and MessageExpunge")
    if kind in _SELECTED_FILTERS and (present - NOTIFY_MESSAGE_EVENTS) & set(NOTIFY_EVENT_NAMES.values()):
        raise r.fail(f"{kind} takes message events only")
    return NotifyGroup(kind, events, names, fetch_atts)


def _uidbatches(r: Reader) -> Command:
    # message-batches = "UIDBATCHES" SP nz-number [SP nz-number ":" nz-number]   ; RFC 10022
    r.sp()
    size = r.nz_number("a batch size")
    if not r.try_sp():
        return UidBatches(size)
    first = r.nz_number("the first batch number")
    r.expect(b":", "':' in the batch range")
    return UidBatches(size, (first, r.nz_number("the last batch number")))


def _compress(r: Reader) -> Command:
    # compress = "COMPRESS" SP algorithm ; algorithm = "DEFLATE" (RFC 4978 section 4)
    r.sp()
    return Compress(r.upper_atom("a compression algorithm"))


def _getquota(r: Reader) -> Command:
    r.sp()
    return GetQuota(r.astring("a quota root"))


def _setquota(r: Reader) -> Command:
    # setquota = "SETQUOTA" SP quota-root-name SP setquota-list   ; RFC 9208
    # setquota-list = "(" [setquota-resource *(SP setquota-resource)] ")"
    # setquota-resource = resource-name SP resource-limit
    r.sp()
    root = r.astring("a quota root")
    r.sp()

    def resource() -> tuple[str, int]:
        name = r.upper_atom("a resource name")
        r.sp()
        return name, r.number64("a resource limit")

    return SetQuota(root, tuple(r.paren_list(resource, what="quota list")))


# -- selected --------------------------------------------------------------------
def _return_options(r: Reader, what: str) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    # search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"
    # (the caller consumed SP "RETURN")
    # search-return-opt =/ modifier-context / modifier-partial / modifier-update   ; RFC 5267
    # modifier-partial = "PARTIAL" SP partial-range ; partial-range = nz-number ":" nz-number
    r.sp()
    partial: tuple[int, int] | None = None

    def opt() -> str:
        nonlocal partial
        name = r.upper_atom(f"a {what} return option")
        if name not in SEARCH_RETURN_OPTIONS:
            raise r.fail(f"unknown {what} return option {name}")
        if name == "PARTIAL":
            r.sp()
            lo = r.nz_number("the start of the PARTIAL range")
            r.expect(b":", "':' in the PARTIAL range")
            hi = r.nz_number("the end of the PARTIAL range")
            partial = (min(lo, hi), max(lo, hi))  # "500:400 is the same as 400:500" (section 4.4)
        return name

    opts = r.paren_list(opt, what="return options")
    if opts.count("PARTIAL") + opts.count("ALL") > 1:
        # RFC 5267 section 4.4: either one PARTIAL, one ALL, or neither
        raise r.fail("at most one PARTIAL or ALL return option")
    # RFC 4731 section 3.1 / RFC 5267 section 3.3: "RETURN ()" is equivalent to "RETURN (ALL)".
    return (tuple(dict.fromkeys(opts)) if opts else ("ALL",)), partial


def _charset(r: Reader) -> str:
    raw = r.quoted() if r.peek() == 0x22 else r.atom("a charset name")
    try:
        return raw.decode("ascii").upper()
    except UnicodeDecodeError:
        raise r.fail("invalid charset name") from None


def _search_keys(r: Reader, max_depth: int) -> SearchKey:
    keys = [parse_search_key(r, max_depth=max_depth)]
    while r.try_sp():
        keys.append(parse_search_key(r, max_depth=max_depth))
    return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))


def _search(r: Reader, *, uid: bool = False, max_depth: int = MAX_SEARCH_DEPTH) -> Command:
    # search = "SEARCH" [search-return-opts] SP search-program
    # search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)
    r.sp()
    return_options: tuple[str, ...] | None = None
    partial = None
    if r.try_keyword(b"RETURN"):
        return_options, partial = _return_options(r, "SEARCH")
        r.sp()
    charset = None
    if r.try_keyword(b"CHARSET"):
        r.sp()
        charset = _charset(r)
        r.sp()
    return Search(_search_keys(r, max_depth), charset, return_options, uid, partial)


def _sort(r: Reader, *, uid: bool = False, max_depth: int = MAX_SEARCH_DEPTH) -> Command:
    # sort = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria SP search-criteria
    # search-criteria = charset 1*(SP search-key)      ; RFC 5256 section 5, RFC 5267 section 3
    # Also accepted, as Dovecot does (imaptest's sort-partial): the RETURN list after the
    # charset, "SORT (ARRIVAL) US-ASCII RETURN (PARTIAL 1:10) ALL"; RETURN is no search key.
    r.sp()
    return_options, partial = _sort_return(r)
    criteria = parse_sort_criteria(r)
    r.sp()
    charset = _charset(r)  # mandatory for SORT (RFC 5256 section 3)
    r.sp()
    if return_options is None:
        return_options, partial = _sort_return(r)
    return Sort(criteria, _search_keys(r, max_depth), charset, return_options, uid, partial)


def _sort_return(r: Reader) -> tuple[tuple[str, ...] | None, tuple[int, int] | None]:
    """``RETURN (...) SP`` if it comes next, else (None, None)."""
    if not r.try_keyword(b"RETURN"):
        return None, None
    return_options, partial = _return_options(r, "SORT")
    if "SAVE" in return_options:  # RFC 5182 defines SAVE for SEARCH only
        raise r.fail("SAVE is not a SORT return option")
    r.sp()
    return return_options, partial


def _thread(r: Reader, *, uid: bool = False, max_depth: int = MAX_SEARCH_DEPTH) -> Command:
    # thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria   ; RFC 5256 section 5
    r.sp()
    algorithm = parse_thread_algorithm(r)
    r.sp()
    charset = _charset(r)
    r.sp()
    return Thread(algorithm, _search_keys(r, max_depth), charset, uid)


def _fetch(r: Reader, uid: bool = False) -> Command:
    # fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
    #         "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]
    # fetch-modifier = "CHANGEDSINCE" SP mod-sequence-value / "VANISHED"  ; RFC 7162
    r.sp()
    seqset = parse_sequence_set(r)
    r.sp()
    items = parse_fetch_atts(r)
    changedsince = None
    vanished = False
    if r.try_sp():

        def modifier() -> None:
            nonlocal changedsince, vanished
            name = r.upper_atom("a FETCH modifier")
            if name == "CHANGEDSINCE":
                r.sp()
                changedsince = _mod_sequence(r)
            elif name == "VANISHED":
                vanished = True
            else:
                raise r.fail(f"unknown FETCH modifier {name}")

        r.paren_list(modifier, allow_empty=False, what="FETCH modifiers")
        # RFC 7162 section 3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
        if vanished and (not uid or changedsince is None):
            raise r.fail("VANISHED requires UID FETCH with CHANGEDSINCE")
    return Fetch(seqset, items, changedsince, vanished, uid)


def _store(r: Reader, uid: bool = False) -> Command:
    # store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags
    # store-modifier = "UNCHANGEDSINCE" SP mod-sequence-valzer           ; RFC 7162
    # store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))
    r.sp()
    seqset = parse_sequence_set(r)
    r.sp()
    unchangedsince = None
    if r.peek() == 0x28:

        def modifier() -> None:
            nonlocal unchangedsince
            name = r.upper_atom("a STORE modifier")
            if name != "UNCHANGEDSINCE":
                raise r.fail(f"unknown STORE modifier {name}")
            r.sp()
            unchangedsince = _mod_sequence(r)

        r.paren_list(modifier, allow_empty=False, what="STORE modifiers")
        r.sp()
    mode = StoreMode.REPLACE
    if r.peek() == 0x2B:
        mode, r.pos = StoreMode.ADD, r.pos + 1
    elif r.peek() == 0x2D:
        mode, r.pos = StoreMode.REMOVE, r.pos + 1
    item = r.upper_atom("FLAGS or FLAGS.SILENT")
    if item not in ("FLAGS", "FLAGS.SILENT"):
        raise r.fail("expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT)")
    r.sp()
    if r.peek() == 0x28:
        flags = _flag_list(r)
    else:
        flag_items = [parse_flag(r)]
        while r.try_sp():
            flag_items.append(parse_flag(r))
        flags = tuple(flag_items)
    return Store(seqset, mode, flags, item == "FLAGS.SILENT", unchangedsince, uid)


def _copy_or_move(cls: type[Copy] | type[Move]) -> Callable[[Reader, bool], Command]:
    def parse(r: Reader, uid: bool = False) -> Command:
        r.sp()
        seqset = parse_sequence_set(r)
        r.sp()
        return cls(seqset, r.mailbox(), uid)

    return parse


def _uid_expunge(r: Reader, uid: bool = True) -> Command:
    r.sp()
    return UidExpunge(parse_sequence_set(r))


_COMMANDS: dict[bytes, Callable[..., Command]] = {
    b"CAPABILITY": _no_args(Capability),
    b"NOOP": _no_args(Noop),
    b"LOGOUT": _no_args(Logout),
    b"ID": _id,
    b"ENABLE": _enable,
    b"STARTTLS": _no_args(StartTls),
    b"AUTHENTICATE": _authenticate,
    b"LOGIN": _login,
    b"SELECT": _select_or_examine(Select),
    b"EXAMINE": _select_or_examine(Examine),
    b"CREATE": _create,
    b"DELETE": _mailbox_only(Delete),
    b"RENAME": _rename,
    b"SUBSCRIBE": _mailbox_only(Subscribe),
    b"UNSUBSCRIBE": _mailbox_only(Unsubscribe),
    b"LIST": _list,
    b"LSUB": _lsub,
    b"NAMESPACE": _no_args(Namespace),
    b"STATUS": _status,
    b"APPEND": _append,
    b"IDLE": _no_args(Idle),
    b"GETQUOTA": _getquota,
    b"GETQUOTAROOT": _mailbox_only(GetQuotaRoot),
    b"SETQUOTA": _setquota,
    b"CHECK": _no_args(Check),
    b"CLOSE": _no_args(Close),
    b"UNSELECT": _no_args(Unselect),
    b"EXPUNGE": _no_args(Expunge),
    b"SEARCH": _search,
    b"FETCH": _fetch,
    b"STORE": _store,
    b"COPY": _copy_or_move(Copy),
    b"MOVE": _copy_or_move(Move),
    b"SORT": _sort,
    b"THREAD": _thread,
    b"COMPRESS": _compress,
    b"CANCELUPDATE": _cancelupdate,
    b"GENURLAUTH": _genurlauth,
    b"URLFETCH": _urlfetch,
    b"RESETKEY": _resetkey,
    b"GETMETADATA": _getmetadata,
    b"SETMETADATA": _setmetadata,
    b"NOTIFY": _notify,
    b"UIDBATCHES": _uidbatches,
}

_UID_COMMANDS: dict[bytes, Callable[..., Command]] = {
    b"COPY": _COMMANDS[b"COPY"],
    b"MOVE": _COMMANDS[b"MOVE"],
    b"FETCH": _fetch,
    b"SEARCH": _search,
    b"STORE": _store,
    b"EXPUNGE": _uid_expunge,
    b"SORT": _sort,
    b"THREAD": _thread,
}

#: Every verb the parser knows (``UID x`` spelled with a space).
COMMAND_VERBS = frozenset(_COMMANDS) | frozenset(b"UID " + v for v in _UID_COMMANDS)
