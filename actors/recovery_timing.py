"""Start-up phase marks of an actor or the daemon, for the recovery bench's breakdown.

Each mark is wall-clock seconds (``time.time()``): the actors are separate
processes on one host, so the bench subtracts its own start from every mark to put
the phases of the daemon, the ingest and each shard on one time line. Process
start comes from ``/proc/self/stat`` (Linux), so the interpreter's and Ray's
worker start-up before the actor's module ran shows too. Cheap: one dict entry
per phase, nothing on a hot path.
"""

from __future__ import annotations

import os
import time


def process_start_unix_s() -> float | None:
    """When this process started (unix seconds), from /proc; None where unavailable."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat: starttime, clock ticks after boot
        with open("/proc/uptime", "rb") as f:
            uptime_s = float(f.read().split()[0])
        return time.time() - uptime_s + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class StartupMarks:
    """Named wall-clock marks (unix seconds), in the order they were taken, and the
    process's CPU seconds (user + system, all threads) at each: on a loaded host the
    wall clock says when, the CPU what a phase cost."""

    def __init__(self, *, with_process_start: bool = True) -> None:
        self.marks: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        if with_process_start:
            started = process_start_unix_s()
            if started is not None:
                self.marks["process_start"] = started
                self.cpu["process_start"] = 0.0
        self.mark("init")

    def mark(self, name: str) -> None:
        """Record ``name`` now (a repeated name keeps its first time)."""
        if name not in self.marks:
            self.marks[name] = time.time()
            self.cpu[name] = round(time.process_time(), 3)

    def as_dict(self) -> dict[str, float]:
        return dict(self.marks)

    def cpu_dict(self) -> dict[str, float]:
        """CPU seconds of this process at each mark."""
        return dict(self.cpu)


def relative(marks: dict[str, float], origin_s: float) -> dict[str, float]:
    """Marks as seconds after ``origin_s`` (unix seconds), rounded to ms."""
    return {name: round(t - origin_s, 3) for name, t in marks.items()}


def descendant_cpu_s(root_pid: int | None = None) -> list[tuple[int, str, float]]:
    """(pid, short command, CPU seconds user + system) of every live process under
    ``root_pid`` (default: this one), from /proc: where a start-up's CPU went (Ray's own
    processes, each actor). Linux only; [] elsewhere."""
    root = os.getpid() if root_pid is None else root_pid
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    info: dict[int, tuple[str, float]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        head, _, rest = stat.rpartition(b")")
        fields = rest.split()
        pid = int(name)
        parents[pid] = int(fields[1])
        comm = head.partition(b"(")[2].decode(errors="replace")
        info[pid] = (_short_command(cmdline) or comm, (int(fields[11]) + int(fields[12])) / tick)
    out = []
    for pid, (command, cpu) in info.items():
        p = pid
        while p > 1 and p != root:
            p = parents.get(p, 0)
        if p == root and pid != root:
            out.append((pid, command, round(cpu, 3)))
    return sorted(out)


def _short_command(cmdline: str) -> str:
    """A process's role from its command line (Ray names its workers and daemons in it)."""
    for marker in ("ray::", "gcs_server", "raylet", "dashboard", "log_monitor", "monitor.py", "runtime_env"):
        at = cmdline.find(marker)
        if at >= 0:
            return cmdline[at:at + 60].split()[0]
    return cmdline[:60]
