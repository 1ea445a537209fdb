"""The market-data and pricing actor: a Ray actor around one :class:`MarketService`.

Its tick source is one of: a ZeroMQ SUB of encoded ticks (``ticks_endpoint``), a
recorded replay file (``replay_path``, read by :class:`ReplayFeed`), or, for the
demo, the GBM-with-jumps simulator stepped in real time. Ray carries only
lifecycle and health; MarketUpdates go to the position shards over ZeroMQ.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import threading
import time
from typing import Any

import msgspec
import zmq

from actors.gc_quiet import start_gc_freezer
from actors.bus import Bus
from actors.fpga_greeks import FpgaGreeks
from actors.fpga_shadow import FpgaSettings
from actors.market_data import GbmMarket, GbmUnderlying, MarketState, ReplaySource, Tick
from actors.market_service import LogLimiter, MarketService, ZmqTickSource
from actors.pricing_engine import PricingEngine
from actors.ray_actor import actor_class
from risk.instruments import InstrumentTable, MarketSnapshot
from risk.params import InstrumentSpec, MarginParams, UnderlyingSpec

log = logging.getLogger("riskd.market")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_END = object()  # queued by the replay thread after the last tick
REPLAY_ERRORS_IN_HEALTH = 10


class MarketSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the market actor needs.

    ``initial``: the starting market. The tick source, at most one of:
    ``ticks_endpoint``, a SUB endpoint of encoded ticks (bound by the actor);
    ``replay_path``, a recorded CSV or Parquet file (``actors.market_replay``) replayed
    at ``replay_speed`` (1.0 = recorded timing, 10.0 = ten times faster, 0 = as fast
    as possible), the snapshots then taken at the recorded time; neither: simulate
    ``simulate`` (one GbmUnderlying per underlying, stepped every
    ``publish_interval_s`` of wall time, seeded). Intervals in seconds. ``cpus``: CPU
    ids the actor's threads are pinned to (empty: not pinned). ``fpga``: the
    ``[fpga]`` section: the option Greeks through the overlay (actors/fpga_greeks.py).
    """

    params: MarginParams
    underlyings: tuple[UnderlyingSpec, ...]
    instruments: tuple[InstrumentSpec, ...]
    initial: MarketSnapshot
    updates_endpoint: str
    ticks_endpoint: str | None = None
    replay_path: str | None = None
    replay_speed: float = 1.0
    simulate: tuple[GbmUnderlying, ...] = ()
    seed: int = 7
    publish_interval_s: float = 0.05
    full_interval_s: float = 1.0
    cpus: tuple[int, ...] = ()
    fpga: FpgaSettings = FpgaSettings()

    def __post_init__(self) -> None:
        if self.ticks_endpoint is not None and self.replay_path is not None:
            raise ValueError("MarketSpec: ticks_endpoint and replay_path are two tick sources; give one")


def _ns_to_datetime(ns: int) -> dt.datetime:
    """UTC datetime of ns since the epoch (to the microsecond, as snapshots keep it)."""
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


class ReplayFeed:
    """A :class:`ReplaySource` read in its own thread and handed to the MarketService.

    The reader thread paces the file (the source sleeps between ticks) and puts ticks
    on a bounded queue; :meth:`poll`, the service's tick source, drains it each
    publish interval. The queue is bounded so that a fast replay of a large file
    waits for the service instead of loading the whole file into memory.

    :meth:`wall_clock` is the recorded time: the ``event_time_ns`` of the last tick
    handed to the service (``start`` before the first), so options' times to expiry
    are those of the recording. ``done``: the file is exhausted (or failed, see
    ``failure``) and every tick read has been handed to the service.
    """

    def __init__(self, source: ReplaySource, start: dt.datetime, max_batch: int = 10_000) -> None:
        self.source = source
        self.max_batch = max_batch
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_batch)
        self._stop = threading.Event()
        self._now = start
        self.done = False
        self.failure = ""
        self._thread = threading.Thread(target=self._read, name="market-replay", daemon=True)

    def start(self) -> "ReplayFeed":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop reading: cuts the source's pacing wait short and unblocks a full queue."""
        self._stop.set()
        self.source.stop()
        self._thread.join(timeout_s)

    @property
    def reading(self) -> bool:
        """Is the reader thread still running?"""
        return self._thread.is_alive()

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting while the queue is full; False if stopped meanwhile."""
        while not self._stop.is_set():
            try:
                # A timeout rather than a blocking put: stop() must be noticed even when
                # the service has stopped draining.
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for tick in self.source:
                if not self._put(tick):
                    return
        except Exception as exc:  # e.g. the file vanished between open and replay
            self.failure = f"{self.source.path}: replay failed: {exc!r}"
            log.exception("replay of %s failed", self.source.path)
        self._put(_END)
        log.info("replay of %s finished: %d ticks, %d rows skipped", self.source.path, self.source.emitted,
                 self.source.skipped)

    def poll(self) -> list[Tick]:
        """The ticks queued since the last call (at most ``max_batch``)."""
        ticks: list[Tick] = []
        for _ in range(self.max_batch):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                self.done = True
                break
            ticks.append(item)
        if ticks:
            # Rows are in time order (the source skips one going backwards): the last is the latest.
            self._now = _ns_to_datetime(ticks[-1].event_time_ns)
        return ticks

    def wall_clock(self) -> dt.datetime:
        """The recorded time of the market (see the class docstring)."""
        return self._now

    def health(self) -> dict[str, Any]:
        source = self.source
        errors = [str(e) for e in source.errors[:REPLAY_ERRORS_IN_HEALTH]]
        if self.failure:
            errors.append(self.failure)
        return {"replay_path": source.path, "replay_speed": source.speed, "replay_done": self.done,
                "replay_emitted": source.emitted, "replay_skipped": source.skipped, "replay_errors": errors,
                "replay_time": self._now.isoformat()}


class MarketActorImpl:
    """The actor's body, usable without Ray (tests) or as ``ray.remote(MarketActorImpl)``.

    Raises :class:`actors.market_replay.ReplayFileError` (its message names the file)
    when ``spec.replay_path`` cannot be replayed at all, before any socket is bound.
    """

    def __init__(self, spec: MarketSpec) -> None:
        if spec.cpus:
            # Before any thread starts: the service and replay threads inherit the mask.
            os.sched_setaffinity(0, set(spec.cpus))
        self.spec = spec
        table = InstrumentTable(spec.underlyings, spec.instruments)
        self.replay: ReplayFeed | None = None
        if spec.replay_path is not None:
            # Opened first: a missing file or bad header fails here, with nothing bound yet.
            replay_log = LogLimiter(log)
            source = ReplaySource(spec.replay_path, speed=spec.replay_speed,
                                  known_underlyings=frozenset(table.underlying_ids),
                                  on_error=lambda e: replay_log.warning("replay row skipped: %s", e),
                                  max_errors_kept=REPLAY_ERRORS_IN_HEALTH)
            self.replay = ReplayFeed(source, spec.initial.as_of)
        state = MarketState(table, spec.initial.underlyings)
        self.fpga = FpgaGreeks.open(spec.fpga)
        engine = PricingEngine(table, spec.params, state, full_interval_s=spec.full_interval_s,
                               greeks=self.fpga if self.fpga.backend is not None else None)
        self.bus = Bus()
        self.zmq_source: ZmqTickSource | None = None
        if self.replay is not None:
            tick_source, wall_clock = self.replay.poll, self.replay.wall_clock
        else:
            if spec.ticks_endpoint is not None:
                self.zmq_source = ZmqTickSource(self.bus.socket(zmq.SUB, spec.ticks_endpoint, bind=True))
                tick_source = self.zmq_source
            else:
                tick_source = self._simulator(spec)
            # The simulated clock starts at the initial snapshot and advances with wall time,
            # so the demo's instruments keep their time to expiry.
            start_wall, start_mono = spec.initial.as_of, time.monotonic()

            def wall_clock() -> dt.datetime:
                return start_wall + dt.timedelta(seconds=time.monotonic() - start_mono)
        self.service = MarketService(engine, tick_source, self.bus, spec.updates_endpoint,
                                     publish_interval_s=spec.publish_interval_s, wall_clock=wall_clock).start()
        if self.replay is not None:
            self.replay.start()
        start_gc_freezer()  # no full collection in the middle of a repricing (actors/gc_quiet.py)

    @staticmethod
    def _simulator(spec: MarketSpec):
        market = GbmMarket(list(spec.simulate), seed=spec.seed, start_ns=int(spec.initial.as_of.timestamp() * 1e9))
        last = [time.monotonic()]

        def step():
            now = time.monotonic()
            dt_s, last[0] = now - last[0], now
            return market.step(max(dt_s, 1e-6))
        return step

    def health(self) -> dict[str, Any]:
        """Counters for the daemon. ``malformed``: ticks dropped as bad, undecodable
        frames included (``undecodable``) plus ticks refused by validation
        (``refused``), each with its latest reason (``last_undecodable``,
        ``last_refused``); ``fast_path_*``: the delta-gamma-vega estimate's worst error
        seen at a full revaluation, per unit in currency (``max_abs``, ``last_max_abs``)
        and as a fraction of the underlying's price (``max_rel``); ``fpga``: the Greeks
        path and its errors (actors.fpga_greeks); replay fields (``replay_*``) when
        replaying."""
        service = self.service
        e = service.engine.fast_path_error
        undecodable = self.zmq_source.undecodable if self.zmq_source is not None else 0
        out: dict[str, Any] = {
            "pid": os.getpid(), "source": "replay" if self.replay else "zmq" if self.zmq_source else "simulate",
            "ticks": service.ticks, "malformed": service.malformed + undecodable, "undecodable": undecodable,
            "refused": service.malformed, "out_of_order": service.engine.state.out_of_order,
            "last_undecodable": self.zmq_source.last_error if self.zmq_source else "",
            "last_refused": service.last_refusal,
            "version": service.version, "errors": list(service.errors),
            "fast_path_max_abs": e.max_abs, "fast_path_max_rel": e.max_rel,
            "fast_path_last_max_abs": e.last_max_abs, "full_revaluations": e.checks, "fpga": self.fpga.state()}
        if self.replay is not None:
            out.update(self.replay.health())
        return out

    def stop(self) -> None:
        """Stop the replay reader (promptly, even mid-wait), then the service, then the sockets."""
        if self.replay is not None:
            self.replay.stop()
        self.service.stop()
        self.bus.close()


def market_actor_class(max_restarts: int = 3, num_cpus: float = 0.0) -> Any:
    """The Ray actor class of :class:`MarketActorImpl` (see :func:`actors.ray_actor.actor_class`)."""
    return actor_class(MarketActorImpl, max_restarts, num_cpus)
