"""giqa.models._prefetch.Prefetcher: order, look-ahead, errors and clean shutdown (no torch needed)."""

from __future__ import annotations

import threading

import pytest

from giqa.models._prefetch import Prefetcher


def test_results_in_order_for_every_depth():
    items = list(range(23))
    for depth in (0, 1, 2, 5, 40):
        with Prefetcher(lambda x: x * x, items, depth=depth) as pre:
            assert list(pre) == [(x, x * x) for x in items]


def test_empty_items():
    with Prefetcher(lambda x: x, [], depth=3) as pre:
        assert list(pre) == []


def test_next_item_is_prepared_while_the_caller_works():
    """Item k+1 starts before the caller is done with item k (an event, not a timing)."""
    started = [threading.Event() for _ in range(4)]

    def prepare(i):
        started[i].set()
        return i

    with Prefetcher(prepare, range(4), depth=1) as pre:
        for i, _ in pre:
            if i + 1 < 4:
                assert started[i + 1].wait(timeout=30), f"item {i + 1} was not prefetched during item {i}"


def test_depth_zero_runs_in_the_calling_thread():
    seen = []
    with Prefetcher(lambda x: seen.append(threading.get_ident()) or x, range(3), depth=0) as pre:
        list(pre)
    assert set(seen) == {threading.get_ident()}


def test_look_ahead_is_bounded_by_depth():
    prepared = []
    lock = threading.Lock()

    def prepare(i):
        with lock:
            prepared.append(i)
        return i

    with Prefetcher(prepare, range(100), depth=2) as pre:
        for i, _ in pre:
            if i == 3:
                break
    assert max(prepared) <= 3 + 2  # never more than `depth` items past the current one


def test_error_surfaces_at_its_item_after_earlier_results():
    def prepare(i):
        if i == 2:
            raise KeyError("bad item 2")
        return i

    got = []
    with pytest.raises(KeyError, match="bad item 2"):
        with Prefetcher(prepare, range(5), depth=2) as pre:
            for i, r in pre:
                got.append(r)
    assert got == [0, 1]


def test_close_stops_threads_and_is_idempotent():
    before = {t.name for t in threading.enumerate()}
    pre = Prefetcher(lambda x: x, range(10), depth=3, name="giqa-test-prefetch")
    next(iter(pre))
    pre.close()
    pre.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("giqa-test-prefetch") and t.name not in before]


def test_items_are_consumed_lazily():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    with Prefetcher(lambda x: -x, endless(), depth=2) as pre:
        for i, r in pre:
            assert r == -i
            if i == 5:
                break


@pytest.mark.parametrize("depth, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_depth(depth, error):
    with pytest.raises(error, match="depth"):
        Prefetcher(lambda x: x, [], depth=depth)
