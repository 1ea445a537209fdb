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
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any, Callable, TextIO

import msgspec
import numpy as np
from hdrh.histogram import HdrHistogram

from daemon.bench_measure import CpuMeter

#: The portfolio grid of configs/default.toml the bench's underlyings use.
GRID = "pm"
#: The production client budget (configs/default.toml ``pretrade.timeout_us``), for ``over_timeout_500us``.
PRODUCTION_TIMEOUT_US = 500.0
#: The bench's check budget (client and server): every request is checked, the tail measured.
BENCH_TIMEOUT_US = 1_000_000
#: Limit prices within this fraction of the mark (the collar is 10 %).
PRICE_JITTER = 0.02
UNKNOWN_INSTRUMENT = "NO-SUCH-INSTRUMENT"
TARGETS = {"ratio_p50_to_floor": 2.0, "p99_us": 250.0, "checks_per_s": 10_000.0}


class PretradeOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Sizes of one bench run."""

    accounts: int = 1000
    positions: int = 50
    checks: int = 20_000
    warmup: int = 2_000
    seconds: float = 5.0
    window: int = 64
    #: Every n-th request is deliberately bad (0: none).
    bad_every: int = 50
    floor_block: int = 500
    var_every: int = 10
    load_rate: float = 10_000.0
    seed: int = 2026
    #: Seconds a reservation lives without a drop-copy report (None: the config's, 30 s).
    reservation_ttl_s: float | None = None


QUICK = PretradeOptions(accounts=20, positions=5, checks=1000, warmup=200, seconds=1.0, bad_every=10,
                        floor_block=250, load_rate=1000.0)


# ----------------------------------------------------------------- the client process
class ClientSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the client process needs: endpoints, the universe's holdings, reference prices."""

    endpoints: tuple[str, ...]
    accounts: tuple[str, ...]
    holdings: tuple[tuple[str, ...], ...]
    #: instrument id -> the model's mark (per unit): the collar's reference.
    reference: dict[str, float]
    max_order_qty: float
    options: PretradeOptions


class _Requests:
    """Request factory: random good requests over the given accounts, every ``bad_every``-th bad."""

    def __init__(self, spec: ClientSpec, account_index: list[int], prefix: str, seed: int) -> None:
        self.spec = spec
        self.accounts = account_index
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.n = 0
        self.bad_every = spec.options.bad_every
        #: Deliberately bad requests made, by the reason they must be rejected with.
        self.bad: Counter[str] = Counter()

    def next(self) -> tuple[Any, int]:
        """(CheckRequest, account index)."""
        from actors.pretrade_messages import CheckRequest

        spec, rng = self.spec, self.rng
        self.n += 1
        a = self.accounts[rng.randrange(len(self.accounts))]
        instrument = spec.holdings[a][rng.randrange(len(spec.holdings[a]))]
        side = 1 if rng.random() < 0.5 else -1
        quantity = float(rng.randint(1, 5))
        reference = spec.reference[instrument]
        price = round(reference * (1.0 + rng.uniform(-PRICE_JITTER, PRICE_JITTER)), 6) if reference > 0 else 0.01
        price = max(price, 1e-6)
        if self.bad_every and self.n % self.bad_every == 0:
            if (self.n // self.bad_every) % 2:
                instrument = UNKNOWN_INSTRUMENT
                self.bad["unknown_instrument"] += 1
            else:
                quantity = spec.max_order_qty + 1.0
                self.bad["max_order_qty"] += 1
        return CheckRequest(f"{self.prefix}{self.n}", spec.accounts[a], instrument, side, quantity, price), a


def _floor_echo(endpoint: str, reply_size: int, ready: Any) -> None:
    """The floor's ROUTER (its own process): answer every request with ``reply_size`` bytes."""
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    ready.set()
    reply = os.urandom(reply_size)
    while True:
        frames = sock.recv_multipart()
        sock.send_multipart([frames[0], b"", reply])
        if frames[-1] == b"stop":
            break
    sock.close(0)
    context.term()


class _Floor:
    """A DEALER to the echo process, used like the client uses its socket."""

    def __init__(self, request_size: int, reply_size: int) -> None:
        import zmq

        self._folder = tempfile.TemporaryDirectory(prefix="riskd-pretrade-floor-")
        endpoint = f"ipc://{self._folder.name}/floor.sock"
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        self._child = ctx.Process(target=_floor_echo, args=(endpoint, reply_size, ready), name="pretrade-floor-echo",
                                  daemon=True)
        self._child.start()
        if not ready.wait(60.0):
            raise RuntimeError("the floor's echo process did not start")
        self._context = zmq.Context()
        self.sock = self._context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.payload = os.urandom(request_size)
        self.histogram = HdrHistogram(1, 60_000_000_000, 3)

    def run(self, n: int, record: bool = True) -> None:
        sock, poller, payload, clock = self.sock, self.poller, self.payload, time.monotonic_ns
        frames = [b"", payload]
        record_value = self.histogram.record_value
        for _ in range(n):
            t0 = clock()
            sock.send_multipart(frames)
            if not poller.poll(10_000):
                raise RuntimeError("the floor's echo process did not answer within 10 s")
            sock.recv_multipart()
            if record:
                record_value(max(1, clock() - t0))

    def close(self) -> None:
        try:
            self.sock.send_multipart([b"", b"stop"])
            self.poller.poll(2000)
        finally:
            self.sock.close(0)
            self._context.term()
            self._child.join(5.0)
            if self._child.is_alive():
                self._child.terminate()
            self._folder.cleanup()


def _latency_phase(spec: ClientSpec, log: Callable[[str], None]) -> dict[str, Any]:
    import zmq

    from actors.pretrade_client import PretradeClient
    from actors.pretrade_messages import encode

    options = spec.options
    context = zmq.Context()
    client = PretradeClient(spec.endpoints, timeout_us=BENCH_TIMEOUT_US, context=context)
    requests = _Requests(spec, list(range(len(spec.accounts))), "W", options.seed)
    floor: _Floor | None = None
    try:
        warm: Counter[str] = Counter()
        reply_sizes: list[int] = []
        for _ in range(options.warmup):
            request, _ = requests.next()
            decision = client.check(request)
            warm[decision.reason] += 1
            reply_sizes.append(len(encode(decision)))
        request_size = len(encode(requests.next()[0]))
        reply_size = int(np.median(reply_sizes)) if reply_sizes else 120
        log(f"warm-up: {options.warmup} checks {dict(warm)}; floor echo ({request_size} B -> {reply_size} B)...")
        floor = _Floor(request_size, reply_size)
        floor.run(min(options.floor_block, 500), record=False)

        # The measured checks, pre-built so the timed loop only sends and waits.
        measured = _Requests(spec, list(range(len(spec.accounts))), "L", options.seed + 1)
        batch = [measured.next() for _ in range(options.checks)]
        latency = np.zeros(options.checks, np.int64)
        account = np.fromiter((a for _, a in batch), np.int32, options.checks)
        reasons: list[str] = []
        check, clock = client.check, time.monotonic_ns
        log(f"latency: {options.checks} sequential checks, floor interleaved in blocks of {options.floor_block}...")
        t_start = time.monotonic()
        for start in range(0, options.checks, options.floor_block):
            floor.run(options.floor_block)
            for i in range(start, min(start + options.floor_block, options.checks)):
                request = batch[i][0]
                t0 = clock()
                decision = check(request)
                latency[i] = clock() - t0
                reasons.append(decision.reason)
        elapsed = time.monotonic() - t_start
        return {"latency_ns": latency.tobytes(), "account": account.tobytes(), "reasons": reasons,
                "warmup_decisions": dict(warm), "bad": dict(measured.bad), "client_timeouts": client.timeouts,
                "request_bytes": request_size, "reply_bytes": reply_size, "elapsed_s": elapsed,
                "floor": floor.histogram.encode(), "floor_round_trips": floor.histogram.get_total_count()}
    finally:
        if floor is not None:
            floor.close()
        client.close()
        context.term()


def _throughput_phase(spec: ClientSpec, log: Callable[[str], None]) -> dict[str, Any]:
    import zmq

    from actors.position_shard import shard_of
    from actors.pretrade_messages import Decision, decode, encode

    options = spec.options
    n_shards = len(spec.endpoints)
    mine = [a for a, account in enumerate(spec.accounts) if shard_of(account, n_shards) == 0]
    if not mine:
        raise RuntimeError("no account on shard 0")
    requests = _Requests(spec, mine, "T", options.seed + 2)
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.connect(spec.endpoints[0])
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    reasons: Counter[str] = Counter()
    outstanding: dict[str, int] = {}
    clock = time.monotonic_ns
    log(f"throughput: shard 0 ({len(mine)} accounts), {options.window} in flight, {options.seconds:g} s...")
    try:
        t0 = clock()
        end = t0 + int(options.seconds * 1e9)
        sent = 0
        last = t0
        while True:
            now = clock()
            while len(outstanding) < options.window and now < end:
                request, _ = requests.next()
                request.sent_ns = now
                sock.send_multipart([b"", encode(request)])
                outstanding[request.order_id] = now
                sent += 1
            if not outstanding:
                break
            if not poller.poll(10_000):
                raise RuntimeError(f"shard 0 did not answer within 10 s ({len(outstanding)} in flight)")
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                last = clock()
                decision = decode(frames[-1])
                if not isinstance(decision, Decision):
                    continue
                started = outstanding.pop(decision.order_id, None)
                if started is None:
                    continue
                histogram.record_value(max(1, last - started))
                reasons[decision.reason] += 1
        done = sum(reasons.values())
        seconds = (last - t0) / 1e9
        return {"shard": 0, "accounts_on_shard": len(mine), "window": options.window, "seconds": round(seconds, 3),
                "checks": done, "sent": sent, "checks_per_s": round(done / seconds) if seconds > 0 else 0,
                "in_flight_p50_us": round(histogram.get_value_at_percentile(50.0) / 1e3, 1),
                "in_flight_p99_us": round(histogram.get_value_at_percentile(99.0) / 1e3, 1),
                "decisions": dict(sorted(reasons.items())), "deliberately_bad": dict(requests.bad)}
    finally:
        sock.close(0)
        context.term()


def client_main(conn: Connection, spec: ClientSpec) -> None:
    """The client process: run the phase each command names, answer its result on ``conn``."""
    def log(line: str) -> None:
        print(f"[bench pretrade] {line}", file=sys.stderr, flush=True)

    conn.send({"ready": True})
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            return
        if command == "stop":
            conn.send(None)
            return
        try:
            phase = {"latency": _latency_phase, "throughput": _throughput_phase}[command]
            conn.send(phase(spec, log))
        except Exception as exc:  # the parent raises it with this text
            conn.send({"error": f"{type(exc).__name__}: {exc}"})


class _Client:
    """The parent's handle on the client process."""

    def __init__(self, spec: ClientSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=client_main, args=(child, spec), name="bench-pretrade-client")
        # Not a daemonic process: it starts the floor's echo process itself (stop() ends it).
        self._process.start()
        child.close()
        if not self._conn.poll(120.0):
            self.stop()
            raise RuntimeError("the bench client process did not start within 120 s")
        self._conn.recv()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def call(self, command: str, timeout_s: float) -> dict[str, Any]:
        self._conn.send(command)
        if not self._conn.poll(timeout_s):
            raise TimeoutError(f"the bench client did not finish {command!r} within {timeout_s:.0f} s")
        result = self._conn.recv()
        if "error" in result:
            raise RuntimeError(f"bench client, {command}: {result['error']}")
        return result

    def stop(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send("stop")
                self._conn.poll(10.0)
            except (OSError, EOFError):
                pass
            self._process.join(10.0)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5.0)
        self._conn.close()


# ----------------------------------------------------------------- the driver
def _us(ns: float) -> float:
    return round(ns / 1e3, 1)


def _summary(latency_ns: np.ndarray) -> dict[str, Any]:
    """p50/p99/p99.9/max (us) and count, HDR histogram."""
    if not len(latency_ns):
        return {"count": 0}
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    for value in latency_ns.tolist():
        histogram.record_value(max(1, value))
    return {"count": int(len(latency_ns)), "p50_us": _us(histogram.get_value_at_percentile(50.0)),
            "p99_us": _us(histogram.get_value_at_percentile(99.0)),
            "p999_us": _us(histogram.get_value_at_percentile(99.9)), "max_us": _us(histogram.get_max_value())}


def bench_settings(config: Any, reservation_ttl_s: float | None = None) -> Any:
    """The bench's changes to the universe's config: grid ``pm``, the check budget and (if
    given) the reservation TTL."""
    underlyings = tuple(msgspec.structs.replace(u, grid=GRID) for u in config.underlyings)
    ttl = config.pretrade.reservation_ttl_s if reservation_ttl_s is None else reservation_ttl_s
    pretrade = msgspec.structs.replace(config.pretrade, reservation_ttl_s=ttl, timeout_us=BENCH_TIMEOUT_US)
    return msgspec.structs.replace(config, underlyings=underlyings, pretrade=pretrade)


def _machine_cpu() -> tuple[float, ...]:
    """Whole-machine CPU seconds so far (/proc/stat): (busy, steal, wall)."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return (0.0, 0.0, time.monotonic())
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    return ((sum(fields[:8]) - idle - steal) / ticks, steal / ticks, time.monotonic())


def _machine_busy(before: tuple[float, ...]) -> dict[str, float]:
    """Machine-wide CPU over an interval, in % of one CPU (200 % = both of a 2-CPU machine busy):
    every process on the machine (other users' too), and the time stolen by the hypervisor."""
    busy, steal, now = _machine_cpu()
    wall = max(now - before[2], 1e-9)
    return {"busy_pct": round(100.0 * (busy - before[0]) / wall, 1),
            "steal_pct": round(100.0 * (steal - before[1]) / wall, 1), "cpus": os.cpu_count() or 0}


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
        return bench_settings(config, options.reservation_ttl_s)

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
                          "market": "static", "bad_every": options.bad_every}
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
            cpu, machine = CpuMeter(extra=extra).start(), _machine_cpu()
            lat = client.call("latency", timeout_s=(options.checks + options.warmup) * 0.02 + 120.0)
            result["cpu_latency"] = {"processes": cpu.stop()[:8], "machine": _machine_busy(machine)}
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

            cpu, machine = CpuMeter(extra=extra).start(), _machine_cpu()
            thr = client.call("throughput", timeout_s=options.seconds * 3 + 120.0)
            result["cpu_throughput"] = {"processes": cpu.stop()[:8], "machine": _machine_busy(machine)}
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
    changes = {name: getattr(args, name) for name in ("accounts", "positions", "checks", "seconds", "var_every")
               if getattr(args, name, None) is not None}
    return msgspec.structs.replace(base, **changes)


__all__ = ["PretradeOptions", "QUICK", "pretrade_bench", "run_bench_pretrade", "options_from_args"]
