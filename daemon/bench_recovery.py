"""``riskd bench recovery --json``: journal append cost, restart to serving with 1M journaled fills, kill -9 trials.

One JSON object:

- ``append_us``: per fsync policy, p50/p99/p99.9 of the time one drop-copy message
  costs the journal (us): the buffered append, plus, for the last message of each
  simulated TCP read (``batch_messages`` messages), the group commit (write, and
  fdatasync under ``batch``; ``every`` syncs each message). ``floor_us``: copying
  the same bytes into a buffer (the least an append can cost), and each policy's
  p50 ratio to it.
- ``recovery_s_1m``: seconds from starting the daemon (Ray included) on a state
  folder holding 1,000,000 journaled fills and shard snapshots 10 s old (the
  journal's last ``rate`` x 10 s fills after them) until it serves: the drop copy
  logged on again and every shard has applied every journaled fill. The setup
  (journal, ExecID store, snapshots) is synthesized by the router's and the
  shard's own code, not timed. The median of ``restart_runs`` restarts, each on a
  fresh copy of the state (``recovery_s_runs``: all of them). ``restart.phases``
  (the median run's; ``phases_runs``: every run's): ``ray_init_s``; the start-up
  marks of the daemon, the ingest and each shard (seconds after the start: process
  start, journal open, ExecID store loaded, snapshot read and restored, journal
  replayed, ...) and the CPU seconds each actor process had used at each mark
  (``ingest_cpu``, ``shards_cpu``); when each shard caught up and the session
  logged on (a 20 ms health poll); ``cpu_s``: CPU seconds per process of the run
  (Ray's own processes, each actor) at serving; ``loadavg_1m``: the host's load
  when the restart began (the host is shared: read the wall clock with it).
  ``floor_empty_start_s``: the same daemon started on an empty state folder.
  ``ray_running_s``: one more restart with Ray already up (started 5 s before the
  clock: a Ray instance that outlives the daemon, ``riskd run --address``).
- ``trials``, ``lost_fills``, ``doubled_fills``: kill -9 trials
  (daemon.bench_recovery_kill) per kind (whole daemon, one position actor, the
  ingest actor), each one stream of about 100,000 fills (busts and corrections
  included) with ``kills`` SIGKILLs at random moments, summed; per-kind details.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import msgspec
import numpy as np

POLICIES = ("none", "interval", "batch", "every")


class RecoveryOptions(msgspec.Struct, kw_only=True):
    """Sizes of the bench (``quick``: a smoke run in well under a minute)."""

    quick: bool = False
    fills: int = 1_000_000
    rate_per_s: float = 10_000.0
    snapshot_age_s: float = 10.0
    append_messages: int = 200_000
    every_messages: int = 3_000
    batch_messages: int = 16
    trial_reports: int = 140_000
    trial_rate_per_s: float = 1_500.0
    kills: int = 10
    kinds: tuple[str, ...] = ("daemon", "position", "ingest")
    #: Parts to run (``--only``): any of append, restart, trials.
    parts: tuple[str, ...] = ("append", "restart", "trials")
    #: Restarts timed on copies of the same state folder (recovery_s_1m: their median).
    restart_runs: int = 1


def options_from_args(args: argparse.Namespace) -> RecoveryOptions:
    options = RecoveryOptions()
    if args.quick:
        options = RecoveryOptions(quick=True, fills=50_000, append_messages=20_000, every_messages=300,
                                  trial_reports=3_000, kills=2, rate_per_s=2_000.0)
    replace = {}
    if args.fills is not None:
        replace["fills"] = args.fills
    if args.trial_reports is not None:
        replace["trial_reports"] = args.trial_reports
    if args.kills is not None:
        replace["kills"] = args.kills
    if args.kinds:
        replace["kinds"] = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    only = getattr(args, "only", None)
    if only:
        parts = tuple(p.strip() for p in only.split(",") if p.strip())
        unknown = set(parts) - set(RecoveryOptions().parts)
        if unknown:
            raise SystemExit(f"riskd bench recovery --only: unknown part(s) {sorted(unknown)}")
        replace["parts"] = parts
    runs = getattr(args, "restart_runs", None)
    if runs:
        replace["restart_runs"] = runs
    return msgspec.structs.replace(options, **replace)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
            "p999": float(np.percentile(values, 99.9)), "n": int(len(values))}


# ----- append ------------------------------------------------------------------------------
def _sample_record(i: int) -> tuple[bytes, bytes]:
    from actors.messages import FillMsg, OrderMsg, Stamps, encode
    from actors.ingest import _FRAMES_ENCODER

    raw = (b"8=FIX.4.4\x019=230\x0135=8\x0134=%d\x0149=OMS\x0152=20261120-21:00:00.000\x0156=RISKD\x01"
           b"37=O%d\x0111=C%d\x0117=E%d\x01150=F\x0139=2\x011=BENCH-0001\x0155=ESZ6\x0154=1\x0138=3\x0144=6900.25\x01"
           b"32=3\x0131=6900.25\x01151=0\x0114=3\x016=6900.25\x0160=20261120-21:00:00.000\x0110=123\x01") % (i, i, i, i)
    frames = [encode(FillMsg(f"E{i}", "trade", "BENCH-0001", "ESZ6", 3.0, 6900.25, f"O{i}", f"C{i}", "", i,
                             Stamps(1, 2, 3), "20261120")),
              encode(OrderMsg(f"E{i}", "filled", "BENCH-0001", "ESZ6", 1, 3.0, 0.0, 3.0, 6900.25, f"O{i}", f"C{i}",
                              "", i, Stamps(1, 2, 3)))]
    return raw, _FRAMES_ENCODER.encode(frames)


def bench_append(options: RecoveryOptions) -> dict[str, Any]:
    """Per-message journal cost for every fsync policy (see the module docstring)."""
    from fix.journal import Journal, JournalSettings

    raw, extra = _sample_record(1)
    out: dict[str, Any] = {"record_bytes": len(raw) + len(extra) + 36, "batch_messages": options.batch_messages}
    clock = time.perf_counter_ns
    # Floor: the bytes copied into a buffer, nothing else.
    buffer = bytearray()
    floor = np.empty(options.append_messages, np.int64)
    for i in range(options.append_messages):
        t0 = clock()
        buffer += raw
        buffer += extra
        floor[i] = clock() - t0
        if len(buffer) > 1 << 20:
            buffer = bytearray()
    out["floor_us"] = _percentiles(floor / 1e3)
    for policy in POLICIES:
        n = options.every_messages if policy == "every" else options.append_messages
        with tempfile.TemporaryDirectory(prefix="riskd-bench-journal-") as folder:
            journal = Journal(folder, JournalSettings(fsync=policy, fsync_interval_ms=10.0))
            per_message = np.empty(n, np.int64)
            commits = []
            gc.disable()
            try:
                for i in range(n):
                    t0 = clock()
                    journal.append(i + 1, i, raw, extra)
                    t1 = clock()
                    per_message[i] = t1 - t0
                    if i % options.batch_messages == options.batch_messages - 1 or i == n - 1:
                        journal.commit()
                        commit = clock() - t1
                        per_message[i] += commit
                        commits.append(commit)
            finally:
                gc.enable()
            fsyncs = journal.fsyncs
            journal.close()
        stats = _percentiles(per_message / 1e3)
        stats["commit_us"] = _percentiles(np.asarray(commits) / 1e3)
        stats["fsyncs"] = fsyncs
        stats["ratio_p50_to_floor"] = stats["p50"] / max(out["floor_us"]["p50"], 1e-9)
        out[policy] = stats
    return out


# ----- restart to serving with 1M journaled fills ---------------------------------------------
def bench_restart(options: RecoveryOptions, log: Any) -> dict[str, Any]:
    """``recovery_s_1m`` (see the module docstring): the median of ``restart_runs`` restarts, each
    on a fresh copy of the synthesized state folder (a restart writes its shutdown snapshot)."""
    from daemon.bench_recovery_state import synthesize_state

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="riskd-bench-restart-") as folder:
        t0 = time.monotonic()
        work, master = Path(folder) / "work", Path(folder) / "master"
        setup = synthesize_state(work, options.fills, options.rate_per_s, options.snapshot_age_s)
        log(f"state synthesized in {time.monotonic() - t0:.1f} s: {setup['journal_bytes'] / 1e6:.0f} MB journal,"
            f" {setup['after_snapshot']} fills after the snapshots")
        work.rename(master)
        for k in range(max(1, options.restart_runs)):
            shutil.copytree(master, work)
            runs.append(_timed_restart(setup))
            shutil.rmtree(work)
            log(f"restart {k + 1}: {runs[-1]['recovery_s_1m']:.2f} s")
        shutil.copytree(master, work)
        ray_up = _timed_restart(setup, ray_running=True)
        log(f"restart with Ray already up: {ray_up['recovery_s_1m']:.2f} s")
    order = sorted(range(len(runs)), key=lambda i: runs[i]["recovery_s_1m"])
    result = dict(runs[order[(len(runs) - 1) // 2]])  # the median run's phases (the lower middle one)
    result["recovery_s_1m"] = statistics.median(r["recovery_s_1m"] for r in runs)
    result["recovery_s_runs"] = [r["recovery_s_1m"] for r in runs]
    result["ray_running_s"] = ray_up["recovery_s_1m"]
    result["ray_running_phases"] = ray_up["phases"]
    result["phases_runs"] = [r["phases"] for r in runs]
    result.update({k: v for k, v in setup.items() if k not in ("config", "market", "oms_seq")})
    # The floor: the same daemon started on an empty state folder, to serving.
    with tempfile.TemporaryDirectory(prefix="riskd-bench-restart-empty-") as folder:
        config = setup["config"]
        state = msgspec.structs.replace(config.durability, state_dir=str(Path(folder) / "state"))
        fix = msgspec.structs.replace(config.fix.drop_copy, file_store_path=str(Path(folder) / "fix"))
        empty = dict(setup, config=msgspec.structs.replace(config, durability=state, fix=msgspec.structs.replace(
            config.fix, drop_copy=fix)), oms_seq=1)
        floor_run = _timed_restart(empty)
    result["floor_empty_start_s"] = floor_run["recovery_s_1m"]
    result["floor_phases"] = floor_run["phases"]
    result["ratio_to_floor"] = result["recovery_s_1m"] / floor_run["recovery_s_1m"]
    return result


def _timed_restart(setup: dict[str, Any], *, ray_running: bool = False) -> dict[str, Any]:
    """One restart to serving; ``phases``: the start-up marks of the daemon, the ingest and
    each shard (actors.recovery_timing), in seconds after the start, and when each shard
    caught up and the session logged on (as seen by a 20 ms health poll). ``ray_running``:
    Ray is started (and left to settle for 5 s) before the clock starts, as when the
    daemon runs on a Ray instance that outlives it (``riskd run --address``)."""
    import ray

    from actors.recovery_timing import descendant_cpu_s, relative
    from daemon.bench_recovery_oms import TrialOms
    from daemon.run import Daemon

    config, market = setup["config"], setup["market"]
    oms = TrialOms(tuple(a.id for a in config.accounts), {"ESZ6": (6900.0, 0.25)})
    oms.session.store.set_next_sender_seq(setup["oms_seq"])  # the OMS has sent the 1M already
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms.port)
    config = msgspec.structs.replace(config, fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy))
    daemon = None
    try:
        # As daemon.run.Daemon starts a local Ray: the actors at the daemon's own priority
        # (Ray's default, +15, starves them behind any busy process at the bench's).
        os.environ["RAY_worker_niceness"] = str(config.daemon.worker_niceness)
        if ray_running:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            time.sleep(5.0)
        load = os.getloadavg()[0]
        wall0 = time.time()
        cpu0 = time.process_time()
        before = {pid: seconds for pid, _, seconds in descendant_cpu_s()}  # Ray's, when it is up already
        t0 = time.monotonic()
        if not ray_running:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        t_ray = time.monotonic()
        daemon = Daemon(config, market, http=False)
        t_actors = time.monotonic()
        caught_up_s: list[float | None] = [None] * config.daemon.shards
        logged_on_s = None
        while True:
            health = daemon.health()
            routed = health["ingest"]["last_seq_per_shard"]
            now = time.monotonic() - t0
            for k, (h, seq) in enumerate(zip(health["shards"], routed)):
                if caught_up_s[k] is None and h["applied_seq"] >= seq:
                    caught_up_s[k] = round(now, 3)
            if logged_on_s is None and health["ingest"]["logged_on"]:
                logged_on_s = round(now, 3)
            if logged_on_s is not None and all(s is not None for s in caught_up_s):
                break
            if now > 600:
                raise TimeoutError("the daemon did not serve within 600 s")
            time.sleep(0.02)
        t_serving = time.monotonic()
        cpu: dict[str, float] = {"bench_process": round(time.process_time() - cpu0, 3)}
        for pid, command, seconds in descendant_cpu_s():
            cpu[command] = round(cpu.get(command, 0.0) + seconds - before.get(pid, 0.0), 3)
        phases = {"ray_init_s": round(t_ray - t0, 3), "daemon": relative(daemon.startup.as_dict(), wall0),
                  "ingest": relative(health["ingest"].get("startup", {}), wall0),
                  "shards": [relative(h.get("startup", {}), wall0) for h in health["shards"]],
                  "ingest_cpu": health["ingest"].get("startup_cpu", {}),
                  "shards_cpu": [h.get("startup_cpu", {}) for h in health["shards"]],
                  "shard_caught_up_s": caught_up_s, "logged_on_s": logged_on_s, "cpu_s": cpu,
                  "loadavg_1m": round(load, 2)}
        return {"recovery_s_1m": t_serving - t0, "ray_init_s": t_ray - t0, "daemon_constructed_s": t_actors - t0,
                "restored_seq": [h["restored_seq"] for h in health["shards"]],
                "caught_up": health["ingest"]["caught_up"], "journal_seq": health["ingest"]["journal_seq"],
                "bulk_replay": [h.get("bulk_replay") for h in health["shards"]],
                "phases": phases}
    finally:
        if daemon is not None:
            daemon.stop()
        ray.shutdown()
        oms.stop()


# ----- kill -9 trials ------------------------------------------------------------------------
def bench_trials(options: RecoveryOptions, log: Any) -> dict[str, Any]:
    from daemon.bench_recovery_kill import run_trial
    from daemon.book import load_book
    from daemon.config import AccountSpec, resolve_data_path

    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    accounts = tuple(AccountSpec(id=f"T-{i:02d}", profile="span", cash=10_000_000.0) for i in range(16))
    config = msgspec.structs.replace(config, accounts=accounts)
    marks = {"ESZ6": (6900.0, 0.25), "NQZ6": (24570.0, 0.25), "SPX 261218C7000": (150.0, 0.05),
             "NQZ6 C25000": (900.0, 0.05)}
    results = {}
    for i, kind in enumerate(options.kinds):
        log(f"kill trial {kind}: {options.trial_reports} reports, {options.kills} kills")
        result = run_trial(kind, config, book.market, reports=options.trial_reports, kills=options.kills,
                           seed=2026 + i, marks=marks, rate_per_s=options.trial_rate_per_s)
        results[kind] = msgspec.to_builtins(result)
        log(f"  {kind}: lost {result.lost_fills}, doubled {result.doubled_fills}, positions off"
            f" {result.position_mismatches}, cash off {result.cash_mismatches}, {result.seconds:.0f} s")
    values = list(results.values())
    restart = [s for r in values for s in r["restart_s"]]
    return {"trials": sum(r["kills"] for r in values), "streams": len(values),
            "fills": sum(r["fills"] for r in values),
            "lost_fills": sum(r["lost_fills"] for r in values),
            "doubled_fills": sum(r["doubled_fills"] for r in values),
            "position_mismatches": sum(r["position_mismatches"] for r in values),
            "cash_mismatches": sum(r["cash_mismatches"] for r in values),
            "restart_s": _percentiles(np.asarray(restart)) if restart else None, "by_kind": results}


def run_bench_recovery(out: TextIO, options: RecoveryOptions) -> int:
    """Run the three parts and print one JSON object; progress goes to stderr."""
    import sys

    def log(line: str) -> None:
        print(f"[bench recovery] {line}", file=sys.stderr, flush=True)
    result: dict[str, Any] = {"bench": "recovery", "quick": options.quick, "cpus": os.cpu_count()}
    met: dict[str, bool] = {}
    if "append" in options.parts:
        log("journal append per fsync policy")
        result["append_us"] = bench_append(options)
        met["append_p50_us"] = all(result["append_us"][p]["p50"] <= 5.0 for p in ("none", "interval", "batch"))
    if "restart" in options.parts:
        log(f"restart to serving with {options.fills} journaled fills")
        restart = bench_restart(options, log)
        result["recovery_s_1m"] = restart.pop("recovery_s_1m")
        result["restart"] = restart
        met["recovery_s_1m"] = result["recovery_s_1m"] <= 10.0
    if "trials" in options.parts:
        trials = bench_trials(options, log)
        result.update(trials)
        met["lost_fills"] = trials["lost_fills"] == 0
        met["doubled_fills"] = trials["doubled_fills"] == 0
    result["targets"] = {"lost_fills": 0, "doubled_fills": 0, "recovery_s_1m": 10.0, "append_p50_us": 5.0}
    result["met"] = met
    out.write(json.dumps(result) + "\n")
    return 0
