"""Prepare the next batches in background threads while the device runs the current one.

A backend's work on a batch has a CPU half (decode, resize, normalise, tokenise, copy to the
device) and a device half (the forward pass). :class:`Prefetcher` runs the CPU half of the
next ``depth`` batches in a small thread pool while the caller runs the device half of the
current one, and hands the results back **in order** (the first batch is prepared in the
caller's thread, so a single batch never waits on a thread hand-off)::

    with Prefetcher(prepare, batches, depth=2) as prepared:
        for batch, inputs in prepared:
            outputs = model(**inputs)      # batch k on the device, batches k+1, k+2 preparing

Threads (not processes) are enough: PIL resizing, NumPy arithmetic, tokenizers and torch
copies release the GIL. ``depth=0`` runs everything in the calling thread (no pool), which
gives the same results in the same order.

An exception raised by ``prepare`` is re-raised by the iteration at that batch (earlier
batches are yielded first). Leaving the ``with`` block early (a ``break`` or an error in the
caller) cancels batches not started yet and waits for the at most ``depth`` running ones, so
no thread outlives the block.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Generic, Iterable, Iterator, Optional, TypeVar

__all__ = ["Prefetcher"]

T = TypeVar("T")
_NOTHING: Any = object()
R = TypeVar("R")


class Prefetcher(Generic[T, R]):
    """Iterate ``(item, prepare(item))`` over ``items`` in order, ``depth`` items prepared ahead.

    Parameters
    ----------
    prepare:
        The CPU work for one item; called from a worker thread (so it must not rely on
        thread-local state of the caller, such as ``torch.inference_mode``).
    items:
        The items (e.g. batches), consumed lazily.
    depth:
        How many items are prepared ahead of the one being consumed; also the number of worker
        threads. ``0``: no threads, ``prepare`` runs in the caller's thread when an item is
        reached.
    name:
        Prefix of the worker threads' names (shows in profilers and tracebacks).
    """

    def __init__(self, prepare: Callable[[T], R], items: Iterable[T], *, depth: int = 1, name: str = "giqa-prefetch") -> None:
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise TypeError(f"depth must be an int, got {type(depth).__name__}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self._prepare = prepare
        self._items = iter(items)
        self._depth = depth
        self._pool: Optional[ThreadPoolExecutor] = (
            ThreadPoolExecutor(max_workers=depth, thread_name_prefix=name) if depth else None
        )
        self._pending: deque[tuple[T, Future]] = deque()
        self._closed = False

    def __iter__(self) -> Iterator[tuple[T, R]]:
        if self._pool is None:
            for item in self._items:
                yield item, self._prepare(item)
            return
        first = next(self._items, _NOTHING)
        if first is _NOTHING:
            return
        self._fill()  # the next `depth` items start in the pool ...
        yield first, self._prepare(first)  # ... while the caller prepares the first: nothing to wait for
        while self._pending:
            item, future = self._pending.popleft()
            self._fill()  # keep `depth` items in flight while the caller works on this one
            yield item, future.result()

    def _fill(self) -> None:
        while not self._closed and len(self._pending) < self._depth:
            try:
                item = next(self._items)
            except StopIteration:
                return
            assert self._pool is not None
            self._pending.append((item, self._pool.submit(self._prepare, item)))

    def close(self) -> None:
        """Cancel items not started, wait for running ones, stop the threads. Idempotent."""
        self._closed = True
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "Prefetcher[T, R]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
