"""THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES over the messages a search matched.

The algorithms are plain functions over :class:`ThreadMessage` values (number, sent date,
base subject, reply flag, Message-ID, references), so they run in a worker thread and are
tested without a server. Nothing here recurses: a 100,000-message reply chain is a
100,000-deep tree, so pruning, sorting and formatting walk it with explicit stacks.

Ties in sent date are broken by the message number (sequence numbers and UIDs rise
together, so this is mailbox order either way; RFC 5256 section 2.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ThreadMessage", "orderedsubject", "references", "format_threads", "Node"]


@dataclass(slots=True)
class ThreadMessage:
    number: int                 # sequence number or UID, what the response lists
    sent: float                 # sent date (RFC 5256 section 2.2): Date:, else INTERNALDATE
    subject: str                # base subject, i;ascii-casemap applied (compared as-is)
    reply: bool                 # the subject marks a reply or forward (section 2.1)
    message_id: str = ""
    references: Sequence[str] = ()


class Node:
    """A thread tree node; ``msg`` None is a dummy (a referenced message not in the set)."""

    __slots__ = ("msg", "parent", "children")

    def __init__(self, msg: ThreadMessage | None = None) -> None:
        self.msg = msg
        self.parent: Node | None = None
        self.children: list[Node] = []

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Node({self.msg.number if self.msg else 'dummy'}, {len(self.children)} children)"


def _date_key(node: Node) -> tuple[float, int]:
    """Sort key by sent date, then number; a dummy sorts as its first child (steps 4, 6)."""
    m = node.msg
    while m is None:
        if not node.children:
            return (float("inf"), 0)
        node = node.children[0]
        m = node.msg
    return (m.sent, m.number)


# == ORDEREDSUBJECT ===============================================================================

def orderedsubject(messages: Iterable[ThreadMessage]) -> list[Node]:
    """RFC 5256 section 3, ORDEREDSUBJECT: sort by base subject then sent date, one thread
    per base subject whose first message is the parent of all the others (siblings, no
    grandchildren); threads ordered by the sent date of their first message."""
    ordered = sorted(messages, key=lambda m: (m.subject, m.sent, m.number))
    threads: list[Node] = []
    current: Node | None = None
    for m in ordered:
        if current is not None and current.msg is not None and current.msg.subject == m.subject:
            current.children.append(Node(m))  # no parent link: nothing walks upwards here
        else:
            current = Node(m)
            threads.append(current)
    threads.sort(key=_date_key)
    return threads


# == REFERENCES ===================================================================================

def _would_loop(parent: Node, child: Node) -> bool:
    """True if making ``child`` a child of ``parent`` would create a loop (``child`` is
    ``parent`` or one of its ancestors). A child without children of its own cannot be an
    ancestor of anything: the common case (a new reply) costs nothing, so a long reply
    chain is not quadratic."""
    if not child.children:
        return parent is child
    node: Node | None = parent
    while node is not None:
        if node is child:
            return True
        node = node.parent
    return False


def _link(parent: Node, child: Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _unlink(child: Node) -> None:
    parent = child.parent
    if parent is not None:
        parent.children.remove(child)
        child.parent = None


def _prune(roots: list[Node]) -> list[Node]:
    """REFERENCES step 3, bottom-up (a dummy's children are pruned before the dummy): a dummy
    without children goes, one with children is replaced by them (at the root only when it
    has just one). Returns the root's children."""
    order: list[Node] = []
    stack = list(roots)
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(n.children)
    for n in reversed(order):
        if not n.children:
            continue
        kept: list[Node] = []
        for c in n.children:
            if c.msg is None:
                # 3.A: a dummy without children goes; 3.B: one with children is replaced
                # by its children (promoted to this level).
                for g in c.children:
                    g.parent = n
                kept.extend(c.children)
            else:
                kept.append(c)
        n.children = kept
    top: list[Node] = []
    for n in roots:
        if n.msg is None:
            if not n.children:
                continue  # 3.A
            if len(n.children) == 1:
                # 3.B: children are promoted to the root only when there is just one.
                child = n.children[0]
                child.parent = None
                top.append(child)
                continue
        top.append(n)
    return top


def references(messages: Sequence[ThreadMessage]) -> list[Node]:
    """RFC 5256 section 3, REFERENCES, steps 1-6. ``messages`` in mailbox order."""
    table: dict[str, Node] = {}
    nodes: list[Node] = []  # every node, dummies included, for step 2

    def lookup(mid: str) -> Node:
        node = table.get(mid)
        if node is None:  # "create a dummy message with this ID" (step 1.A)
            node = table[mid] = Node()
            nodes.append(node)
        return node

    for m in messages:
        # Step 1: a missing or invalid Message-ID, or one an earlier message already has,
        # gets a unique id of its own (not entered in the table: nothing can refer to it).
        node = table.get(m.message_id) if m.message_id else None
        if node is not None and node.msg is None:
            node.msg = m  # the dummy that earlier references created is this message
        else:
            node = Node(m)
            nodes.append(node)
            if m.message_id and m.message_id not in table:
                table[m.message_id] = node
        refs = m.references
        # 1.A: link the references in order, parent before child; an existing parent link
        # is kept, and no link may create a loop.
        for k in range(len(refs) - 1):
            child = table.get(refs[k + 1])
            if child is not None and child.parent is not None:
                continue  # already linked (the usual case): a dummy for refs[k] changes nothing
            child = lookup(refs[k + 1])
            parent = lookup(refs[k])
            if not _would_loop(parent, child):
                _link(parent, child)
        # 1.B: the last reference is the parent of this message; a parent found before
        # (probably from a truncated References field) is replaced, loops are not created.
        if node.parent is not None:
            _unlink(node)
        if refs:
            parent = table.get(refs[-1]) or lookup(refs[-1])
            if parent is not node and (not node.children or not _would_loop(parent, node)):
                node.parent = parent  # _link, inline: this runs once per message
                parent.children.append(node)

    # Step 2: the messages without a parent are the children of the root.
    roots = [n for n in nodes if n.parent is None]

    # Step 3: prune dummies (none when every referenced message is in the set: skipped).
    top = _prune(roots) if any(n.msg is None for n in nodes) else roots

    # Step 4: sort the root's children by sent date (a dummy: by its earliest child).
    for n in top:
        if n.msg is None:
            n.children.sort(key=_date_key)
    top.sort(key=_date_key)

    # Step 5: gather the threads whose base subjects are the same.
    def thread_subject(n: Node) -> str:
        return n.msg.subject if n.msg is not None else n.children[0].msg.subject  # type: ignore[union-attr]

    subjects: dict[str, Node] = {}
    for n in top:  # 5.B: one message per subject
        subj = thread_subject(n)
        if not subj:
            continue
        held = subjects.get(subj)
        if held is None:
            subjects[subj] = n
        elif held.msg is not None and (n.msg is None or (held.msg.reply and not n.msg.reply)):
            subjects[subj] = n
    merged: list[Node] = []
    gone: set[int] = set()
    for n in top:  # 5.C: merge
        if id(n) in gone:
            continue
        subj = thread_subject(n)
        held = subjects.get(subj) if subj else None
        if held is None or held is n:
            merged.append(n)
            continue
        gone.add(id(n))
        if held.msg is None and n.msg is None:
            # both dummies: n's children join held's
            for c in n.children:
                c.parent = held
            held.children.extend(n.children)
        elif held.msg is None or (n.msg is not None and n.msg.reply and not held.msg.reply):
            _link(held, n)
        else:
            # a new dummy becomes the parent of both, and takes held's place
            dummy = Node()
            for i, x in enumerate(merged):
                if x is held:
                    merged[i] = dummy
                    break
            else:
                gone.add(id(held))  # held comes later in `top`: it is replaced there
                merged.append(dummy)
            _link(dummy, held)
            _link(dummy, n)
            subjects[subj] = dummy
    top = merged

    # Step 6: sort every set of siblings by sent date. After steps 3 and 5 a dummy is only
    # ever a child of the root, with messages for children, so only the root's order depends
    # on another sort (a dummy sorts as its earliest child): siblings elsewhere are sorted in
    # any order, then the dummies' children, the root's children last.
    for n in nodes:
        if len(n.children) > 1:
            n.children.sort(key=_date_key)
    for n in top:
        if n.msg is None:
            n.children.sort(key=_date_key)
    top.sort(key=_date_key)
    # Parent links are not needed any more; dropping them leaves a plain tree that reference
    # counting frees at once (otherwise 100,000 parent/child cycles wait for the cyclic GC).
    for n in nodes:
        n.parent = None
    return top


# == the response =================================================================================

def format_threads(threads: Iterable[Node]) -> bytes:
    """``thread-list``s for ``* THREAD`` (RFC 5256 section 4)::

        thread-list    = "(" (thread-members / thread-nested) ")"
        thread-members = nz-number *(SP nz-number) [SP thread-nested]
        thread-nested  = 2*thread-list

    A message with one child continues the member chain ("3 6"); with several, each child
    starts its own thread-list ("6 (4 23)(44 7 96)"); a dummy contributes only its children.
    """
    out: list[str] = []
    stack: list[Node | str] = []
    for t in threads:
        stack.append(")")
        stack.append(t)
        stack.append("(")
        while stack:
            item = stack.pop()
            if item.__class__ is str:
                out.append(item)  # type: ignore[arg-type]
                continue
            node: Node = item  # type: ignore[assignment]
            # a chain of only children, the usual reply chain, is written without the stack
            chain: list[int] = []
            while True:
                kids = node.children
                if node.msg is not None:
                    chain.append(node.msg.number)
                if len(kids) != 1:
                    break
                node = kids[0]
            if chain:
                out.append(" ".join(map(str, chain)))
                if kids:
                    out.append(" ")
            for child in reversed(kids):
                stack.append(")")
                stack.append(child)
                stack.append("(")
    return "".join(out).encode()
