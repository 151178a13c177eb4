"""ReadDeadline (servers/listener.py): one timer per connection that still times out each read
at its own deadline, and leaves other cancellations alone."""

from __future__ import annotations

import asyncio

import pytest

from postoffice.servers.listener import ReadDeadline


async def test_a_read_that_waits_too_long_raises_timeout_error() -> None:
    deadline = ReadDeadline()
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await deadline.wait(never, 0.05)
    assert 0.04 < asyncio.get_running_loop().time() - started < 1.0
    # the task is usable afterwards: the cancellation was taken back
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert await deadline.wait(asyncio.sleep(0, b"more"), 1.0) == b"more"
    deadline.close()


async def test_the_timer_of_an_earlier_read_does_not_cut_a_later_one_short() -> None:
    loop = asyncio.get_running_loop()
    deadline = ReadDeadline()
    assert await deadline.wait(asyncio.sleep(0.01, b"quick"), 0.1) == b"quick"  # arms a timer for ~0.1 s
    started = loop.time()
    assert await deadline.wait(asyncio.sleep(0.2, b"slow"), 0.5) == b"slow"  # outlives that timer
    assert loop.time() - started >= 0.19
    with pytest.raises(TimeoutError):  # and its own deadline still holds
        await deadline.wait(asyncio.sleep(5), 0.15)
    assert loop.time() - started < 1.0
    deadline.close()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def reader() -> None:
        await ReadDeadline().wait(asyncio.sleep(5), 10)

    task = asyncio.ensure_future(reader())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_timer_fires_between_reads() -> None:
    deadline = ReadDeadline()
    await deadline.wait(asyncio.sleep(0, None), 0.05)
    await asyncio.sleep(0.1)  # busy past the deadline, not reading: nothing is cancelled
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    deadline.close()
