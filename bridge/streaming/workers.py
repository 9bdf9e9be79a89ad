"""Threads for the offline conversions: independent tasks side by side, and reading one step ahead.

The conversions spend their time in the kernel: ``copy_file_range``, ``preadv`` and ``pwritev``
release the GIL, so Python threads overlap the copies on machines with more than one core.

* :func:`run_all` runs independent tasks (the pipeline stages of a conversion, each writing its own
  rank files) on a few threads. The first failure stops the others at their next step (they check
  the ``stop`` event they are given and raise :class:`Stopped`), every task has finished before it
  is re-raised, so the caller's cleanup (removing the staging directory) never races a writer.
* :func:`ahead` prepares the next item of a loop (reading a row-parallel weight into memory) on a
  background thread while the caller writes the current one. Two :class:`Scratch` buffers take
  turns, so memory holds at most two prepared items.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from bridge._logging import get_logger
from bridge.errors import BridgeError
from bridge.streaming.pieces import Scratch

__all__ = ["Stopped", "ahead", "check", "default_workers", "run_all", "spare_core"]

log = get_logger("streaming.workers")

T = TypeVar("T")
R = TypeVar("R")

_END = object()


class Stopped(BridgeError):
    """A task gave up because another task of the same :func:`run_all` failed (never the error reported)."""


def default_workers(tasks: int) -> int:
    """Threads for ``tasks`` independent tasks: one per task, at most one per CPU core."""
    return max(1, min(tasks, os.cpu_count() or 1))


def spare_core(busy: int) -> bool:
    """Whether a core is left for a helper thread (:func:`ahead`) while ``busy`` threads write."""
    return (os.cpu_count() or 1) > busy


def check(stop: threading.Event) -> None:
    """Raise :class:`Stopped` when another task has failed (call between steps of a task)."""
    if stop.is_set():
        raise Stopped("stopped because another task of the conversion failed")


def _first_error(futures: Sequence[Future]) -> BaseException | None:
    errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if not isinstance(e, Stopped)]
    return (real or errors or [None])[0]


def run_all(tasks: Sequence[Callable[[threading.Event], R]], *, workers: int) -> list[R]:
    """Run ``task(stop)`` for every task on ``workers`` threads (inline, in order, when 1); their results.

    When a task raises, ``stop`` is set, tasks not yet started are skipped, running ones stop at their
    next :func:`check`, and once all have returned the first error (not a :class:`Stopped`) is raised.
    An interrupt of the calling thread stops the tasks the same way before it propagates.
    """
    stop = threading.Event()
    if workers <= 1 or len(tasks) <= 1:
        return [task(stop) for task in tasks]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bridge-streaming")
    futures = [pool.submit(task, stop) for task in tasks]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if _first_error(list(done)) is not None:
            stop.set()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    error = _first_error(futures)
    if error is not None:
        log.debug("a task failed (%s); %d task(s) stopped", type(error).__name__, len(futures))
        raise error
    return [f.result() for f in futures]


def ahead(items: Iterable[T], prepare: Callable[[T, Scratch], R], *, enabled: bool = True) -> Iterator[tuple[T, R]]:
    """``(item, prepare(item, scratch))`` for every item, in order, each prepared while the previous is used.

    ``prepare`` runs on one background thread and may read into the :class:`Scratch` it is given;
    its result stays valid until the caller asks for the item after the next one. An error of
    ``prepare`` is raised where that item would have been yielded. ``enabled=False`` prepares each
    item in the calling thread, when it is asked for (one scratch buffer).
    """
    scratches = (Scratch(), Scratch())
    if not enabled:
        for item in items:
            yield item, prepare(item, scratches[0])
        return
    source = iter(items)
    item = next(source, _END)
    if item is _END:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-streaming-ahead")
    try:
        future = pool.submit(prepare, item, scratches[0])
        turn = 0
        while True:
            result = future.result()
            following = next(source, _END)
            if following is not _END:  # the caller is done with scratches[turn ^ 1]'s previous item
                future = pool.submit(prepare, following, scratches[turn ^ 1])
            yield item, result
            if following is _END:
                return
            item, turn = following, turn ^ 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
