"""Measuring instruments of the pipeline bench: the AccountRisk collector, memory, the ZeroMQ floor.

- :class:`RiskCollector`: the handler of a ReceiveLoop on the daemon's AccountRisk
  socket. Per account it keeps the highest ``last_seq`` seen (the drop-copy
  MsgSeqNum of the last fill applied: coverage, i.e. which fills were applied),
  per MsgSeqNum the monotonic ns its first AccountRisk was received (end-to-end
  latency), and, while :attr:`RiskCollector.stages` is set, the stages a fill's
  stamps show (ns -> HDR histograms, reported in us): fix_parse, ingest_encode
  (Fill -> FillMsg bytes sent), route, position_update, shard_publish (AccountRisk
  encoded and sent), publish_delivery (PUB -> this subscriber), risk_publish
  (margin -> AccountRisk here) and end_to_end (drop-copy bytes read -> here).
- :func:`process_memory`: RSS (``VmRSS``) and PSS (``smaps_rollup``) of a process
  and all its descendants (the bench driver, and Ray's gcs, raylet, agents and
  workers, which are children of the driver when ``ray.init`` starts a local
  cluster), walked in /proc. PSS splits shared pages between the processes that
  map them, so its sum does not count a shared library once per process.
- :class:`CpuMeter`: CPU use per process over a phase (/proc/<pid>/stat), the
  evidence for which process limits a rate;
- :func:`zmq_floor`: a bare pyzmq REQ/REP round trip over ipc:// between this
  process and a child process (two processes, like the daemon's actors), ~200 B;
- :func:`latency_summary_us`: p50/p99/p99.9/max (us) of ns latencies, HDR;
- :func:`machine_cpu` / :func:`machine_busy`: whole-machine CPU over a phase
  (every process, other users' too, and hypervisor steal).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from typing import Any

import numpy as np
import zmq
from hdrh.histogram import HdrHistogram

from actors.latency import StageRecorder
from actors.messages import AccountRisk, HeldEvent, decode

_MB = 1024.0 * 1024.0


def latency_summary_us(latency_ns: np.ndarray) -> dict[str, Any]:
    """p50/p99/p99.9/max (us, 0.1 us) and count of non-empty ``latency_ns``; values
    below 1 ns (clock inversions) count as 1 ns."""
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    for value in latency_ns.tolist():
        histogram.record_value(max(1, value))
    return {"count": int(len(latency_ns)),
            "p50_us": round(histogram.get_value_at_percentile(50.0) / 1e3, 1),
            "p99_us": round(histogram.get_value_at_percentile(99.0) / 1e3, 1),
            "p999_us": round(histogram.get_value_at_percentile(99.9) / 1e3, 1),
            "max_us": round(histogram.get_max_value() / 1e3, 1)}


def machine_cpu() -> tuple[float, ...]:
    """Whole-machine CPU seconds so far (/proc/stat): (busy, steal, monotonic now)."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return (0.0, 0.0, time.monotonic())
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    return ((sum(fields[:8]) - idle - steal) / ticks, steal / ticks, time.monotonic())


def machine_busy(before: tuple[float, ...]) -> dict[str, float]:
    """Machine-wide CPU since ``before`` (a :func:`machine_cpu` reading), in % of one CPU
    (200 % = both of a 2-CPU machine busy), and the time stolen by the hypervisor."""
    busy, steal, now = machine_cpu()
    wall = max(now - before[2], 1e-9)
    return {"busy_pct": round(100.0 * (busy - before[0]) / wall, 1),
            "steal_pct": round(100.0 * (steal - before[1]) / wall, 1), "cpus": os.cpu_count() or 0}


class RiskCollector:
    """AccountRisk bookkeeping on the subscriber's thread (see the module docstring).

    ``accounts``: the account ids (index = position); ``max_seq``: MsgSeqNums up
    to which receive times are kept (larger ones still count for coverage).
    """

    def __init__(self, accounts: tuple[str, ...], max_seq: int) -> None:
        self.index = {a: i for i, a in enumerate(accounts)}
        #: Per account index: highest last_seq seen in an AccountRisk.
        self.covered = [0] * len(accounts)
        # np.zeros maps zero pages lazily: only the MsgSeqNums actually used cost memory.
        #: Per MsgSeqNum: monotonic ns its first AccountRisk arrived (0 = none yet).
        self.received_ns = np.zeros(max_seq + 1, np.int64)
        #: Per MsgSeqNum, while stages are recorded: monotonic ns its bytes were read by the ingest.
        self.read_ns = np.zeros(max_seq + 1, np.int64)
        #: AccountRisk messages that raised an account's last_seq (fills seen applied).
        self.applied = 0
        #: Each rise of an account's coverage: (account index, new last_seq, monotonic ns).
        #: A shard publishes once per account per burst, so a fill superseded within its
        #: burst has no AccountRisk of its own: it was published by the first AccountRisk
        #: of its account whose last_seq reached it (:meth:`published_ns`).
        self._rise_account: list[int] = []
        self._rise_seq: list[int] = []
        self._rise_ns: list[int] = []
        self.messages = 0
        self.held = 0
        self.foreign = 0
        #: When set, stage durations of each fill's first AccountRisk are recorded here.
        self.stages: StageRecorder | None = None

    def __call__(self, frame: bytes) -> None:
        now = time.monotonic_ns()
        message = decode(frame)
        self.messages += 1
        if type(message) is not AccountRisk:
            if isinstance(message, HeldEvent):
                self.held += 1
            return
        idx = self.index.get(message.account)
        if idx is None:
            self.foreign += 1
            return
        seq = message.last_seq
        if seq > self.covered[idx]:
            self.covered[idx] = seq
            self.applied += 1
            self._rise_account.append(idx)
            self._rise_seq.append(seq)
            self._rise_ns.append(now)
        received = self.received_ns
        if 0 < seq < len(received) and received[seq] == 0:
            received[seq] = now
            stages = self.stages
            if stages is not None and message.stamps.applied_ns:
                # The same stamps, and stage definitions, as the shards' own recorders, but
                # only for the fill's first AccountRisk (not its order event's).
                s = message.stamps
                record = stages.record
                self.read_ns[seq] = s.read_ns
                record("fix_parse", s.read_ns, s.parsed_ns)
                record("ingest_encode", s.parsed_ns, s.routed_ns)
                record("route", s.routed_ns, s.received_ns)
                record("position_update", s.received_ns, s.applied_ns)
                record("shard_publish", s.applied_ns, s.published_ns)
                record("publish_delivery", s.published_ns, now)
                record("risk_publish", s.applied_ns, now)
                record("end_to_end", s.read_ns, now)


    def published_ns(self, account: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Per fill (account index, MsgSeqNum): monotonic ns of the first AccountRisk of its
        account whose last_seq reached it (0 = none yet)."""
        out = np.zeros(len(seq), np.int64)
        if not self._rise_seq or not len(seq):
            return out
        # The subscriber thread may append meanwhile (account, then seq, then ns): the ns
        # list is the shortest, and its length bounds a consistent snapshot of all three.
        n = len(self._rise_ns)
        accounts = np.asarray(self._rise_account[:n], np.int64)
        seqs = np.asarray(self._rise_seq[:n], np.int64)
        times = np.asarray(self._rise_ns[:n], np.int64)
        span = int(max(seqs.max(), np.asarray(seq).max())) + 1
        keys = accounts * span + seqs  # per account, coverage only rises: sorted by seq within it
        order = np.argsort(keys, kind="stable")
        keys, accounts, times = keys[order], accounts[order], times[order]
        wanted = np.asarray(account, np.int64) * span + np.asarray(seq, np.int64)
        at = np.searchsorted(keys, wanted, side="left")
        ok = at < len(keys)
        ok[ok] = accounts[at[ok]] == np.asarray(account, np.int64)[ok]
        out[ok] = times[at[ok]]
        return out


def _read_kb(path: str, key: str) -> int:
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    if argv[0].startswith("ray::"):
        # Ray retitles a worker while it runs a method (ray::PositionActorImpl.health).
        return argv[0].strip().split(".", 1)[0]
    script = next((a for a in argv[1:] if a.endswith(".py")), None)
    return os.path.basename(script or argv[0])


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (a snapshot of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


#: Helper processes of the bench itself (multiprocessing's), not of the daemon.
BENCH_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def process_memory(root: int | None = None, exclude: set[int] | None = None) -> dict[str, Any]:
    """RSS and PSS (MB) summed over ``root`` (default: this process) and its descendants.

    Processes in ``exclude`` (and their descendants) are left out, e.g. the
    simulated OMS, which is not part of the daemon, and so are multiprocessing's
    helper processes (:data:`BENCH_HELPERS`). Returns ``rss_mb``,
    ``pss_mb`` and ``processes``: one {pid, name, rss_mb, pss_mb} each, largest first.
    """
    skip: set[int] = set()
    for pid in exclude or ():
        skip.update(descendants(pid))
    rows = []
    for pid in descendants(root or os.getpid()):
        if pid in skip or any(helper in _cmdline(pid) for helper in BENCH_HELPERS):
            continue
        rss = _read_kb(f"/proc/{pid}/status", b"VmRSS:")
        pss = _read_kb(f"/proc/{pid}/smaps_rollup", b"Pss:")
        if rss:
            name = "driver (daemon + bench subscriber)" if pid == (root or os.getpid()) else _name(pid)
            rows.append({"pid": pid, "name": name, "rss_mb": round(rss / 1024.0, 1),
                         "pss_mb": round(pss / 1024.0, 1), "nice": _nice(pid)})
    rows.sort(key=lambda r: -r["rss_mb"])
    return {"rss_mb": round(sum(r["rss_mb"] for r in rows), 1), "pss_mb": round(sum(r["pss_mb"] for r in rows), 1),
            "processes": rows}


_TICKS_PER_S = float(os.sysconf("SC_CLK_TCK"))


def _nice(pid: int) -> int:
    """The process's nice value (Ray starts its workers at RAY_worker_niceness, 15 by default)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """CPU use per process over an interval: the daemon's tree and any extra (labelled) process.

    :meth:`start` snapshots, :meth:`stop` returns [{name, pid, cpu_pct}] over the
    interval, busiest first (100 % = one CPU busy the whole time).
    """

    def __init__(self, root: int | None = None, extra: dict[int, str] | None = None) -> None:
        self.root = root or os.getpid()
        self.extra = dict(extra or {})
        self._start: dict[int, float] = {}
        self._t0 = 0.0

    def _pids(self) -> list[int]:
        pids = [p for p in descendants(self.root) if p not in self.extra]
        return pids + [p for p in self.extra if os.path.exists(f"/proc/{p}")]

    def start(self) -> "CpuMeter":
        self._t0 = time.monotonic()
        self._start = {pid: _cpu_s(pid) for pid in self._pids()}
        return self

    def stop(self) -> list[dict[str, Any]]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        rows = []
        for pid in self._pids():
            used = _cpu_s(pid) - self._start.get(pid, 0.0)
            if used > 0:
                name = self.extra.get(pid) or ("driver" if pid == self.root else _name(pid))
                rows.append({"name": name, "pid": pid, "cpu_pct": round(100.0 * used / wall, 1), "nice": _nice(pid)})
        rows.sort(key=lambda r: -r["cpu_pct"])
        return rows


def _echo(endpoint: str, ready: Any) -> None:
    """The REP side of the floor measurement (child process): echo until a b"stop"."""
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    ready.set()
    while True:
        frame = sock.recv()
        sock.send(frame)
        if frame == b"stop":
            break
    sock.close(0)
    context.term()


def zmq_floor(round_trips: int = 5000, size: int = 200, warmup: int = 500) -> dict[str, float]:
    """Bare pyzmq REQ/REP ipc:// round trip (us) of a ``size``-byte message, this process <-> a child."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="riskd-floor-") as folder:
        endpoint = f"ipc://{folder}/floor.sock"
        ready = ctx.Event()
        child = ctx.Process(target=_echo, args=(endpoint, ready), name="zmq-floor-echo", daemon=True)
        child.start()
        context = zmq.Context()
        sock = context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        try:
            if not ready.wait(30.0):
                raise RuntimeError("zmq floor echo process did not start")
            sock.connect(endpoint)
            payload = os.urandom(size)
            histogram = HdrHistogram(1, 60_000_000_000, 3)
            clock = time.perf_counter_ns
            for i in range(warmup + round_trips):
                t0 = clock()
                sock.send(payload)
                sock.recv()
                if i >= warmup:
                    histogram.record_value(max(1, clock() - t0))
            sock.send(b"stop")
            sock.recv()
        finally:
            sock.close(0)
            context.term()
            child.join(5.0)
            if child.is_alive():
                child.terminate()
    return {"p50_us": histogram.get_value_at_percentile(50.0) / 1e3,
            "p99_us": histogram.get_value_at_percentile(99.0) / 1e3,
            "p999_us": histogram.get_value_at_percentile(99.9) / 1e3, "round_trips": float(round_trips),
            "size_bytes": float(size)}
