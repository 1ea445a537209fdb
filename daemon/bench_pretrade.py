"""``riskd bench pretrade``: pre-trade check round trips against the running daemon, as JSON.

The daemon runs as in production (``daemon.run.Daemon``: Ray, one drop-copy ingest
actor, two position shards, static market, its risk view and HTTP port) on the
bench universe (:mod:`daemon.bench_universe`: 1,000 accounts x 50 positions by
default), with the underlyings on the portfolio grid ``pm`` (27 scenarios plus the
8 extended moves: 35 risk-array rows per underlying). It is loaded through a real
FIX drop copy first (:class:`daemon.bench_daemon.LoadedDaemon`: one fill per
(account, held instrument)). Then one client process (spawned, like an OMS: not the
daemon's driver process, whose AccountRisk reader would compete for its GIL) runs:

1. warm-up: ``warmup`` checks, not measured; the median size of their encoded
   decisions sizes the floor's reply;
2. latency: ``checks`` sequential checks through :class:`actors.pretrade_client.PretradeClient`
   (send, wait for the decision), over random accounts (all shards) and
   instruments each account holds, side and 1-5 contracts at random, limit price
   the model's mark +-2 % (inside the 10 % collar). Every ``bad_every``-th request
   is deliberately bad, alternately an unknown instrument and one contract over
   ``max_order_qty``. Round trip = monotonic ns around ``client.check``, HDR
   histogram, ``p50_us``/``p99_us``/``p999_us``.
   ``floor_*``: the bare pyzmq floor, measured in the same client process, same
   run, interleaved in blocks of ``floor_block`` with the checks (so both see the
   same machine): a DEALER sends ``[b"", request]`` of an encoded CheckRequest's
   size to a ROUTER echo in another process (spawned), which answers
   ``[identity, b"", reply]`` of a Decision's size; the DEALER waits with
   ``zmq.Poller`` like the client. ``ratio_p50_to_floor`` = p50_us / floor_p50_us.
   ``server_*``: the shards' own ``pretrade`` stage (request received -> decision
   sent) over warm-up and latency phase, from the daemon's status view (it ends
   when the send returns: time the shard's thread is preempted meanwhile counts);
   ``latency_by``: the same round trips split by decision, by the account's
   profile (scenario only, or with VaR: every ``var_every``-th account), and by
   what the shard did just before (it republishes an account's AccountRisk after
   sending the decision that accepted its order; the next check waits for that);
3. throughput: ``checks_per_s``, one shard: accounts of shard 0 only, ``window``
   requests in flight on one DEALER (replies matched by order id), for ``seconds``.

Daemon settings for the run (reported under ``settings``): the config's pre-trade
limits as shipped in configs/default.toml, all on (order quantity 500, notional,
10 % collar, position per instrument, rate throttle 500/s per account; the gross
position per underlying is off there, and so here); staleness on (a static market
is never stale);
``reservation_ttl_s`` as configured (30 s): no drop copy ever reports the bench's
orders, so their reservations stay until the TTL; at 30 s none expires during
the measured phases (each account holds a growing handful of open orders instead:
``open_orders_per_account_*``). A short TTL (``reservation_ttl_s``, e.g. 1 s)
expires them in bursts on the shard's thread (the 100 ms sweep releases and
republishes every account due), which then dominates the tail. The check budget
(``timeout_us``, client and server) raised to 1 s so that every request is really
checked and the tail is measured rather than cut at the production budget
(``over_timeout_500us`` counts the round trips above it).

Progress goes to stderr, the JSON object alone to stdout. Latencies in
microseconds (us).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any, Callable, TextIO

import msgspec
import numpy as np
from hdrh.histogram import HdrHistogram

from daemon.bench_measure import CpuMeter, latency_summary_us, machine_busy, machine_cpu
from daemon.bench_pretrade_client import BENCH_TIMEOUT_US, QUICK, ClientSpec, PretradeOptions, _Client

#: The portfolio grid of configs/default.toml the bench's underlyings use.
GRID = "pm"
#: The production client budget (configs/default.toml ``pretrade.timeout_us``), for ``over_timeout_500us``.
PRODUCTION_TIMEOUT_US = 500.0
TARGETS = {"ratio_p50_to_floor": 2.0, "p99_us": 250.0, "checks_per_s": 10_000.0}


# ----------------------------------------------------------------- the driver
def _us(ns: float) -> float:
    return round(ns / 1e3, 1)


def _summary(latency_ns: np.ndarray) -> dict[str, Any]:
    """p50/p99/p99.9/max (us) and count; ``{"count": 0}`` when empty."""
    return latency_summary_us(latency_ns) if len(latency_ns) else {"count": 0}


def bench_settings(config: Any, reservation_ttl_s: float | None = None) -> Any:
    """The bench's changes to the universe's config: grid ``pm``, the check budget and (if
    given) the reservation TTL."""
    underlyings = tuple(msgspec.structs.replace(u, grid=GRID) for u in config.underlyings)
    ttl = config.pretrade.reservation_ttl_s if reservation_ttl_s is None else reservation_ttl_s
    pretrade = msgspec.structs.replace(config.pretrade, reservation_ttl_s=ttl, timeout_us=BENCH_TIMEOUT_US)
    return msgspec.structs.replace(config, underlyings=underlyings, pretrade=pretrade)


def _shard_pretrade(daemon: Any) -> dict[str, Any]:
    """The shards' pre-trade counters (summed) and pending reservations, from their health."""
    counters: Counter[str] = Counter()
    pending = 0
    for shard in daemon.health()["shards"]:
        state = shard.get("pretrade") or {}
        counters.update({k: v for k, v in state.get("counters", {}).items() if v})
        pending += int(state.get("pending_reservations", 0))
    return {"decisions": dict(sorted(counters.items())), "pending_reservations": pending}


def pretrade_bench(options: PretradeOptions, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run the whole bench (see the module docstring) and return its JSON-ready result."""
    from daemon.bench_daemon import LoadedDaemon
    from daemon.bench_universe import build_universe
    from daemon.book import build_model

    started = time.monotonic()
    universe = build_universe(options.accounts, options.positions, seed=options.seed, var_every=options.var_every)

    def configure(config: Any) -> Any:
        config = bench_settings(config, options.reservation_ttl_s)
        if options.shard_cpus:
            config = msgspec.structs.replace(config, daemon=msgspec.structs.replace(
                config.daemon, position_cpus=options.shard_cpus))
        return config

    config = configure(universe.config)
    model = build_model(config, universe.market, "bench pretrade")
    reference = {iid: float(model.valuation.mark[row]) for iid, row in model.table.index.items()}
    rows = [len(block.scenarios.labels) for block in model.blocks]
    grid = config.margin.grids[GRID]
    result: dict[str, Any] = {
        "accounts": options.accounts, "positions_per_account": options.positions,
        "instruments": len(config.instruments), "profiles": universe.profiles, "shards": 2, "grid": GRID,
        "grid_scenarios": (2 * grid.buckets_per_side + 1) * 3, "risk_array_rows_per_underlying": rows}
    pretrade = config.pretrade
    result["settings"] = {"limits": msgspec.to_builtins(pretrade.limits), "stale_after_s": pretrade.stale_after_s,
                          "reservation_ttl_s": pretrade.reservation_ttl_s, "timeout_us": pretrade.timeout_us,
                          "market": "static", "bad_every": options.bad_every,
                          "client_cpus": list(options.client_cpus), "shard_cpus": [list(c) for c in options.shard_cpus]}
    client: _Client | None = None
    with LoadedDaemon(universe, configure=configure, http=True, log=log, prefix="riskd-bench-pretrade-") as run:
        try:
            daemon = run.daemon
            result["startup_s"] = round(time.monotonic() - started, 1)
            result["load"] = run.load(options.load_rate, options.seed)
            spec = ClientSpec(endpoints=tuple(daemon.pretrade_endpoints), accounts=universe.accounts,
                              holdings=universe.holdings, reference=reference,
                              max_order_qty=pretrade.limits.max_order_qty, options=options)
            client = _Client(spec)

            extra = {client.pid: "bench client"} if client.pid else None
            cpu, machine = CpuMeter(extra=extra).start(), machine_cpu()
            lat = client.call("latency", timeout_s=(options.checks + options.warmup) * 0.02 + 120.0)
            result["cpu_latency"] = {"processes": cpu.stop()[:8], "machine": machine_busy(machine)}
            daemon.view.refresh()
            server = daemon.view.stage_snapshot()["pretrade"]
            latency = np.frombuffer(lat["latency_ns"], np.int64)
            account = np.frombuffer(lat["account"], np.int32)
            reasons = np.array(lat["reasons"])
            overall = _summary(latency)
            floor = HdrHistogram.decode(lat["floor"])
            floor_p50 = floor.get_value_at_percentile(50.0) / 1e3
            result.update(checks=options.checks, warmup=options.warmup, p50_us=overall["p50_us"],
                          p99_us=overall["p99_us"], p999_us=overall["p999_us"], max_us=overall["max_us"],
                          latency_phase_s=round(lat["elapsed_s"], 2),
                          floor_p50_us=round(floor_p50, 1),
                          floor_p99_us=_us(floor.get_value_at_percentile(99.0)),
                          floor_p999_us=_us(floor.get_value_at_percentile(99.9)),
                          floor_round_trips=int(lat["floor_round_trips"]),
                          floor_how=(f"pyzmq DEALER -> ROUTER echo in another process, ipc://, request "
                                     f"{lat['request_bytes']} B, reply {lat['reply_bytes']} B, Poller wait like the"
                                     f" client, interleaved with the checks in blocks of {options.floor_block}"),
                          ratio_p50_to_floor=round(overall["p50_us"] / max(floor_p50, 1e-9), 2),
                          server_p50_us=round(server.p50_us, 1), server_p99_us=round(server.p99_us, 1),
                          server_p999_us=round(server.p999_us, 1), server_count=server.window_count,
                          request_bytes=lat["request_bytes"], reply_bytes=lat["reply_bytes"])
            result["decisions"] = dict(sorted(Counter(lat["reasons"]).items()))
            result["deliberately_bad"] = lat["bad"]
            result["warmup_decisions"] = lat["warmup_decisions"]
            result["client_timeouts"] = lat["client_timeouts"]
            result["over_timeout_500us"] = int((latency > PRODUCTION_TIMEOUT_US * 1000).sum())
            profiles = config.margin.profiles
            var_flags = np.array([profiles[a.profile].methods != ("scenario",) for a in config.accounts], bool)
            accepted = reasons == "accepted"
            after_accepted = np.zeros(len(accepted), bool)
            after_accepted[1:] = accepted[:-1]
            var_accept = accepted & var_flags[account]
            after_var_accept = np.zeros(len(accepted), bool)
            after_var_accept[1:] = var_accept[:-1]
            result["latency_by"] = {
                "accepted": _summary(latency[accepted]), "rejected": _summary(latency[~accepted]),
                "after_an_accepted": _summary(latency[1:][after_accepted[1:]]),
                "after_a_rejected": _summary(latency[1:][~after_accepted[1:]]),
                # The shard republishes an account's AccountRisk after accepting its order (after
                # the decision is sent): a VaR account's takes longest, and the next check waits.
                "after_an_accepted_var_account": _summary(latency[after_var_accept]),
                "after_anything_else": _summary(latency[1:][~after_var_accept[1:]]),
                "scenario_only_accounts": _summary(latency[~var_flags[account]]),
                "var_accounts": _summary(latency[var_flags[account]])}
            pending = _shard_pretrade(daemon)["pending_reservations"]
            result["pending_reservations_after_latency"] = pending
            result["open_orders_per_account_after_latency"] = round(pending / options.accounts, 1)
            log(f"latency: p50 {overall['p50_us']} us, p99 {overall['p99_us']} us, p99.9 {overall['p999_us']} us;"
                f" floor p50 {floor_p50:.1f} us (ratio {result['ratio_p50_to_floor']}); server p50"
                f" {server.p50_us:.1f} us; {result['decisions']}")

            cpu, machine = CpuMeter(extra=extra).start(), machine_cpu()
            thr = client.call("throughput", timeout_s=options.seconds * 3 + 120.0)
            result["cpu_throughput"] = {"processes": cpu.stop()[:8], "machine": machine_busy(machine)}
            result["checks_per_s"] = thr["checks_per_s"]
            result["throughput"] = thr
            log(f"throughput: {thr['checks_per_s']} checks/s on shard 0 ({thr['decisions']})")
            shard = _shard_pretrade(daemon)
            result["shard_counters"] = shard["decisions"]
            result["pending_reservations_end"] = shard["pending_reservations"]
            result["open_orders_per_account_end"] = round(shard["pending_reservations"] / options.accounts, 1)
            # No drop copy reports the bench's orders: an accepted order's reservation is pending or expired.
            result["reservations_expired"] = shard["decisions"].get("accepted", 0) - shard["pending_reservations"]
        finally:
            if client is not None:
                client.stop()
    result["targets"] = TARGETS
    result["meets_targets"] = {"ratio_p50_to_floor": result["ratio_p50_to_floor"] <= TARGETS["ratio_p50_to_floor"],
                               "p99_us": result["p99_us"] <= TARGETS["p99_us"],
                               "checks_per_s": result["checks_per_s"] >= TARGETS["checks_per_s"]}
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def run_bench_pretrade(out: TextIO, options: PretradeOptions, err: TextIO | None = None) -> int:
    """Print the pre-trade bench as one JSON object on ``out`` (progress on ``err``)."""
    err = err or sys.stderr

    def log(line: str) -> None:
        print(f"[bench pretrade] {line}", file=err, flush=True)

    out.write(json.dumps(pretrade_bench(options, log)) + "\n")
    return 0


def options_from_args(args: Any) -> PretradeOptions:
    """PretradeOptions from the CLI's parsed arguments (``--quick`` starts from the small sizes)."""
    base = QUICK if args.quick else PretradeOptions()
    changes: dict[str, Any] = {name: getattr(args, name) for name in ("accounts", "positions", "checks", "seconds",
                                                                      "var_every") if getattr(args, name, None) is not None}
    if getattr(args, "client_cpus", None):
        changes["client_cpus"] = _cpu_list(args.client_cpus, "--client-cpus")
    if getattr(args, "shard_cpus", None):
        changes["shard_cpus"] = tuple(_cpu_list(part, "--shard-cpus") for part in args.shard_cpus.split(";"))
    return msgspec.structs.replace(base, **changes)


def _cpu_list(text: str, flag: str) -> tuple[int, ...]:
    """``"0,1"`` -> (0, 1); a clear error naming the flag otherwise."""
    try:
        cpus = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected CPU ids like 0,1 (shards separated by ;), got {text!r}") from None
    if not cpus or min(cpus) < 0:
        raise ValueError(f"{flag}: expected CPU ids like 0,1 (shards separated by ;), got {text!r}")
    return cpus


__all__ = ["PretradeOptions", "QUICK", "pretrade_bench", "run_bench_pretrade", "options_from_args"]
