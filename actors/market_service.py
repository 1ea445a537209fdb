"""Market data and pricing behind sockets: ticks in, MarketUpdates out to the position shards.

A thread polls its tick source every ``publish_interval_s`` (the coalescing
window: a burst of ticks becomes one update), applies the ticks to the
:class:`PricingEngine`'s market state, and publishes a :class:`MarketUpdate`
naming the underlyings that moved; every ``full_interval_s`` the update is full
(time decay moves every instrument) and the engine's full revaluation measures
the delta-gamma-vega fast path's error. Tick sources: a ZeroMQ SUB of encoded
ticks (production), the GBM simulator (demo), a replay file.

The shards reprice from the snapshot themselves (only the changed underlyings):
a snapshot is a few kB where the risk arrays of a large book are hundreds of kB
per tick.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable, Iterable

import zmq

from actors.bus import Bus
from actors.market_data import Tick, TickDecoder
from actors.messages import MarketUpdate, Stamps, encode
from actors.pricing_engine import PricingEngine

log = logging.getLogger("riskd.market")

TickSource = Callable[[], Iterable[Tick]]


def zmq_tick_source(socket: zmq.Socket) -> TickSource:
    """Everything queued on a SUB socket of encoded ticks; a malformed frame is logged and dropped."""
    decoder = TickDecoder()

    def poll() -> list[Tick]:
        ticks = []
        while True:
            try:
                frame = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return ticks
            try:
                ticks.append(decoder.decode(frame))
            except ValueError as exc:
                log.warning("malformed tick dropped (%s): %r", exc, frame[:200])
    return poll


class MarketService:
    """The pricing actor's loop; see the module docstring."""

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
        self.errors: list[str] = []
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

    def _run(self) -> None:
        while not self._stop.wait(self.publish_interval_s):
            try:
                for tick in self.source():
                    if not self._first_tick_ns:
                        self._first_tick_ns = self._clock_ns()
                    self.ticks += 1
                    error = self.engine.on_tick(tick)
                    if error is not None:
                        self.malformed += 1
                        log.warning("tick refused: %s", error)
                full = self.engine.full_due()
                if self.engine.dirty or full:
                    self.publish_now(full=full)
            except Exception as exc:  # the market loop must not die on one bad input
                self.errors.append(repr(exc))
                del self.errors[:-20]
                log.exception("market loop step failed")
