"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 section 3), the algorithms alone."""

from __future__ import annotations

import time

from postoffice.servers.imap.sort import SortRow, make_row, sort_numbers
from postoffice.servers.imap.thread import ThreadMessage, format_threads, orderedsubject, references
from postoffice.protocols.imap.grammar.sort import SortCriterion


def T(n: int, sent: float, subject: str = "S", reply: bool = False, mid: str | None = None,
      refs: tuple[str, ...] = ()) -> ThreadMessage:
    return ThreadMessage(n, sent, subject, reply, f"m{n}" if mid is None else mid, refs)


def refs_threads(*msgs: ThreadMessage) -> bytes:
    return format_threads(references(sorted(msgs, key=lambda m: m.number)))


def test_format_is_the_rfc_example() -> None:
    """RFC 5256 section 4: "(2)(3 6 (4 23)(44 7 96))" -- 3 parent of 6; 6 parent of 4 and
    44; 4 of 23; 44 of 7; 7 of 96."""
    got = refs_threads(
        T(2, 0, "A"), T(3, 1, "B"), T(6, 2, "B", True, refs=("m3",)),
        T(4, 3, "B", True, refs=("m3", "m6")), T(23, 4, "B", True, refs=("m6", "m4")),
        T(44, 5, "B", True, refs=("m6",)), T(7, 6, "B", True, refs=("m44",)),
        T(96, 7, "B", True, refs=("m3", "m6", "m44", "m7")))
    assert got == b"(2)(3 6 (4 23)(44 7 96))"


def test_orderedsubject() -> None:
    """Sorted by base subject then sent date; each subject's first message is the parent of
    the others (siblings); threads ordered by their first message's sent date. RFC 5256
    section 4 shows both "(194 195)" (one reply) and "(196 (197)(198))"."""
    msgs = [T(1, 50, "B"), T(2, 10, "A"), T(3, 60, "B"), T(4, 5, "C"), T(5, 20, "A"), T(6, 30, "A")]
    assert format_threads(orderedsubject(msgs)) == b"(4)(2 (5)(6))(1 3)"
    assert format_threads(orderedsubject([])) == b""


def test_missing_parent_becomes_a_dummy_with_sibling_children() -> None:
    """Step 3.B keeps a dummy at the root when it has several children: "((3)(5))"."""
    assert refs_threads(T(3, 1, refs=("gone",)), T(5, 2, refs=("gone",))) == b"((3)(5))"
    # with one child the dummy is dropped and the child promoted to the root
    assert refs_threads(T(3, 1, refs=("gone",))) == b"(3)"


def test_dummies_inside_a_thread_are_spliced_out() -> None:
    # 1 -> (missing x) -> 2: the dummy is removed, 2 becomes 1's child
    assert refs_threads(T(1, 1, "A"), T(2, 2, "A", True, refs=("m1", "x"))) == b"(1 2)"


def test_in_reply_to_and_truncated_references() -> None:
    # 1.B: a later, longer chain replaces the parent an earlier truncated one implied
    msgs = [T(1, 1, "X"), T(2, 2, "Y"), T(3, 3, "Z", refs=("m2",)), T(4, 4, "Z", refs=("m1", "m3"))]
    assert refs_threads(*msgs) == b"(1)(2 3 4)"


def test_duplicate_and_missing_message_ids() -> None:
    # the second "<dup>" gets a unique id: replies thread under the first only
    msgs = [T(1, 1, "A", mid="dup"), T(2, 2, "B", mid="dup"), T(3, 3, "C", mid="", refs=("dup",))]
    assert refs_threads(*msgs) == b"(1 3)(2)"


def test_loops_are_not_created() -> None:
    msgs = [T(1, 1, "A", refs=("m2",)), T(2, 2, "B", refs=("m1",)), T(3, 3, "C", refs=("m3",))]
    out = refs_threads(*msgs)
    assert out in (b"(1 2)", b"(2 1)(3)", b"(1 2)(3)")
    assert b"3" in out and out.count(b"(") >= 2


def test_subject_merge_rules() -> None:
    """Step 5: threads with the same base subject are gathered; a non-reply takes the lead,
    a reply becomes its child, two non-replies get a dummy parent."""
    # the reply (2) joins the non-reply (1) as its child
    assert refs_threads(T(1, 1, "HELLO"), T(2, 2, "HELLO", True)) == b"(1 2)"
    # even when the reply was sent first (it still becomes the child)
    assert refs_threads(T(1, 2, "HELLO"), T(2, 1, "HELLO", True)) == b"(1 2)"
    # two non-replies: a new dummy parent
    assert refs_threads(T(1, 1, "HELLO"), T(2, 2, "HELLO")) == b"((1)(2))"
    # two replies: also a dummy (neither is "the" original)
    assert refs_threads(T(1, 1, "HELLO", True), T(2, 2, "HELLO", True)) == b"((1)(2))"
    # empty subjects are never gathered
    assert refs_threads(T(1, 1, ""), T(2, 2, "")) == b"(1)(2)"
    # a dummy in the subject table absorbs the others: (dummy (1)(2)) + 3 -> ((1)(2)(3))
    got = refs_threads(T(1, 1, "Q", refs=("gone",)), T(2, 2, "Q", refs=("gone",)), T(3, 3, "Q", True))
    assert got == b"((1)(2)(3))"


def test_siblings_are_sorted_by_sent_date_then_number() -> None:
    msgs = [T(1, 10, "P"), T(2, 30, "P", True, refs=("m1",)), T(3, 20, "P", True, refs=("m1",)),
            T(4, 20, "P", True, refs=("m1",))]
    assert refs_threads(*msgs) == b"(1 (3)(4)(2))"


def test_a_very_deep_thread_does_not_recurse() -> None:
    n = 50_000
    msgs = [T(1, 0, "DEEP")] + [T(i, i, "DEEP", True, refs=(f"m{i - 1}",)) for i in range(2, n + 1)]
    out = format_threads(references(msgs))
    assert out == b"(" + b" ".join(b"%d" % i for i in range(1, n + 1)) + b")"


def test_references_on_100000_messages_is_fast() -> None:
    # 10,000 conversations of 10 messages; each reply references the whole chain
    msgs = []
    for i in range(1, 100_001):
        conv, k = divmod(i - 1, 10)
        first = conv * 10 + 1
        refs = tuple(f"m{j}" for j in range(first, i))
        msgs.append(T(i, i, f"CONV {conv}", bool(k), refs=refs))
    start = time.perf_counter()
    out = format_threads(references(msgs))
    assert time.perf_counter() - start < 10  # about 1 s here; generous for a loaded machine
    assert out.startswith(b"(1 2 3 4 5 6 7 8 9 10)(11 12")


def test_sort_numbers_is_stable_and_reverse_only_flips_its_key() -> None:
    def row(sent: float, subject: str) -> SortRow:
        return make_row(0, 0.0, [subject, 0, "", "", "", "", "", "", [], sent])
    rows = [(1, row(2, "B")), (2, row(1, "A")), (3, row(2, "A")), (4, row(1, "B"))]
    assert sort_numbers(rows, (SortCriterion("SUBJECT"), SortCriterion("DATE", True))) == [3, 2, 1, 4]
    assert sort_numbers(rows, (SortCriterion("DATE", True),)) == [1, 3, 2, 4]
    assert sort_numbers(rows, (SortCriterion("DATE"),)) == [2, 4, 1, 3]
