"""``riskd bench pipeline``: fills through a real FIX session into the running daemon, as JSON.

The daemon runs as in production (``daemon.run.Daemon``: Ray, one drop-copy ingest
actor, two position shards, static market) on the bench universe
(:mod:`daemon.bench_universe`: 1,000 accounts x 50 positions by default). A
simulated OMS in its own process (:mod:`daemon.bench_oms`) is the drop-copy FIX
acceptor; the daemon's AccountRisk reader hands every frame to
:class:`daemon.bench_measure.RiskCollector` (``Daemon.add_risk_listener``). Phases, in order:

1. load: one fill per (account, held instrument), 50,000 by default (also the
   warm-up); then the positions are checked and ``rss_mb``/``pss_mb`` taken (every
   daemon process: this driver and Ray's gcs, raylet, agents and workers; not the
   OMS process);
2. ``zmq_floor_*``: a bare pyzmq REQ/REP ipc:// round trip, ~200 B, two processes;
3. end to end at ``--e2e-rate`` fills/s for ``--e2e-seconds``: per fill, drop-copy
   bytes written to the socket by the OMS (monotonic ns after the write) -> its
   first AccountRisk (``last_seq`` = that MsgSeqNum) received here; ``stages``:
   each stage over this phase from the stamps that AccountRisk carries (the ones
   the shards record theirs from; the daemon's own view pulls and consumes the
   shards' histogram deltas), in us, with ``budget_us`` from config;
4. the sustained ladder (``--rates``, each held ``--hold-seconds``): a rate is held
   when the OMS achieved >= 95 % of it, and within ``DRAIN_S`` of the last write
   every fill sent has been applied (each account's AccountRisk ``last_seq`` reached
   its last fill). The ladder stops at the first rate not held;
5. the end: wait for every fill, then ``lost_fills`` = fills sent whose account's
   AccountRisk never reached them, and every account's final positions are compared
   exactly with the OMS's own record (``position_mismatches``).

Progress goes to stderr, the JSON object alone to stdout. Latencies in
microseconds (us), rates in fills per second, memory in MB (2^20 bytes).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any, Callable, TextIO

import msgspec
import numpy as np

from actors.latency import LatencyBudgets, StageRecorder
from daemon.bench_daemon import bench_config
from daemon.bench_measure import CpuMeter, RiskCollector, latency_summary_us, process_memory, zmq_floor
from daemon.bench_oms import OmsClient, OmsSpec, PhaseResult
from daemon.bench_universe import Universe, build_universe

#: Seconds after a step's last write by which every fill must be applied.
DRAIN_S = 2.0
#: A rate is held only if the OMS wrote at least this fraction of it.
ACHIEVED_FRACTION = 0.95
TARGETS = {"e2e_p50_us": 250.0, "e2e_p99_us": 1000.0, "sustained_fills_per_s": 20_000.0, "lost_fills": 0,
           "rss_mb": 1500.0}


class PipelineOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Sizes and rates of one bench run (fills/s, seconds)."""

    accounts: int = 1000
    positions: int = 50
    e2e_rate: float = 2000.0
    e2e_seconds: float = 10.0
    hold_seconds: float = 30.0
    rates: tuple[float, ...] = (1000.0, 2000.0, 3000.0, 5000.0, 7500.0, 10000.0, 15000.0, 20000.0, 30000.0,
                                40000.0)
    load_rate: float = 10000.0
    floor_round_trips: int = 5000
    seed: int = 2026
    #: Every n-th account on the VaR profile (0: none).
    var_every: int = 10


QUICK = PipelineOptions(accounts=20, positions=5, e2e_rate=200.0, e2e_seconds=2.0, hold_seconds=2.0,
                        rates=(500.0,), load_rate=1000.0, floor_round_trips=500)


def _latency(start_ns: np.ndarray, end_ns: np.ndarray) -> dict[str, float]:
    """p50/p99/p99.9/max (us) of end - start over the pairs where both are set.

    ``inversions``: pairs with end < start (the OMS process was preempted between
    its write and reading the clock, and the daemon answered meanwhile), counted
    as 1 ns."""
    ok = (start_ns > 0) & (end_ns > 0)
    if not ok.any():
        return {"p50_us": 0.0, "p99_us": 0.0, "p999_us": 0.0, "max_us": 0.0, "count": 0, "inversions": 0}
    values = end_ns[ok] - start_ns[ok]
    return {**latency_summary_us(values), "inversions": int((values < 0).sum())}


def _received(collector: RiskCollector, phase: PhaseResult) -> np.ndarray:
    """Per fill of ``phase``: monotonic ns (0 = none) of the first AccountRisk that
    published it (its account's last_seq reached the fill's MsgSeqNum)."""
    return collector.published_ns(phase.acct, phase.seq)


def _per_second_p99(phase: PhaseResult, received: np.ndarray) -> list[float]:
    """p99 of write -> AccountRisk (us) per second of the phase, by write time: shows stalls' rhythm."""
    if not phase.sent:
        return []
    second = (phase.write_ns - phase.write_ns[0]) // 1_000_000_000
    out = []
    for k in range(int(second[-1]) + 1):
        ok = (second == k) & (received > 0)
        if ok.any():
            out.append(round(float(np.percentile(received[ok] - phase.write_ns[ok], 99)) / 1e3, 1))
    return out


class _Ledger:
    """What the OMS sent (its phases) against what AccountRisk showed applied (the collector)."""

    def __init__(self, universe: Universe) -> None:
        self.universe = universe
        self.phases: list[PhaseResult] = []
        self.collector: RiskCollector | None = None

    def last_seq_by_account(self, phase: PhaseResult) -> np.ndarray:
        last = np.zeros(len(self.universe.accounts), np.int64)
        np.maximum.at(last, phase.acct, phase.seq)
        return last

    def backlog(self, phases: list[PhaseResult]) -> int:
        """Fills of ``phases`` not (yet) seen applied."""
        assert self.collector is not None
        covered = np.asarray(self.collector.covered, np.int64)
        return int(sum(int((p.seq > covered[p.acct]).sum()) for p in phases))

    def wait_drained(self, phases: list[PhaseResult], limit_s: float, stall_s: float | None = None) -> float | None:
        """Seconds after the last write until every fill of ``phases`` was applied; None if
        not within ``limit_s`` (or no progress for ``stall_s``)."""
        assert self.collector is not None
        last = np.zeros(len(self.universe.accounts), np.int64)
        for p in phases:
            np.maximum(last, self.last_seq_by_account(p), out=last)
        last_write = max((int(p.write_ns[-1]) for p in phases if p.sent), default=time.monotonic_ns())
        deadline = time.monotonic() + limit_s
        progress_at, progress = time.monotonic(), -1
        while True:
            covered = np.asarray(self.collector.covered, np.int64)
            if (covered >= last).all():
                return max(0.0, (time.monotonic_ns() - last_write) / 1e9)
            now = time.monotonic()
            if self.collector.applied != progress:
                progress, progress_at = self.collector.applied, now
            if now > deadline or (stall_s is not None and now - progress_at > stall_s):
                return None
            time.sleep(0.005)


def _stages(recorded: StageRecorder, e2e: PhaseResult, collector: RiskCollector,
            budgets: LatencyBudgets) -> dict[str, dict[str, Any]]:
    """Per-stage p50/p99/p99.9/max (us), count and p99 budget over the end-to-end phase.

    From the stamps of each fill's first AccountRisk (see RiskCollector), plus
    ``fix_wire``: OMS write -> the ingest's read of those bytes, and ``e2e``: OMS
    write -> AccountRisk here (the headline figure)."""
    merged = StageRecorder(budgets, cumulative=True)
    merged.merge_encoded(recorded.encode(cumulative=True))
    received = _received(collector, e2e)
    for seq, written, got in zip(e2e.seq.tolist(), e2e.write_ns.tolist(), received.tolist()):
        read = int(collector.read_ns[seq]) if seq < len(collector.read_ns) else 0
        if read:
            merged.record("fix_wire", written, read)
        if got:
            merged.record("e2e", written, got)
    out: dict[str, dict[str, Any]] = {}
    for stage, stats in merged.snapshot().items():
        if stats.count:
            out[stage] = {"p50_us": round(stats.p50_us, 1), "p99_us": round(stats.p99_us, 1),
                          "p999_us": round(stats.p999_us, 1), "max_us": round(stats.max_us, 1),
                          "count": stats.count, "budget_us": stats.budget_us,
                          "within_budget": None if stats.budget_us is None else stats.p99_us <= stats.budget_us}
    return out


def _compare_positions(universe: Universe, truth: np.ndarray, held: dict[str, dict[str, float]]) -> int:
    """(account, instrument) pairs whose daemon position differs from the OMS's record."""
    mismatches = 0
    for a, account in enumerate(universe.accounts):
        expected = {s: float(q) for s, q in zip(universe.holdings[a], truth[a].tolist()) if q != 0}
        actual = {s: q for s, q in held.get(account, {}).items() if q != 0.0}
        mismatches += sum(1 for s in set(expected) | set(actual) if expected.get(s) != actual.get(s))
    return mismatches


def pipeline_bench(options: PipelineOptions, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run the whole bench (see the module docstring) and return its JSON-ready result."""
    import ray

    from daemon.run import Daemon

    started = time.monotonic()
    universe = build_universe(options.accounts, options.positions, seed=options.seed, var_every=options.var_every)
    run = _Ledger(universe)
    state = tempfile.TemporaryDirectory(prefix="riskd-bench-pipeline-")
    oms: OmsClient | None = None
    daemon = None
    result: dict[str, Any] = {"accounts": options.accounts, "positions_per_account": options.positions,
                              "instruments": len(universe.config.instruments), "profiles": universe.profiles}
    try:
        oms = OmsClient(OmsSpec(accounts=universe.accounts, holdings=universe.holdings, marks=universe.marks))
        config = bench_config(universe, oms.port, state.name)
        budgets = config.daemon.latency
        log(f"universe: {options.accounts} accounts x {options.positions} positions, "
            f"{len(config.instruments)} instruments; starting riskd (Ray, 1 ingest, 2 shards)...")
        daemon = Daemon(config, universe.market)
        if not oms.wait_logged_on(60.0):
            raise RuntimeError("the daemon's drop-copy session did not log on to the bench OMS within 60 s")
        n_load = options.accounts * options.positions
        planned = n_load + int(options.e2e_rate * options.e2e_seconds) + sum(int(r * options.hold_seconds)
                                                                             for r in options.rates)
        run.collector = collector = RiskCollector(universe.accounts, int(planned * 1.05) + 10_000)
        daemon.add_risk_listener(collector)  # the daemon's own reader thread hands us every frame
        result["startup_s"] = round(time.monotonic() - started, 1)

        log(f"load: {n_load} fills at up to {options.load_rate:.0f}/s...")
        t0 = time.monotonic()
        load = oms.run_phase("load", options.load_rate, n_load, options.seed, n_load / options.load_rate * 3 + 30)
        run.phases.append(load)
        if run.wait_drained([load], 120.0, stall_s=20.0) is None:
            raise RuntimeError(f"load: {run.backlog([load])} of {load.sent} fills not applied")
        load_s = time.monotonic() - t0
        loaded = sum(len(p) for p in daemon.positions_by_account().values())
        result["load"] = {"fills": load.sent, "seconds": round(load_s, 2), "fills_per_s": round(load.sent / load_s),
                          "positions_loaded": loaded}
        memory = process_memory(exclude={oms.pid} if oms.pid else None)
        result.update(rss_mb=memory["rss_mb"], pss_mb=memory["pss_mb"], rss_processes=memory["processes"])
        log(f"loaded {loaded} positions in {load_s:.1f} s; daemon RSS {memory['rss_mb']:.0f} MB "
            f"(PSS {memory['pss_mb']:.0f} MB) over {len(memory['processes'])} processes")

        floor = zmq_floor(options.floor_round_trips)
        result.update(zmq_floor_p50_us=round(floor["p50_us"], 1), zmq_floor_p99_us=round(floor["p99_us"], 1))
        log(f"zmq REQ/REP ipc floor: p50 {floor['p50_us']:.0f} us, p99 {floor['p99_us']:.0f} us")

        n_e2e = int(options.e2e_rate * options.e2e_seconds)
        log(f"end to end: {n_e2e} fills at {options.e2e_rate:.0f}/s...")
        collector.stages = collector_stages = StageRecorder(budgets, cumulative=True)
        cpu = CpuMeter(extra={oms.pid: "bench OMS"} if oms.pid else None).start()
        e2e = oms.run_phase("random", options.e2e_rate, n_e2e, options.seed + 1, options.e2e_seconds * 2 + 30)
        run.phases.append(e2e)
        run.wait_drained([e2e], 30.0)
        result["cpu_e2e"] = cpu.stop()[:8]
        collector.stages = None
        latency = _latency(e2e.write_ns, _received(collector, e2e))
        result.update(e2e_p50_us=latency["p50_us"], e2e_p99_us=latency["p99_us"], e2e_p999_us=latency["p999_us"],
                      e2e_max_us=latency["max_us"], e2e_rate_per_s=options.e2e_rate,
                      e2e_achieved_per_s=round(e2e.achieved_per_s), e2e_fills=e2e.sent,
                      e2e_measured=latency["count"], e2e_inversions=latency["inversions"])
        result["ratio_e2e_p50_to_floor"] = round(latency["p50_us"] / max(floor["p50_us"], 1e-9), 2)
        result["stages"] = _stages(collector_stages, e2e, collector, budgets)
        result["e2e_p99_us_per_second"] = _per_second_p99(e2e, _received(collector, e2e))
        log(f"end to end: p50 {latency['p50_us']} us, p99 {latency['p99_us']} us, p99.9 {latency['p999_us']} us")

        ladder: list[dict[str, Any]] = []
        sustained = 0.0
        for k, rate in enumerate(options.rates):
            log(f"sustained: {rate:.0f} fills/s for {options.hold_seconds:.0f} s...")
            applied_before = collector.applied
            t_step = time.monotonic()
            cpu = CpuMeter(extra={oms.pid: "bench OMS"} if oms.pid else None).start()
            step = oms.run_phase("random", rate, int(rate * options.hold_seconds), options.seed + 10 + k,
                                 options.hold_seconds * 1.2 + 5)
            run.phases.append(step)
            drained = run.wait_drained([step], DRAIN_S)
            backlog = run.backlog([step]) if drained is None else 0
            applied_rate = (collector.applied - applied_before) / max(time.monotonic() - t_step, 1e-9)
            under_load = _latency(step.write_ns, _received(collector, step))
            busy = cpu.stop()[:8]
            held = (drained is not None and step.sent == step.planned
                    and step.achieved_per_s >= ACHIEVED_FRACTION * rate)
            ladder.append({"rate": rate, "sent": step.sent, "planned": step.planned,
                           "achieved_per_s": round(step.achieved_per_s), "drained_s": drained and round(drained, 3),
                           "backlog_at_deadline": backlog, "applied_per_s": round(applied_rate),
                           "oms_stalls": step.stalls, "oms_max_buffer_bytes": step.max_buffer,
                           "latency_p50_us": under_load["p50_us"], "latency_p99_us": under_load["p99_us"],
                           "held": held, "cpu": busy})
            log(f"  sent {step.sent} at {step.achieved_per_s:.0f}/s, drained "
                f"{'in %.2f s' % drained if drained is not None else 'NOT within %.0f s (%d behind)' % (DRAIN_S, backlog)}"
                f", p50 {under_load['p50_us']} us p99 {under_load['p99_us']} us: {'held' if held else 'NOT held'}")
            if not held:
                break
            sustained = rate
        result.update(sustained_fills_per_s=sustained, ladder=ladder, hold_seconds=options.hold_seconds,
                      max_applied_fills_per_s=max((step["applied_per_s"] for step in ladder), default=0))

        log("final drain and position check...")
        run.wait_drained(run.phases, 300.0, stall_s=30.0)
        result["lost_fills"] = run.backlog(run.phases)
        result["fills_sent"] = sum(p.sent for p in run.phases)
        mismatches = _compare_positions(universe, oms.truth(), daemon.positions_by_account())
        result.update(position_mismatches=mismatches, positions_equal_oms=mismatches == 0)
        end_memory = process_memory(exclude={oms.pid} if oms.pid else None)
        result.update(rss_mb_end=end_memory["rss_mb"], pss_mb_end=end_memory["pss_mb"],
                      rss_processes_end=end_memory["processes"][:6])
        health = daemon.health()
        result["health"] = {"ingest_rejected": health["ingest"]["rejected"],
                            "ingest_duplicates": health["ingest"]["duplicates"],
                            "shard_received": [s["received"] for s in health["shards"]],
                            "shard_handler_errors": sum(s["handler_errors"] for s in health["shards"]),
                            "shard_held": sum(s["held"] for s in health["shards"]),
                            "risk_messages_seen": collector.messages, "held_events_seen": collector.held}
        result["targets"] = TARGETS
        result["meets_targets"] = {
            "e2e_p50_us": result["e2e_p50_us"] <= TARGETS["e2e_p50_us"],
            "e2e_p99_us": result["e2e_p99_us"] <= TARGETS["e2e_p99_us"],
            "sustained_fills_per_s": sustained >= TARGETS["sustained_fills_per_s"],
            "lost_fills": result["lost_fills"] == 0 and mismatches == 0,
            "rss_mb": result["rss_mb"] <= TARGETS["rss_mb"]}
        result["wall_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        # Intake first: the daemon logs out of the OMS, then the OMS stops, then Ray.
        for step in (daemon.stop if daemon is not None else None,
                     oms.stop if oms is not None else None, ray.shutdown if ray.is_initialized() else None,
                     state.cleanup):
            if step is None:
                continue
            try:
                step()
            except Exception as exc:  # keep cleaning up; the first error is what the caller sees
                log(f"cleanup step {getattr(step, '__qualname__', step)} failed: {exc!r}")


def run_bench_pipeline(out: TextIO, options: PipelineOptions, err: TextIO | None = None) -> int:
    """Print the pipeline bench as one JSON object on ``out`` (progress on ``err``)."""
    err = err or sys.stderr

    def log(line: str) -> None:
        print(f"[bench pipeline] {line}", file=err, flush=True)

    out.write(json.dumps(pipeline_bench(options, log)) + "\n")
    return 0


def options_from_args(args: Any) -> PipelineOptions:
    """PipelineOptions from the CLI's parsed arguments (``--quick`` starts from the small sizes)."""
    base = QUICK if args.quick else PipelineOptions()
    changes: dict[str, Any] = {}
    for name in ("accounts", "positions", "e2e_rate", "e2e_seconds", "hold_seconds", "var_every"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if getattr(args, "rates", None):
        changes["rates"] = tuple(float(r) for r in args.rates.split(",") if r.strip())
    return msgspec.structs.replace(base, **changes)
