"""The market-data and pricing actor: a Ray actor around one :class:`MarketService`.

Its tick source is a ZeroMQ SUB of encoded ticks (``ticks_endpoint``), or, for
the demo, the GBM-with-jumps simulator stepped in real time. Ray carries only
lifecycle and health; MarketUpdates go to the position shards over ZeroMQ.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import msgspec
import zmq

from actors.bus import Bus
from actors.market_data import GbmMarket, GbmUnderlying, MarketState
from actors.market_service import MarketService, zmq_tick_source
from actors.pricing_engine import PricingEngine
from risk.instruments import InstrumentTable, MarketSnapshot
from risk.params import InstrumentSpec, MarginParams, UnderlyingSpec


class MarketSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the market actor needs.

    ``initial``: the starting market. ``ticks_endpoint``: a SUB endpoint of encoded
    ticks, or None to simulate ``simulate`` (one GbmUnderlying per underlying,
    stepped every ``publish_interval_s`` of wall time, seeded). Intervals in seconds.
    """

    params: MarginParams
    underlyings: tuple[UnderlyingSpec, ...]
    instruments: tuple[InstrumentSpec, ...]
    initial: MarketSnapshot
    updates_endpoint: str
    ticks_endpoint: str | None = None
    simulate: tuple[GbmUnderlying, ...] = ()
    seed: int = 7
    publish_interval_s: float = 0.05
    full_interval_s: float = 1.0
    cpus: tuple[int, ...] = ()


class MarketActorImpl:
    """The actor's body, usable without Ray (tests) or as ``ray.remote(MarketActorImpl)``."""

    def __init__(self, spec: MarketSpec) -> None:
        if spec.cpus:
            os.sched_setaffinity(0, set(spec.cpus))
        self.spec = spec
        table = InstrumentTable(spec.underlyings, spec.instruments)
        state = MarketState(table, spec.initial.underlyings)
        engine = PricingEngine(table, spec.params, state, full_interval_s=spec.full_interval_s)
        self.bus = Bus()
        if spec.ticks_endpoint is not None:
            source = zmq_tick_source(self.bus.socket(zmq.SUB, spec.ticks_endpoint, bind=True))
        else:
            source = self._simulator(spec)
        # The simulated clock starts at the initial snapshot and advances with wall time,
        # so the demo's instruments keep their time to expiry.
        start_wall, start_mono = spec.initial.as_of, time.monotonic()
        self.service = MarketService(
            engine, source, self.bus, spec.updates_endpoint, publish_interval_s=spec.publish_interval_s,
            wall_clock=lambda: start_wall + dt.timedelta(seconds=time.monotonic() - start_mono)).start()

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
        e = self.service.engine.fast_path_error
        return {"pid": os.getpid(), "ticks": self.service.ticks, "malformed": self.service.malformed,
                "version": self.service.version, "errors": list(self.service.errors),
                "fast_path_max_abs": e.max_abs, "fast_path_max_rel": e.max_rel, "full_revaluations": e.checks}

    def stop(self) -> None:
        self.service.stop()
        self.bus.close()


def market_actor_class(max_restarts: int = 3, num_cpus: float = 0.5) -> Any:
    """The Ray actor class, with the restart policy and resources from config."""
    import ray

    return ray.remote(max_restarts=max_restarts, max_task_retries=1, num_cpus=num_cpus)(MarketActorImpl)
