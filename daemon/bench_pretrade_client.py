"""The client side of ``riskd bench pretrade``: its options, and the spawned client
process that sends the checks (warm-up, latency with the interleaved zmq floor,
one shard's throughput). The driver (:mod:`daemon.bench_pretrade`) starts the
daemon and this process and assembles the JSON; the phases are described there.
Latencies in ns inside, us in results.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any, Callable

import msgspec
import numpy as np
from hdrh.histogram import HdrHistogram

#: The bench's check budget (client and server): every request is checked, the tail measured.
BENCH_TIMEOUT_US = 1_000_000
#: Limit prices within this fraction of the mark (the collar is 10 %).
PRICE_JITTER = 0.02
UNKNOWN_INSTRUMENT = "NO-SUCH-INSTRUMENT"


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
    #: CPU ids the client process (and the floor's echo process, which it starts) is
    #: pinned to; empty: not pinned. With ``shard_cpus`` it places the check's whole
    #: path, and the floor is measured under the same placement: on this VM an idle
    #: vCPU woken by another costs ~35-40 us per wake-up (bare pyzmq round trip
    #: 130-155 us across vCPUs, 31-33 us with both ends on one).
    client_cpus: tuple[int, ...] = ()
    #: One CPU list per shard (``daemon.position_cpus``); empty: the config's.
    shard_cpus: tuple[tuple[int, ...], ...] = ()


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

    if spec.options.client_cpus:
        # Before any socket or child exists: ZMQ's I/O thread and the floor's echo
        # process inherit the placement.
        os.sched_setaffinity(0, set(spec.options.client_cpus))
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
