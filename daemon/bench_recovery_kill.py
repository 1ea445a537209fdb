"""Kill -9 trials: the daemon (or one of its actors) SIGKILLed while the OMS streams, then checked.

:class:`DaemonProcess` runs the whole daemon (its own Ray cluster, every actor)
in a child process of its own session, driven over a ZeroMQ REQ/REP control
socket (``python -m daemon.bench_recovery_kill serve SPEC``). Killing "the whole
daemon" SIGKILLs every process of that session: the driver, Ray's GCS and raylet
and every actor worker; restarting starts a new child on the same state folder.

:func:`run_trial` streams a :class:`daemon.bench_recovery_oms.TrialOms` drop copy
(fills, busts, corrections), kills at random report counts (the whole daemon, a
position actor's worker, or the ingest actor's worker: Ray restarts those two),
lets the stream finish, and compares the end state with the OMS's own record:
positions exactly, cash exactly (an offline recomputation applying the OMS's
fills in order to fresh accounts), and the ExecID keys of the fills applied.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import zmq

from daemon.bench_recovery_oms import TrialOms, TruthFill
from daemon.config import RiskdConfig
from risk.instruments import MarketSnapshot

_SPEC = tuple[RiskdConfig, MarketSnapshot]
KINDS = ("daemon", "position", "ingest")


class TrialResult(msgspec.Struct, kw_only=True):
    """One stream with its kills. ``lost_fills``: fills of the OMS's record no shard applied;
    ``doubled_fills``: fills counted twice, seen as positions whose quantity differs from
    the sum of the fills applied (each once); mismatches: positions and cash per account
    that differ from the ground truth (exactly)."""

    kind: str
    reports: int
    fills: int
    busts: int
    corrections: int
    kills: int
    #: Reports the OMS had sent at each kill.
    kill_at: list[int]
    lost_fills: int
    doubled_fills: int
    unexpected_fills: int
    position_mismatches: int
    cash_mismatches: int
    restart_s: list[float]
    seconds: float
    #: Per kill, once recovered: shards' restored snapshot seqs, frames the ingest's
    #: catch-up sent per shard, ExecID records re-run, journal bytes truncated, replays.
    recovery: list[dict[str, Any]] = []


# ----- the child process ---------------------------------------------------------------
def serve(spec_path: str) -> None:
    """The daemon process: start riskd, answer control commands until killed or told to stop."""
    import logging

    import ray

    from daemon.run import Daemon

    logging.basicConfig(level=logging.WARNING)
    config, market = msgspec.msgpack.decode(Path(spec_path).read_bytes(), type=_SPEC)
    daemon = Daemon(config, market, http=False)
    context = zmq.Context()
    rep = context.socket(zmq.REP)
    rep.bind(f"ipc://{Path(spec_path).with_suffix('.ctl')}")
    while True:
        command, args = msgspec.msgpack.decode(rep.recv())
        try:
            reply: Any = _command(daemon, command, args)
        except Exception as exc:  # answered, never fatal
            reply = {"error": repr(exc)}
        rep.send(msgspec.msgpack.encode(reply))
        if command == "stop":
            ray.shutdown()
            os._exit(0)


def _command(daemon: Any, command: str, args: list[Any]) -> Any:
    import ray

    if command == "health":
        return daemon.health()
    if command == "state":
        keys = []
        for part in ray.get([p.fill_keys.remote() for p in daemon.positions], timeout=120):
            keys += part
        return {"accounts": daemon.state(), "keys": keys}
    if command == "kill":  # SIGKILL an actor's worker process; Ray restarts it
        what, index = args
        actor = daemon.ingest if what == "ingest" else daemon.positions[index]
        pid = ray.get(actor.health.remote(), timeout=30)["pid"]
        os.kill(pid, signal.SIGKILL)
        return pid
    if command == "snapshot":
        return ray.get([p.snapshot.remote() for p in daemon.positions], timeout=120)
    if command == "stop":
        daemon.stop()
        return True
    raise ValueError(f"unknown command {command!r}")


class DaemonProcess:
    """A riskd daemon in its own process session (see the module docstring)."""

    def __init__(self, config: RiskdConfig, market: MarketSnapshot, folder: Path) -> None:
        self.spec_path = folder / "daemon.spec"
        self.spec_path.write_bytes(msgspec.msgpack.encode((config, market)))
        self.folder = folder
        self.context = zmq.Context()
        self.process: subprocess.Popen | None = None
        self._req: zmq.Socket | None = None
        self.starts = 0

    def start(self, timeout_s: float = 120.0) -> float:
        """Start the child and wait until it answers; returns the seconds it took."""
        began = time.monotonic()
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(self.folder / f"daemon-{self.starts}.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "daemon.bench_recovery_kill", "serve",
                                         str(self.spec_path)], start_new_session=True, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=str(self.folder))
        log.close()
        self.starts += 1
        self._connect()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.call("health", timeout_s=5.0)
                return time.monotonic() - began
            except TimeoutError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the daemon process exited with {self.process.returncode}: see "
                                       f"{self.folder}/daemon-{self.starts - 1}.log") from None
                if time.monotonic() > deadline:
                    raise
                self._connect()

    def _connect(self) -> None:
        if self._req is not None:
            self._req.close(0)
        self._req = self.context.socket(zmq.REQ)
        self._req.setsockopt(zmq.LINGER, 0)
        self._req.connect(f"ipc://{self.spec_path.with_suffix('.ctl')}")

    def call(self, command: str, *args: Any, timeout_s: float = 60.0) -> Any:
        """One control command; TimeoutError (and a fresh socket) if no answer in time."""
        assert self._req is not None
        self._req.send(msgspec.msgpack.encode((command, list(args))))
        if not self._req.poll(int(timeout_s * 1000)):
            self._connect()
            raise TimeoutError(f"the daemon did not answer {command!r} within {timeout_s} s")
        reply = msgspec.msgpack.decode(self._req.recv())
        if isinstance(reply, dict) and set(reply) == {"error"}:
            raise RuntimeError(f"daemon {command!r}: {reply['error']}")
        return reply

    def kill_all(self) -> int:
        """SIGKILL every process of the daemon's session at once; returns how many."""
        assert self.process is not None
        sid = self.process.pid
        victims = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) == sid:
                        victims.append(int(entry))
                except OSError:
                    pass
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.process.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in victims):
            time.sleep(0.05)
        return len(victims)

    def stop(self) -> None:
        """Graceful stop if it answers, else kill; idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.call("stop", timeout_s=60.0)
            self.process.wait(60)
        except (TimeoutError, subprocess.TimeoutExpired, RuntimeError):
            self.kill_all()

    def close(self) -> None:
        if self._req is not None:
            self._req.close(0)
        self.context.term()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# ----- the trial -------------------------------------------------------------------------
def trial_config(config: RiskdConfig, oms_port: int, folder: Path, *, max_restarts: int,
                 fsync: str = "batch") -> RiskdConfig:
    """The daemon's config for a trial: the OMS's port, state under ``folder``, static market."""
    replace = msgspec.structs.replace
    assert config.fix.drop_copy is not None
    drop_copy = replace(config.fix.drop_copy, socket_connect_port=oms_port, file_store_path=str(folder / "fix"),
                        reconnect_interval=0.1, max_reconnect_interval=0.5)
    return replace(config, fix=replace(config.fix, drop_copy=drop_copy),
                   daemon=replace(config.daemon, run_dir=str(folder / "run"), shards=2, http_port=0, market="static",
                                  max_restarts=max_restarts),
                   durability=replace(config.durability, fsync=fsync, snapshot_interval_s=2.0))


def _wait(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return
        except (TimeoutError, RuntimeError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def _actor_restarted(dp: DaemonProcess, what: str, index: int, old_pid: int) -> bool:
    health = dp.call("health", timeout_s=10.0)
    if what == "ingest":
        h = health["ingest"]
        return h["pid"] != old_pid and h["logged_on"]
    h = health["shards"][index]
    return h["pid"] != old_pid and not h["recovering"]


def run_trial(kind: str, config: RiskdConfig, market: MarketSnapshot, *, reports: int, kills: int, seed: int,
              rate_per_s: float = 1000.0, marks: dict[str, tuple[float, float]], folder: Path | None = None,
              fsync: str = "batch", pause_s: tuple[float, float] = (0.3, 2.5)) -> TrialResult:
    """One stream of ``reports`` ExecutionReports (``rate_per_s``) with ``kills`` SIGKILLs of
    ``kind`` (``daemon``, ``position`` or ``ingest``), each a random ``pause_s`` (seconds)
    after the stream started or the previous recovery; see the module docstring."""
    assert kind in KINDS
    began = time.monotonic()
    rng = random.Random(seed)
    own = tempfile.TemporaryDirectory(prefix=f"riskd-trial-{kind}-") if folder is None else None
    root = Path(own.name) if own is not None else folder
    assert root is not None
    accounts = tuple(a.id for a in config.accounts)
    oms = TrialOms(accounts, marks, seed=seed)
    dp = DaemonProcess(trial_config(config, oms.port, root, max_restarts=kills + 2, fsync=fsync), market, root)
    restart_s: list[float] = []
    recovery: list[dict[str, Any]] = []
    kill_at: list[int] = []
    try:
        dp.start()
        _wait(lambda: oms.session.logged_on, 60, "the drop-copy logon")
        oms.stream(reports, rate_per_s)
        for _ in range(kills):
            # A random moment: some time after the stream started or the last recovery,
            # so each kill finds the daemon in its own state (streaming, resending, idle).
            time.sleep(rng.uniform(*pause_s))
            kill_at.append(oms.sent)
            t0 = time.monotonic()
            if kind == "daemon":
                dp.kill_all()
                dp.start()
                _wait(lambda: dp.call("health", timeout_s=10.0)["ingest"]["logged_on"], 120, "logon after restart")
            else:
                index = rng.randrange(len(dp.call("health")["shards"])) if kind == "position" else 0
                old = dp.call("kill", kind, index)
                _wait(lambda: _actor_restarted(dp, kind, index, old), 120, f"the {kind} actor's restart")
            restart_s.append(time.monotonic() - t0)
            recovery.append(_recovery_view(dp.call("health", timeout_s=30.0)))
        oms.wait_streamed(timeout_s=1200)
        last = oms.last_seq
        _wait(lambda: dp.call("health", timeout_s=10.0)["ingest"]["next_target_seq"] > last, 600,
              "the daemon to receive every report")
        _wait(lambda: _drained(dp), 300, "the shards to apply every event")
        state = dp.call("state", timeout_s=300.0)
        dp.stop()
    finally:
        dp.stop()
        dp.close()
        oms.stop()
        if own is not None:
            own.cleanup()
    result = compare(state, oms.flow.fills, config, market)
    counts = oms.flow.counts
    return TrialResult(kind=kind, reports=reports, fills=len(oms.flow.fills), busts=counts.get("H", 0),
                       corrections=counts.get("G", 0), kills=kills, kill_at=kill_at, restart_s=restart_s,
                       seconds=time.monotonic() - began, recovery=recovery, **result)


def _recovery_view(health: dict[str, Any]) -> dict[str, Any]:
    ingest = health["ingest"]
    return {"restored_seq": [s["restored_seq"] for s in health["shards"]], "caught_up": ingest["caught_up"],
            "reconciled": ingest["reconciled"], "journal_truncated": ingest["journal_truncated"],
            "replayed": [s["replayed"] for s in health["shards"]], "stale": [s["stale"] for s in health["shards"]],
            "bulk_applied": [(s.get("bulk_replay") or {}).get("applied", 0) for s in health["shards"]]}


def _drained(dp: DaemonProcess) -> bool:
    health = dp.call("health", timeout_s=10.0)
    routed = health["ingest"]["last_seq_per_shard"]
    return all(not h["recovering"] and h["max_seq"] >= seq for h, seq in zip(health["shards"], routed))


def compare(state: dict[str, Any], fills: list[TruthFill], config: RiskdConfig, market: MarketSnapshot
            ) -> dict[str, int]:
    """The end state against the OMS's record (see :class:`TrialResult`)."""
    from risk.account import Account
    from risk.instruments import InstrumentTable
    from risk.model import RiskModel

    table = InstrumentTable(config.underlyings, config.instruments)
    model = RiskModel(table, market, config.margin)
    truth_accounts = {a.id: Account(a.id, config.margin.profiles[a.profile], model, a.cash) for a in config.accounts}
    truth_qty: dict[tuple[str, str], float] = {}
    by_key: dict[tuple[str, str, str], TruthFill] = {}
    for f in fills:
        truth_accounts[f.account].apply_fill(table.index[f.symbol], f.quantity, f.price)
        truth_qty[(f.account, f.symbol)] = truth_qty.get((f.account, f.symbol), 0.0) + f.quantity
        by_key[(f.trade_date, f.exec_id, f.kind)] = f
    applied = {tuple(k) for k in state["keys"]}
    lost = len(set(by_key) - applied)
    unexpected = len(applied - set(by_key))
    from_applied: dict[tuple[str, str], float] = {}
    for key in applied & set(by_key):
        f = by_key[key]  # type: ignore[index]
        from_applied[(f.account, f.symbol)] = from_applied.get((f.account, f.symbol), 0.0) + f.quantity
    got_qty = {(acct, sym): float(p[0]) for acct, s in state["accounts"].items() for sym, p in s["positions"].items()}
    keys = set(got_qty) | set(from_applied) | set(truth_qty)
    doubled = sum(1 for k in keys if got_qty.get(k, 0.0) != from_applied.get(k, 0.0))
    positions = sum(1 for k in keys if got_qty.get(k, 0.0) != truth_qty.get(k, 0.0))
    cash = sum(1 for a, acct in truth_accounts.items() if state["accounts"][a]["cash"] != acct.cash)
    return {"lost_fills": lost, "doubled_fills": doubled, "unexpected_fills": unexpected,
            "position_mismatches": positions, "cash_mismatches": cash}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        print("usage: python -m daemon.bench_recovery_kill serve SPEC", file=sys.stderr)
        sys.exit(2)
