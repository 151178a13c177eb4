"""Work on a received header grows linearly with it (issue 12), and is capped by MAX_HEADER_BLOCK.

Each shape is a header that used to make some step slow; the time for 8x the input must stay well
under the 64x a quadratic step would take (best of three runs, to ride out a busy machine)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.mail import analyze
from postoffice.outbound.client import _has_8bit
from postoffice.services.delivery import _ADDRESS_LIKE, _address_like, inspect_header

SHAPES: dict[str, Callable[[int], bytes]] = {
    "encoded words in From": lambda n: b"From: " + b"=?utf-8?q?x?= " * (n // 14) + b"<a@b.example>\r\n",
    "many addresses": lambda n: b"From: a@b.example\r\nTo: " + b"a@b.example, " * (n // 13) + b"\r\n",
    "open comments": lambda n: b"From: " + b"(" * n + b"a@b.example\r\n",
    "parameters": lambda n: b"From: a@b.example\r\nContent-Type: text/plain" + b"; a=b" * (n // 5) + b"\r\n",
    "folded lines": lambda n: b"From: a@b.example\r\nX-Long: a" + b"\r\n\tbbbbbbbb" * (n // 11) + b"\r\n",
    "many fields": lambda n: b"From: a@b.example\r\n" + b"X: y\r\n" * (n // 6),
}


def best_of_three(work: Callable[[], object]) -> float:
    times = []
    gc.disable()  # the collector's pauses are not the work under test
    try:
        for _ in range(3):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return min(times)


def _steps() -> dict[str, Callable[[bytes, bytes], object]]:
    from postoffice.sieve.message import MessageFacts
    return {
        "analyze": lambda header, message: analyze(message),
        "inspect_header": lambda header, message: inspect_header(header, submission=True, hostname="mail.example"),
        "sieve facts": lambda header, message: MessageFacts.from_bytes(message, envelope_from="", envelope_to=""),
    }


@pytest.mark.parametrize("step", ["analyze", "inspect_header", "sieve facts"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_header_work_is_linear(shape: str, step: str) -> None:
    work = _steps()[step]

    def cost(n: int) -> float:
        header = SHAPES[shape](n) + b"\r\n"
        message = header + b"body\r\n"
        return best_of_three(lambda: work(header, message))
    # 8x the input: linear work takes ~8x the time, quadratic ~64x; 24x leaves room for noise.
    small, large = cost(40_000), cost(320_000)
    assert large < 24 * small + 0.02, (shape, step, small, large)


def test_has_8bit_is_one_pass() -> None:
    big = b"x" * (50 << 20)
    assert not _has_8bit(big) and _has_8bit(big + b"\xe9")
    assert best_of_three(lambda: _has_8bit(big)) < 0.5  # the Python loop it replaces took ~3 s


@given(st.text(alphabet="ab.@ <>(),;:\"'x\t[]\\é", max_size=40))
def test_address_like_finds_what_the_regex_finds(text: str) -> None:
    assert _address_like(text) == _ADDRESS_LIKE.findall(text)


@given(st.lists(st.sampled_from([b"From: a@b.example", b"from : x", b"\tfolded", b" more", b"Subject: s",
                                 b"FROM:y", b"X-From: no", b"no colon", b"DKIM-Signature: v=1"]), max_size=12),
       st.sampled_from([b"\r\n", b"\n"]))
def test_find_fields_agrees_with_split_fields(lines: list[bytes], eol: bytes) -> None:
    from postoffice.mail.headers import find_fields, split_fields
    raw = eol.join(lines) + eol if lines else b""
    for name in (b"from", b"dkim-signature"):
        expected = [raw[fs:fe].rstrip(b"\r\n") for n, fs, _vs, fe in split_fields(raw, 0, len(raw)) if n == name]
        assert find_fields(raw, name) == expected
