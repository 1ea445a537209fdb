"""``riskd run``: start Ray and the actors, wire their ZeroMQ endpoints, stop them cleanly.

Actors: the drop-copy ingest, the market/pricing actor (unless the market is
static) and the position shards; the daemon process itself subscribes to
AccountRisk. The liquidation actor, `riskd status` and `/metrics` come next
(see the daemon issue's note).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import zmq

from actors.bus import Bus, default_run_dir, ipc_endpoint
from actors.position_shard import shard_of
from actors.market_data import GbmUnderlying
from actors.ray_ingest import IngestSpec, ingest_actor_class
from actors.ray_market import MarketSpec, market_actor_class
from actors.ray_position import ShardSpec, position_actor_class
from daemon.book import load_history_returns
from daemon.config import ConfigError, RiskdConfig
from risk.instruments import InstrumentTable, MarketSnapshot

log = logging.getLogger("riskd.daemon")


def simulated_underlyings(table: InstrumentTable, market: MarketSnapshot) -> tuple[GbmUnderlying, ...]:
    """GBM-with-jumps parameters for the demo: start at the snapshot, a few jumps a year,
    a surface over the options' expiries."""
    out = []
    for u, uid in enumerate(table.underlying_ids):
        quote = market.underlyings[uid]
        expiries = sorted({table.expiry[r] for r in table.rows_of_underlying(u)
                           if table.is_option[r] and table.expiry[r] is not None})
        out.append(GbmUnderlying(id=uid, spot=quote.price, vol=quote.vol, rate=quote.rate,
                                 dividend_yield=quote.dividend_yield, jump_intensity=25.0, jump_mean=-0.02,
                                 jump_std=0.015, expiries=tuple(expiries),
                                 expiry_time_utc=table.underlying_specs[u].expiry_time_utc))
    return tuple(out)


class Daemon:
    """The running actors of one riskd instance (handles to Ray actors)."""

    def __init__(self, config: RiskdConfig, market: MarketSnapshot, *, address: str | None = None) -> None:
        import ray

        if config.fix.drop_copy is None:
            raise ConfigError("config", "fix.drop_copy", "required: the drop-copy session riskd consumes")
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        settings = config.daemon
        run_dir = Path(settings.run_dir) if settings.run_dir else default_run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.risk_endpoint = ipc_endpoint("account-risk", run_dir)
        # The daemon binds the AccountRisk subscription before any shard exists, so
        # no early AccountRisk is published into a socket nobody listens on yet.
        self.bus = Bus(zmq.Context())
        self.risk_socket = self.bus.socket(zmq.SUB, self.risk_endpoint, bind=True)
        position = position_actor_class(settings.max_restarts)
        table = InstrumentTable(config.underlyings, config.instruments)
        history = load_history_returns(config, table)
        self.market_actor = None
        updates_endpoint = None
        if settings.market != "static":
            updates_endpoint = ipc_endpoint("market-updates", run_dir)
            spec = MarketSpec(params=config.margin, underlyings=config.underlyings, instruments=config.instruments,
                              initial=market, updates_endpoint=updates_endpoint,
                              ticks_endpoint=settings.ticks_endpoint if settings.market == "zmq" else None,
                              simulate=simulated_underlyings(table, market) if settings.market == "simulate" else (),
                              publish_interval_s=settings.publish_interval_s,
                              full_interval_s=settings.full_interval_s)
            self.market_actor = market_actor_class(settings.max_restarts).remote(spec)
        self.shard_endpoints = tuple(ipc_endpoint(f"events-{i}", run_dir) for i in range(settings.shards))
        self.positions = []
        for shard in range(settings.shards):
            accounts = tuple((a.id, a.profile, a.cash) for a in config.accounts
                             if shard_of(a.id, settings.shards) == shard)
            spec = ShardSpec(shard=shard, n_shards=settings.shards, params=config.margin,
                             underlyings=config.underlyings, instruments=config.instruments, market=market,
                             accounts=accounts, events_endpoint=self.shard_endpoints[shard],
                             risk_endpoint=self.risk_endpoint,
                             cpus=settings.position_cpus[shard] if settings.position_cpus else (),
                             history_returns=history, market_endpoint=updates_endpoint)
            self.positions.append(position.remote(spec))
        ray.get([p.health.remote() for p in self.positions])  # shards bound before ingest connects
        ingest = ingest_actor_class(settings.max_restarts)
        self.ingest = ingest.remote(IngestSpec(session=config.fix.drop_copy, shard_endpoints=self.shard_endpoints,
                                               state_dir=str(run_dir / "ingest"), cpus=settings.ingest_cpus))
        ray.get(self.ingest.health.remote())
        log.info("riskd running: %d shards, AccountRisk on %s", settings.shards, self.risk_endpoint)

    def health(self) -> dict[str, Any]:
        import ray

        return {"ingest": ray.get(self.ingest.health.remote()),
                "shards": ray.get([p.health.remote() for p in self.positions]),
                "market": ray.get(self.market_actor.health.remote()) if self.market_actor is not None else None}

    def positions_by_account(self) -> dict[str, dict[str, float]]:
        """Signed contracts per instrument per account, from every shard."""
        import ray

        out: dict[str, dict[str, float]] = {}
        for part in ray.get([p.positions.remote() for p in self.positions]):
            out.update(part)
        return out

    def stop(self) -> None:
        """Stop intake first (FIX Logout), then the shards."""
        import ray

        try:
            ray.get(self.ingest.stop.remote(), timeout=10)
        except Exception:
            log.exception("ingest did not stop cleanly")
        extra = [self.market_actor] if self.market_actor is not None else []
        for actor in [*extra, *self.positions]:
            try:
                ray.get(actor.stop.remote(), timeout=10)
            except Exception:
                log.exception("an actor did not stop cleanly")
        for actor in [self.ingest, *self.positions, *extra]:
            ray.kill(actor, no_restart=True)
        self.bus.close()


def run_until_signalled(config: RiskdConfig, market: MarketSnapshot, *, address: str | None = None,
                        out=None) -> int:
    """`riskd run`: start the daemon, serve until SIGTERM or SIGINT, then stop cleanly (exit 0).

    Shutdown order: stop intake (the drop-copy session logs out), stop the shards,
    shut Ray down. AccountRisk tier changes are logged as they arrive.
    """
    import signal
    import sys
    import threading

    import ray

    from actors.bus import ReceiveLoop
    from actors.messages import AccountRisk, HeldEvent, decode

    out = out or sys.stdout
    stop = threading.Event()
    daemon = Daemon(config, market, address=address)
    # After ray.init: Ray installs its own SIGTERM handler, which would kill us mid-drain.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tiers: dict[str, str] = {}

    def on_risk(frame: bytes) -> None:
        message = decode(frame)
        if isinstance(message, AccountRisk) and tiers.get(message.account) != message.tier:
            tiers[message.account] = message.tier
            log.info("tier change", extra={"account": message.account, "tier": message.tier,
                                           "margin_ratio": message.margin_ratio})
            print(f"{message.account}: tier {message.tier} (MM/equity {message.margin_ratio:.1%})", file=out,
                  flush=True)
        elif isinstance(message, HeldEvent):
            print(f"held {message.account}/{message.symbol} seq {message.seq}: {message.reason}", file=out,
                  flush=True)

    listener = ReceiveLoop({daemon.risk_socket: on_risk}, name="risk-log", context=daemon.bus.context).start()
    print(f"riskd running: {len(daemon.positions)} shards; SIGTERM or Ctrl-C stops", file=out, flush=True)
    try:
        stop.wait()
    finally:
        print("riskd stopping: intake first", file=out, flush=True)
        listener.stop()
        daemon.stop()
        ray.shutdown()
    print("riskd stopped", file=out, flush=True)
    return 0
