"""The GC freezer: survivors leave the cyclic collector's reach, refcounting still frees."""

from __future__ import annotations

import gc
import time
import weakref

from actors.gc_quiet import gc_stats, start_gc_freezer, stop_gc_freezer


class _Node:
    def __init__(self) -> None:
        self.children: list[_Node] = []


def test_freezer_moves_survivors_out_of_the_collectors_walk_and_refcounting_still_frees() -> None:
    stop_gc_freezer()
    try:
        assert start_gc_freezer(0.02)
        assert not start_gc_freezer(0.02)  # one per process
        survivors = [_Node() for _ in range(1000)]
        marker = survivors[500]
        deadline = time.monotonic() + 10
        while any(o is marker for o in gc.get_objects()):  # still walked by a collection
            assert time.monotonic() < deadline, "the freezer never froze the survivors"
            time.sleep(0.02)
        assert gc_stats(frozen=True)["frozen"] >= 1000
        # Frozen objects still die by reference counting.
        ref = weakref.ref(marker)
        survivors.clear()
        del marker
        assert ref() is None
    finally:
        stop_gc_freezer()
    assert not start_gc_freezer(0)  # off
