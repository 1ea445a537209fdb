"""Market data and pricing behind sockets: ticks in, MarketUpdates out to the position shards.

A thread polls its tick source every ``publish_interval_s`` (the coalescing
window: a burst of ticks becomes one update), applies the ticks to the
:class:`PricingEngine`'s market state, and publishes a :class:`MarketUpdate`
naming the underlyings that moved; every ``full_interval_s`` the update is full
(time decay moves every instrument) and the engine's full revaluation measures
the delta-gamma-vega fast path's error. Tick sources: a ZeroMQ SUB of encoded
ticks (production, :class:`ZmqTickSource`), the GBM simulator (demo), a replay
file (``actors.ray_market``).

Bad input never stops the loop: a frame that does not decode is counted by the
source (``undecodable``), a tick that fails validation is counted by the service
(``malformed``); both are logged with the reason, rate-limited so that a broken
feed cannot flood the log.

The shards reprice from the snapshot themselves (only the changed underlyings):
a snapshot is a few kB where the risk arrays of a large book are hundreds of kB
per tick.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Callable, Iterable

import zmq

from actors.bus import Bus
from actors.market_data import Tick, TickDecoder
from actors.messages import MarketUpdate, Stamps, encode
from actors.pricing_engine import PricingEngine

log = logging.getLogger("riskd.market")

TickSource = Callable[[], Iterable[Tick]]

# Frames taken from the SUB socket per poll: a feed faster than we can apply must not
# keep one poll draining forever (no update would ever be published).
MAX_FRAMES_PER_POLL = 10_000


class LogLimiter:
    """Logs the first ``burst`` events in full, then at most one line per ``interval_s``
    seconds (monotonic) saying how many were not logged since: a feed sending garbage
    at 100k frames/s must not turn into 100k log lines/s."""

    def __init__(self, logger: logging.Logger, burst: int = 20, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self.burst = burst
        self.interval_s = interval_s
        self._clock = clock
        self.count = 0
        self._suppressed = 0
        self._last = -float("inf")

    def warning(self, msg: str, *args: Any) -> None:
        self.count += 1
        now = self._clock()
        if self.count <= self.burst or now - self._last >= self.interval_s:
            if self._suppressed:
                msg += f" ({self._suppressed} similar not logged)"
                self._suppressed = 0
            self._last = now
            self._log.warning(msg, *args)
        else:
            self._suppressed += 1


class ZmqTickSource:
    """Everything queued on a SUB socket of encoded ticks (at most ``max_frames`` per call).

    A frame that is not a msgpack :class:`Tick` is dropped, counted in
    ``undecodable`` and logged with the decoder's reason (``last_error`` keeps the
    latest). Values are not checked here: the market state validates each tick when
    it is applied, so a bad value gets a precise message there.
    """

    def __init__(self, socket: zmq.Socket, max_frames: int = MAX_FRAMES_PER_POLL) -> None:
        self.socket = socket
        self.max_frames = max_frames
        self.undecodable = 0
        self.last_error = ""
        self._decoder = TickDecoder()
        self._log = LogLimiter(log)

    def __call__(self) -> list[Tick]:
        ticks: list[Tick] = []
        for _ in range(self.max_frames):
            try:
                frame = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                ticks.append(self._decoder.decode(frame))
            except ValueError as exc:  # msgspec.DecodeError / ValidationError
                self.undecodable += 1
                self.last_error = f"undecodable tick frame ({len(frame)} bytes): {exc}"
                self._log.warning("undecodable tick frame dropped (%s): %r", exc, frame[:200])
        return ticks


def zmq_tick_source(socket: zmq.Socket) -> ZmqTickSource:
    """A :class:`ZmqTickSource` on ``socket`` (kept for callers of the function form)."""
    return ZmqTickSource(socket)


class MarketService:
    """The pricing actor's loop; see the module docstring.

    ``wall_clock``: the time the snapshots are taken at (default: UTC now); the
    actor passes a simulated clock for the demo and the recorded time for a replay.
    Counters (read from other threads for health): ``ticks`` (ticks taken from the
    source), ``malformed`` (ticks refused by validation, or whose application
    failed), ``version`` (updates published), ``errors`` (the last 20 failed loop
    steps, repr), ``last_refusal`` (the latest refusal's reason).
    """

    _first_tick_ns = 0

    def __init__(self, engine: PricingEngine, source: TickSource, bus: Bus, updates_endpoint: str, *,
                 publish_interval_s: float = 0.05, wall_clock: Callable[[], dt.datetime] | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.engine = engine
        self.source = source
        self._pub = bus.socket(zmq.PUB, updates_endpoint, bind=True)
        self.publish_interval_s = publish_interval_s
        self._wall = wall_clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._clock_ns = clock_ns
        self.version = 0
        self.ticks = 0
        self.malformed = 0
        self.last_refusal = ""
        self.errors: list[str] = []
        self._refusals = LogLimiter(log)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="market", daemon=True)

    def start(self) -> "MarketService":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def publish_now(self, full: bool) -> MarketUpdate:
        """Build and send one update (the loop's step; public for tests)."""
        engine = self.engine
        now = self._wall()
        if full:
            engine.reprice(now)  # full revaluation: measures the fast path's error
        self.version += 1
        update = MarketUpdate(self.version, full, tuple(sorted(engine.dirty)), engine.state.snapshot(now),
                              Stamps(read_ns=self._first_tick_ns or self._clock_ns()))
        engine.dirty.clear()
        self._first_tick_ns = 0
        self._pub.send(encode(update))
        return update

    def apply(self, ticks: Iterable[Tick]) -> None:
        """Apply ``ticks`` in order; a refused or failing tick is counted and logged,
        and the ticks after it are still applied (one bad tick costs only itself)."""
        for tick in ticks:
            if not self._first_tick_ns:
                self._first_tick_ns = self._clock_ns()
            self.ticks += 1
            try:
                error = self.engine.on_tick(tick)
            except Exception as exc:  # not a validation error: still only this tick's loss
                error = f"applying tick failed: {exc!r}"
            if error is not None:
                self.malformed += 1
                self.last_refusal = error
                self._refusals.warning("tick refused: %s", error)

    def _run(self) -> None:
        while not self._stop.wait(self.publish_interval_s):
            try:
                self.apply(self.source())
                full = self.engine.full_due()
                if self.engine.dirty or full:
                    self.publish_now(full=full)
            except Exception as exc:  # the market loop must not die on one bad input
                self.errors.append(repr(exc))
                del self.errors[:-20]
                log.exception("market loop step failed")
