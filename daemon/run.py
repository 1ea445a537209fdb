"""``riskd run``: start Ray and the actors, wire their ZeroMQ endpoints, stop them cleanly.

Actors: the liquidation actor (binds its AccountRisk subscription first), the
market/pricing actor (unless the market is static), the position shards and the
drop-copy ingest. The daemon process itself subscribes to AccountRisk
(:class:`daemon.risk_view.RiskView`), owns the kill-switch journal and the what-if
client (:class:`daemon.pretrade_control.PretradeControl`) and serves its HTTP port
(``/metrics``, ``/status``, collateral, kill switches, what-if).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, TextIO

import zmq

from actors.gc_quiet import start_gc_freezer
from actors.bus import Bus, ReceiveLoop, default_run_dir, ipc_endpoint
from actors.position_shard import shard_of
from actors.market_data import GbmUnderlying
from actors.ray_ingest import IngestSpec, ingest_actor_class
from actors.ray_liquidation import LiquidationSpec, liquidation_actor_class
from actors.ray_market import MarketSpec, market_actor_class
from actors.ray_position import ShardSpec, position_actor_class
from actors.recovery_timing import StartupMarks
from daemon.book import load_history_returns
from daemon.config import ConfigError, RiskdConfig
from daemon.pretrade_control import PretradeControl, pretrade_endpoints, ray_broadcast
from daemon.risk_view import RiskView
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
    """The running actors of one riskd instance (handles to Ray actors), its AccountRisk
    view and its HTTP port.

    ``out``: where tier changes, held events and budget alerts are printed (None:
    log only). ``http``: serve the HTTP port (``daemon.http_host``/``http_port``).
    Extra AccountRisk consumers in this process register with
    :meth:`add_risk_listener` (the subscription socket has one reader thread).
    """

    def __init__(self, config: RiskdConfig, market: MarketSnapshot, *, address: str | None = None,
                 out: TextIO | None = None, http: bool = True) -> None:
        import ray

        #: Start-up phase marks (wall clock): the recovery bench's breakdown.
        self.startup = StartupMarks(with_process_start=False)
        if config.fix.drop_copy is None:
            raise ConfigError("config", "fix.drop_copy", "required: the drop-copy session riskd consumes")
        if not ray.is_initialized():
            if address is None:  # a local instance: its raylet starts the workers at this nice value
                os.environ["RAY_worker_niceness"] = str(config.daemon.worker_niceness)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.startup.mark("ray_ready")
        self.config = config
        settings = config.daemon
        self.run_dir = run_dir = Path(settings.run_dir) if settings.run_dir else default_run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        durability = config.durability
        #: Durable state (journal, ExecID store, shard snapshots, liquidation): a daemon
        #: started on an existing folder recovers from it (actors.snapshot).
        self.state_dir = state_dir = Path(durability.state_dir) if durability.state_dir else run_dir / "state"
        for sub in ("ingest", "shards", "liquidation"):
            (state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.risk_endpoint = ipc_endpoint("account-risk", run_dir)
        self.account_ids = frozenset(a.id for a in config.accounts)
        # Subscribers bind before any shard exists, so no early AccountRisk is published
        # into a socket nobody listens on yet.
        self.bus = Bus(zmq.Context())
        self.risk_socket = self.bus.socket(zmq.SUB, self.risk_endpoint, bind=True)
        # Read from the start: a bound SUB attaches a connecting PUB (and sends it the
        # subscription) only when its own thread enters libzmq, so a SUB left unread
        # while the actors start lost every AccountRisk published meanwhile (measured:
        # a drop-copy burst during start-up reached the liquidation actor, not us).
        # Frames that come before the view exists are kept and given to it first.
        self._listeners: list[Callable[[bytes], None]] = []
        self._early_frames: collections.deque[bytes] = collections.deque(maxlen=100_000)
        self._view_attached = False
        self._risk_loop = ReceiveLoop({self.risk_socket: self._on_risk_frame}, name="risk-view",
                                      context=self.bus.context).start()
        self._actors: list[Any] = []
        liquidation_endpoint = ipc_endpoint("account-risk-liquidation", run_dir)
        table = InstrumentTable(config.underlyings, config.instruments)
        history = load_history_returns(config, table)
        # Named: the shards look it up to wait for its AccountRisk SUB (ShardSpec.subscribers).
        liquidation_name = f"riskd-liquidation-{os.getpid()}-{id(self):x}"
        self.liquidation = liquidation_actor_class(settings.max_restarts).options(name=liquidation_name).remote(
            self._liquidation_spec(config, market, history, liquidation_endpoint))
        self._actors.append(self.liquidation)
        self.market_actor = self._start_market(config, market, table, run_dir)
        updates_endpoint = self._updates_endpoint
        ingest_name = f"riskd-ingest-{os.getpid()}-{id(self):x}"
        self.shard_endpoints = tuple(ipc_endpoint(f"events-{i}", run_dir) for i in range(settings.shards))
        replay_endpoints = tuple(ipc_endpoint(f"replay-{i}", run_dir) for i in range(settings.shards))
        #: The shards' pre-trade ROUTER endpoints, index = shard (actors.pretrade_client).
        self.pretrade_endpoints = pretrade_endpoints(run_dir, settings.shards)
        kill_switch_journal = config.pretrade.journal_path(run_dir)
        # The ingest starts first (its ExecID store and journal tail take seconds on a big
        # state folder) and loads while the other actors start; it asks each shard for its
        # applied seq (waiting for them to exist), so it connects the drop copy only once
        # they are up.
        ingest = ingest_actor_class(settings.max_restarts).options(name=ingest_name)
        self.ingest = ingest.remote(IngestSpec(session=config.fix.drop_copy, shard_endpoints=self.shard_endpoints,
                                               state_dir=str(state_dir / "ingest"), replay_endpoints=replay_endpoints,
                                               cpus=settings.ingest_cpus, **self._journal_fields(ingest_name)))
        self._actors.append(self.ingest)
        # The shards start while the liquidation actor starts (each loads its state for
        # seconds); a shard connects its AccountRisk PUB only once the liquidation actor
        # has bound its SUB (ShardSpec.subscribers), so none is published before.
        position = position_actor_class(settings.max_restarts)
        self.positions = []
        for shard in range(settings.shards):
            accounts = tuple((a.id, a.profile, a.cash) for a in config.accounts
                             if shard_of(a.id, settings.shards) == shard)
            spec = ShardSpec(shard=shard, n_shards=settings.shards, params=config.margin,
                             underlyings=config.underlyings, instruments=config.instruments, market=market,
                             accounts=accounts, events_endpoint=self.shard_endpoints[shard],
                             risk_endpoints=(self.risk_endpoint,), action_endpoints=(liquidation_endpoint,),
                             cpus=settings.position_cpus[shard] if settings.position_cpus else (),
                             history_returns=history, market_endpoint=updates_endpoint, budgets=settings.latency,
                             replay_endpoint=replay_endpoints[shard], ingest_name=ingest_name,
                             pretrade_endpoint=self.pretrade_endpoints[shard], pretrade=config.pretrade,
                             kill_switch_journal=str(kill_switch_journal), fpga=config.fpga,
                             state_dir=str(state_dir) if durability.journal else None,
                             snapshot_interval_s=durability.snapshot_interval_s,
                             journal_dir=self._journal_fields(ingest_name).get("journal_dir"),
                             subscribers=(liquidation_name,))
            self.positions.append(position.options(name=f"{ingest_name}-shard-{shard}").remote(spec))
        self._actors += self.positions
        self.startup.mark("actors_created")
        ray.get(self.liquidation.health.remote())  # a bad liquidation config fails here, with its message
        self.startup.mark("liquidation_up")
        ray.get([p.health.remote() for p in self.positions])
        self.startup.mark("shards_up")
        ray.get(self.liquidation.attach_positions.remote(self.positions))  # it reads accounts from them
        self.startup.mark("liquidation_attached")
        #: Kill switches (journaled here, applied on every shard) and what-if checks.
        self.pretrade_control = PretradeControl(kill_switch_journal, ray_broadcast(self.positions),
                                                self.pretrade_endpoints,
                                                accounts=self.account_ids, underlyings=table.underlying_ids)
        ray.get(self.ingest.health.remote())
        self.startup.mark("ingest_up")
        start_gc_freezer()  # the AccountRisk reader records end_to_end: no full collection there either
        self.view = RiskView(settings.latency, pull_latency=self._pull_latency, pull_health=self.health,
                             collateral=self.set_collateral, out=out).start()
        self._risk_loop.call_soon(self._attach_view)
        self.http = None
        if http:
            from daemon.http_api import HttpApi

            self.http = HttpApi(self.view, host=settings.http_host, port=settings.http_port,
                                control=self.pretrade_control)
            self.http.metrics.add_liquidation_source(self.liquidation_metrics)
            self.http.start()
            self.http.publish_url(run_dir)  # <run_dir>/http.url, for `riskd status -c CONFIG`
        log.info("riskd running: %d shards, AccountRisk on %s, HTTP %s", settings.shards, self.risk_endpoint,
                 self.http.url if self.http else "off")

    def _liquidation_spec(self, config: RiskdConfig, market: MarketSnapshot, history: Any,
                          endpoint: str) -> LiquidationSpec:
        """The liquidation actor's spec: orders go to ``fix.execution`` only when
        ``liquidation.dry_run`` is false (a live engine needs that session)."""
        settings = config.daemon
        execution = None if config.liquidation.dry_run else config.fix.execution
        if execution is None and not config.liquidation.dry_run:
            raise ConfigError("config", "fix.execution", "required when liquidation.dry_run is false")
        return LiquidationSpec(
            risk_endpoint=endpoint, cpus=settings.liquidation_cpus, settings=config.liquidation,
            params=config.margin, underlyings=config.underlyings, instruments=config.instruments, market=market,
            accounts={a.id: a.profile for a in config.accounts}, history_returns=history, execution=execution,
            state_dir=str(self.state_dir), n_shards=settings.shards, budgets=settings.latency,
            market_endpoint=None if settings.market == "static" else ipc_endpoint("market-updates", self.run_dir))

    def _journal_fields(self, ingest_name: str) -> dict[str, Any]:
        """The ingest's journal folder and settings, and the shards' Ray names (catch-up)."""
        durability = self.config.durability
        if not durability.journal:
            return {}
        session = self.config.fix.drop_copy
        assert session is not None
        folder = self.state_dir / "journal" / f"{session.sender_comp_id}-{session.target_comp_id}"
        return {"journal_dir": str(folder), "journal": durability.journal_settings(),
                "shard_names": tuple(f"{ingest_name}-shard-{i}" for i in range(self.config.daemon.shards))}

    def _start_market(self, config: RiskdConfig, market: MarketSnapshot, table: InstrumentTable,
                      run_dir: Path) -> Any:
        settings = config.daemon
        self._updates_endpoint = None
        if settings.market == "static":
            return None
        self._updates_endpoint = ipc_endpoint("market-updates", run_dir)
        spec = MarketSpec(params=config.margin, underlyings=config.underlyings, instruments=config.instruments,
                          initial=market, updates_endpoint=self._updates_endpoint,
                          ticks_endpoint=settings.ticks_endpoint if settings.market == "zmq" else None,
                          simulate=simulated_underlyings(table, market) if settings.market == "simulate" else (),
                          replay_path=settings.replay_path if settings.market == "replay" else None,
                          replay_speed=settings.replay_speed, cpus=settings.market_cpus,
                          publish_interval_s=settings.publish_interval_s, full_interval_s=settings.full_interval_s,
                          fpga=config.fpga)
        actor = market_actor_class(settings.max_restarts).remote(spec)
        self._actors.append(actor)
        import ray

        ray.get(actor.health.remote())  # a bad replay file fails here, with its message
        return actor

    # ----- the AccountRisk subscription -------------------------------------------
    def add_risk_listener(self, listener: Callable[[bytes], None]) -> None:
        """Also call ``listener(frame)`` with every AccountRisk/HeldEvent frame (on the
        subscriber thread: keep it short)."""
        # On the subscriber thread, after the view (queued first): frames stay in order.
        self._risk_loop.call_soon(lambda: self._listeners.append(listener))

    def _attach_view(self) -> None:
        # On the subscriber thread: the frames kept so far first, in order.
        while self._early_frames:
            self.view.on_frame(self._early_frames.popleft())
        self._listeners.insert(0, self.view.on_frame)
        self._view_attached = True

    def _on_risk_frame(self, frame: bytes) -> None:
        if not self._view_attached:
            self._early_frames.append(frame)
            return
        for listener in self._listeners:
            listener(frame)

    # ----- control plane (Ray calls) ------------------------------------------------
    def _pull_latency(self) -> list[bytes]:
        import ray

        # One shard at a time: a shard that is down (restarting) must not cost the
        # others' deltas, which they handed over when asked and do not keep.
        blobs = []
        for index, ref in enumerate([p.latency.remote() for p in self.positions]):
            try:
                blobs.append(ray.get(ref, timeout=30))
            except Exception as exc:
                log.warning("latency of shard %d not available: %s", index, exc)
        try:  # its liquidation_decision stage
            blobs.append(ray.get(self.liquidation.latency.remote(), timeout=30))
        except Exception as exc:
            log.warning("latency of the liquidation actor not available: %s", exc)
        return blobs

    def health(self) -> dict[str, Any]:
        import ray

        def get(ref: Any) -> Any:
            try:
                return ray.get(ref, timeout=30)
            except Exception as exc:  # a restarting actor: say so, keep the others
                return {"error": f"{type(exc).__name__}: {exc}"[:300]}
        return {"ingest": get(self.ingest.health.remote()),
                "shards": [get(p.health.remote()) for p in self.positions],
                "market": get(self.market_actor.health.remote()) if self.market_actor is not None else None,
                "liquidation": get(self.liquidation.health.remote())}

    def liquidation_metrics(self) -> dict[str, Any]:
        """The liquidation actor's counters and gauges (riskd_liquidation_<key>); {} while it restarts."""
        import ray

        try:
            return ray.get(self.liquidation.metrics.remote(), timeout=10)
        except Exception as exc:
            log.warning("liquidation metrics not available: %s", exc)
            return {}

    def set_collateral(self, account: str, cash: float) -> None:
        """Set an account's cash or collateral (currency), in order with the drop copy."""
        import ray

        if account not in self.account_ids:
            raise KeyError(account)
        ray.get(self.ingest.collateral.remote(account, float(cash)), timeout=30)

    def positions_by_account(self) -> dict[str, dict[str, float]]:
        """Signed contracts per instrument per account, from every shard."""
        import ray

        out: dict[str, dict[str, float]] = {}
        for part in ray.get([p.positions.remote() for p in self.positions], timeout=60):
            out.update(part)
        return out

    def state(self) -> dict[str, dict[str, Any]]:
        """Every account's cash, positions, tier and last seq (PositionActorImpl.state)."""
        import ray

        out: dict[str, dict[str, Any]] = {}
        for part in ray.get([p.state.remote() for p in self.positions], timeout=60):
            out.update(part)
        return out

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every shard has taken every event the ingest routed to it."""
        deadline = time.monotonic() + timeout_s
        while True:
            health = self.health()
            routed = health["ingest"].get("last_seq_per_shard")
            if routed is None:  # the ingest is restarting: not drained yet
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
                continue
            done = all(h.get("max_seq", -1) >= seq for h, seq in zip(health["shards"], routed))
            if done or time.monotonic() > deadline:
                return done
            time.sleep(0.05)

    def stop(self, snapshot: Path | None = None) -> None:
        """Graceful stop: stop intake (FIX Logout), drain the shards, write the snapshot
        (when a path is given), then stop every actor."""
        import ray

        try:
            ray.get(self.ingest.stop.remote(), timeout=10)
        except Exception:
            log.exception("ingest did not stop cleanly")
        try:
            if not self.drain():
                log.error("shards did not drain within 10 s", extra={"event": "drain_timeout"})
            if snapshot is not None:
                tmp = snapshot.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.state(), sort_keys=True), encoding="utf-8")
                os.replace(tmp, snapshot)
                log.info("snapshot written to %s", snapshot, extra={"event": "snapshot", "path": str(snapshot)})
        except Exception:
            log.exception("drain or snapshot failed")
        if self.http is not None:
            self.http.stop()
        self.pretrade_control.close()
        self.view.stop()
        self._risk_loop.stop()
        for actor in [a for a in self._actors if a is not self.ingest]:
            try:
                ray.get(actor.stop.remote(), timeout=10)
            except Exception:
                log.exception("an actor did not stop cleanly")
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self.bus.close()


def run_until_signalled(config: RiskdConfig, market: MarketSnapshot, *, address: str | None = None,
                        out=None) -> int:
    """`riskd run`: start the daemon, serve until SIGTERM or SIGINT, then stop cleanly (exit 0).

    Shutdown order: stop intake (the drop-copy session logs out), drain the shards,
    write ``<run_dir>/snapshot.json``, stop the actors, shut Ray down. Tier changes,
    held events and budget alerts are printed as they arrive.
    """
    import signal
    import sys
    import threading

    import ray

    out = out or sys.stdout
    stop = threading.Event()
    daemon = Daemon(config, market, address=address, out=out)
    # After ray.init: Ray installs its own SIGTERM handler, which would kill us mid-drain.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    url = daemon.http.url if daemon.http is not None else "off"
    print(f"riskd running: {len(daemon.positions)} shards, HTTP {url}; SIGTERM or Ctrl-C stops", file=out,
          flush=True)
    try:
        stop.wait()
    finally:
        print("riskd stopping: intake first", file=out, flush=True)
        daemon.stop(snapshot=daemon.run_dir / "snapshot.json")
        ray.shutdown()
    print("riskd stopped", file=out, flush=True)
    return 0
