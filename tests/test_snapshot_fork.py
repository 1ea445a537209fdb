"""Snapshots written by a forked child (actors.fork_call, actors.snapshot.Snapshotter).

References: the shard's own capture taken at the moment of the fork (what the child
must have written, whatever the parent did afterwards), the in-thread writer, and
the operating system's process table (a child must not outlive its parent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from actors.fork_call import ForkCallError, fork_available, fork_call
from actors.snapshot import Snapshotter, capture_shard, read_snapshot
from tests.test_recovery_state import _apply, _events, _shard, _view, demo  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not fork_available(), reason="fork-based snapshots need Linux")


def _snapshot_view(snapshot) -> dict:
    body = msgspec.to_builtins(snapshot)
    body.pop("written_unix_ns")
    for pending in body["pending"]:
        pending[2] = round(pending[2])  # seconds of TTL left: measured at capture time
    return body


def _wait_written(snapshotter: Snapshotter, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while snapshotter.written + snapshotter.failures < count:
        assert time.monotonic() < deadline, "the snapshot child did not finish"
        time.sleep(0.01)


def test_fork_call_returns_the_childs_bytes_and_its_errors() -> None:
    assert fork_call(lambda: b"x" * 200_000).result(30.0) == b"x" * 200_000  # more than one pipe buffer

    def fails() -> bytes:
        raise ValueError("no state folder")

    with pytest.raises(ForkCallError, match="ValueError: no state folder"):
        fork_call(fails).result(30.0)
    with pytest.raises(ForkCallError, match="without a result"):
        fork_call(lambda: os._exit(3)).result(30.0)  # type: ignore[func-returns-value]


def test_a_child_past_its_time_is_killed() -> None:
    call = fork_call(lambda: time.sleep(60) or b"")  # type: ignore[func-returns-value]
    with pytest.raises(ForkCallError, match="killed"):
        call.result(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(call.pid, 0)  # reaped: gone from the process table


def test_the_child_writes_the_state_at_the_fork_not_what_the_parent_did_next(demo, tmp_path: Path) -> None:
    book, config, model = demo
    events = _events(1200)
    shard, checker = _shard(config, model, pretrade=True)
    _apply(shard, events[:600])
    at_fork = capture_shard(shard, config.margin.profiles, checker)
    view_at_fork = _view(shard)
    path = tmp_path / "shard-0.snap"
    snapshotter = Snapshotter(path, 0.0, lambda: capture_shard(shard, config.margin.profiles, checker), fork=True)
    snapshotter.maybe()
    _apply(shard, events[600:])  # the parent goes on at once
    assert _view(shard) != view_at_fork
    _wait_written(snapshotter, 1)
    assert snapshotter.failures == 0 and snapshotter.written == 1
    written = read_snapshot(path)
    assert written is not None
    assert _snapshot_view(written) == _snapshot_view(at_fork)
    assert snapshotter.last_seq == at_fork.applied_seq
    assert not list(tmp_path.glob("*.tmp*"))  # the child's temporary file was renamed
    # take(): synchronous, the state now, and equal to what the in-thread writer makes
    now = snapshotter.take()
    assert _snapshot_view(read_snapshot(path)) == _snapshot_view(now)
    assert now.applied_seq > at_fork.applied_seq


def test_a_failed_child_is_counted_and_the_next_interval_tries_again(demo, tmp_path: Path) -> None:
    book, config, model = demo
    shard, _ = _shard(config, model)
    broken = {"on": True}

    def capture():
        if broken["on"]:
            raise OSError("disk full")
        return capture_shard(shard, config.margin.profiles)

    snapshotter = Snapshotter(tmp_path / "shard-0.snap", 0.0, capture, fork=True)
    snapshotter.maybe()
    _wait_written(snapshotter, 1)
    assert (snapshotter.written, snapshotter.failures) == (0, 1)
    broken["on"] = False  # in the parent: the next child forks with it off
    snapshotter.maybe()
    _wait_written(snapshotter, 2)
    assert (snapshotter.written, snapshotter.failures) == (1, 1)
    assert read_snapshot(tmp_path / "shard-0.snap") is not None


def test_the_child_does_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    """The parent forks a child that would run for a minute, then is SIGKILLed."""
    script = (
        "import os, sys, time\n"
        "from actors.fork_call import fork_call\n"
        "call = fork_call(lambda: time.sleep(60) or b'')\n"
        "print(call.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=str(Path(__file__).resolve().parents[1]))
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        os.kill(child, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            # a zombie whose parent is init is reaped there; a live one would stay
            with open(f"/proc/{child}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    break
            assert time.monotonic() < deadline, "the snapshot child outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
