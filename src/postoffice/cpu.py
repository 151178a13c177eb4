"""CPU-heavy work off the event loop: a process pool and a hashing thread pool, one of each per process.

An event loop serves every session of its process: a message that takes seconds to parse must
delay only its own session. Two kinds of work, two pools:

* :func:`in_process` runs a function in a worker *process*: MIME analysis of large messages,
  DKIM signing and verification, CRLF canonicalisation and hashing of large bodies. That work is
  Python code holding the GIL; in a thread it would still stall the loop (a 10 MB header kept
  every other session of the process waiting for ~50 s before this module existed).
* :func:`hashing` runs argon2 in a dedicated thread pool: argon2-cffi calls the C library with
  the GIL released (cffi's default), so threads already use every core, without the cost of
  sending work to another process. The pool is separate from asyncio's default executor so
  a login storm cannot starve blob reads, and its size bounds the memory argon2 takes
  (``argon2_memory_kib`` per thread).

Both pools are created lazily, on first use, in the process that uses them: after a fork
(``postoffice serve`` with worker processes) each worker gets its own. Worker processes come
from the ``forkserver`` context (forking a process that runs threads - the database thread,
blob writers - is unsafe), preload the message modules, ignore SIGINT (the parent decides
when to stop) and run at a slightly lower priority than the event loops, so that on a
saturated machine answering NOOP still wins over parsing a pathological message.

Sizing (:func:`share`): the CPUs this process may use divided by the number of processes
sharing them (:func:`configure`, called by whoever starts worker processes; 1 by default), at
least 1. With N workers on N cores each worker gets a pool of one process and one hashing
thread; a single process on 2 cores gets two of each.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import gc
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["BrokenProcessPool", "configure", "cpu_count", "gc_paused", "hashing", "in_process", "offload", "share",
           "shutdown", "warm", "workers"]

T = TypeVar("T")

#: Modules the forkserver imports once, so each worker process starts warm.
PRELOAD = ["postoffice.store.prepare", "postoffice.authn.dkim"]
#: Worker processes run at this nice increment above the server.
WORKER_NICE = 10

_lock = threading.Lock()
_workers = 1  # processes sharing this machine's CPUs (configure)
_process_pool: tuple[int, concurrent.futures.ProcessPoolExecutor] | None = None  # (pid, pool)
_hash_pool: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects that cannot be
    garbage yet (100,000 sort rows, decoded keys): it would run a pass every few hundred
    allocations; pausing it halves the time. Meant for worker threads doing such a build."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure(workers: int) -> None:
    """Declare how many server processes share the CPUs (call before the pools are first used,
    e.g. in each worker right after it starts). Pools already created keep their size."""
    global _workers
    _workers = max(1, int(workers))


def workers() -> int:
    """Server processes sharing this machine, as told to :func:`configure` (1 by default)."""
    return _workers


def share() -> int:
    """Pool size for this process: its share of the CPUs, at least 1."""
    return max(1, cpu_count() // _workers)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass


def _processes() -> concurrent.futures.ProcessPoolExecutor:
    global _process_pool
    pid = os.getpid()
    current = _process_pool
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _process_pool is None or _process_pool[0] != pid:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            pool = concurrent.futures.ProcessPoolExecutor(share(), mp_context=context, initializer=_worker_init)
            _process_pool = (pid, pool)
        return _process_pool[1]


def _hashers() -> concurrent.futures.ThreadPoolExecutor:
    global _hash_pool
    pid = os.getpid()
    current = _hash_pool
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _hash_pool is None or _hash_pool[0] != pid:
            _hash_pool = (pid, concurrent.futures.ThreadPoolExecutor(share(), thread_name_prefix="postoffice-hash"))
        return _hash_pool[1]


async def in_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker process (``fn`` and the arguments must pickle: module-level
    functions, bytes, tuples, dataclasses). A worker that died (killed, out of memory) raises
    BrokenProcessPool here once; the next call gets a fresh pool."""
    global _process_pool
    pool = _processes()
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(pool, functools.partial(fn, *args))
    except BrokenProcessPool:
        with _lock:
            if _process_pool is not None and _process_pool[1] is pool:
                _process_pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def _noop() -> None:
    return None


def warm() -> None:
    """Start this process's worker processes now (blocking: call in a thread at start-up).

    Starting the forkserver imports the message modules (about a second); on first use it
    would happen inside ``submit``, on the event loop."""
    pool = _processes()
    for future in [pool.submit(_noop) for _ in range(share())]:
        future.result()


async def offload(heavy: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker process when ``heavy``, else in asyncio's default thread pool
    (small jobs: a process round trip would cost more than the work)."""
    if heavy:
        return await in_process(fn, *args)
    return await asyncio.to_thread(fn, *args)


async def hashing(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (argon2 hashing or verification) in the hashing thread pool."""
    return await asyncio.get_running_loop().run_in_executor(_hashers(), functools.partial(fn, *args))


def shutdown() -> None:
    """Stop this process's pools (at server exit); they are re-created if used again."""
    global _process_pool, _hash_pool
    with _lock:
        processes, _process_pool = _process_pool, None
        hashers, _hash_pool = _hash_pool, None
    if processes is not None and processes[0] == os.getpid():
        processes[1].shutdown(wait=True, cancel_futures=True)
    if hashers is not None and hashers[0] == os.getpid():
        hashers[1].shutdown(wait=False, cancel_futures=True)


# Stop the workers before the interpreter goes (else multiprocessing's resource tracker
# complains about the pool's semaphores); a no-op where no pool was made.
atexit.register(shutdown)
