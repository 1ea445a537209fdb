"""The position actor: a Ray actor around one :class:`PositionService`.

Ray is the control plane only (ARCHITECTURE.md: a Ray call costs 1-2 ms here):
the actor is created with its shard, reference data and endpoints, and answers
``health`` and ``positions`` (for status and audit); fills, order events and
AccountRisk move on the service's ZeroMQ sockets. The actor process pins itself
to the configured CPUs (``os.sched_setaffinity``), the largest single latency
lever on this 2-core machine.

Ray is imported lazily: the rest of riskd (and its tests) do not need it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgspec

from actors.bus import Bus
from actors.fpga_shadow import FpgaPath, FpgaSettings
from actors.gc_quiet import gc_stats, start_gc_freezer
from actors.kill_switch import KillSwitches
from actors.pretrade_messages import KillSwitchCommand
from actors.latency import LatencyBudgets, StageRecorder
from actors.pretrade import PreTradeChecker
from actors.pretrade_config import PretradeSettings
from actors.position_service import PositionService
from actors.position_shard import PositionShard
from actors.ray_actor import actor_class
from actors.recovery_gc import gc_paused
from actors.recovery_replay import ReplayStats, bulk_replay
from actors.recovery_timing import StartupMarks
from actors.snapshot import Snapshotter, capture_shard, read_snapshot, restore_shard, snapshot_path
from risk.instruments import InstrumentTable, MarketSnapshot
from risk.model import RiskModel
from risk.params import InstrumentSpec, MarginParams, UnderlyingSpec

log = logging.getLogger("riskd.position")


class ShardSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a position actor needs to start (plain data: Ray pickles it).

    ``accounts``: (id, profile name, cash in currency) of this shard's accounts.
    ``risk_endpoints``: the AccountRisk subscribers' bound endpoints (each gets every
    message). ``cpus``: CPU ids to pin the actor process to (empty: no pinning).
    ``explain_interval_s``: seconds between top-driver refreshes per account.
    """

    shard: int
    n_shards: int
    params: MarginParams
    underlyings: tuple[UnderlyingSpec, ...]
    instruments: tuple[InstrumentSpec, ...]
    market: MarketSnapshot
    accounts: tuple[tuple[str, str, float], ...]
    events_endpoint: str
    risk_endpoints: tuple[str, ...]
    #: Bound endpoints of subscribers that get only the AccountRisk calling for action
    #: (outside the normal tier, or a tier change): the liquidation actor.
    action_endpoints: tuple[str, ...] = ()
    cpus: tuple[int, ...] = ()
    #: (window, U) VaR-horizon returns of the underlyings (numpy), for VaR profiles.
    history_returns: Any = None
    #: Where MarketUpdates are published (None: price on ``market`` only).
    market_endpoint: str | None = None
    budgets: LatencyBudgets = LatencyBudgets()
    explain_interval_s: float = 1.0
    #: Where the ingest replays this shard's events after a restart, and the ingest
    #: actor's Ray name to ask it (None: a restarted shard starts empty).
    replay_endpoint: str | None = None
    ingest_name: str | None = None
    #: The pre-trade hook: this shard's ROUTER endpoint (None: no hook) and settings.
    pretrade_endpoint: str | None = None
    pretrade: PretradeSettings = PretradeSettings()
    #: Durable state folder (actors.snapshot.DurabilitySettings.state_dir, resolved): the
    #: shard's snapshot lives there (None: no snapshots; a restart rebuilds from seq 0).
    state_dir: str | None = None
    snapshot_interval_s: float = 10.0
    #: The daemon's kill-switch journal, replayed (read only) at start and at every
    #: restart; commands after that arrive through :meth:`PositionActorImpl.kill_switch`.
    kill_switch_journal: str | None = None
    #: The FPGA overlay beside the pre-trade hook (actors.fpga_shadow).
    fpga: FpgaSettings = FpgaSettings()
    #: The drop-copy journal's folder: at start (daemon or Ray restart) the shard reads
    #: its accounts' frames after its snapshot from it (actors.recovery_replay) before
    #: the ingest's catch-up or replay sends the rest (None: all come from the ingest).
    journal_dir: str | None = None
    #: Ray names of the AccountRisk subscribers that bind their SUB in their own
    #: start-up (the liquidation actor): the shard loads its state while they start and
    #: waits for each to answer ``health`` before its PUB connects (nothing published
    #: into a socket nobody has bound yet).
    subscribers: tuple[str, ...] = ()


class PositionActorImpl:
    """The actor's body, usable without Ray (tests) or as ``ray.remote(PositionActorImpl)``."""

    def __init__(self, spec: ShardSpec) -> None:
        #: Start-up phase marks (wall clock), in health(): the recovery bench's breakdown.
        self.startup = StartupMarks()
        if spec.cpus:
            os.sched_setaffinity(0, set(spec.cpus))
        self.spec = spec
        table = InstrumentTable(spec.underlyings, spec.instruments)
        model = RiskModel(table, spec.market, spec.params, spec.history_returns)
        self.shard = PositionShard(spec.shard, spec.n_shards, model, explain_interval_s=spec.explain_interval_s)
        for account_id, profile, cash in spec.accounts:
            self.shard.add_account(account_id, spec.params.profiles[profile], cash)
        self.startup.mark("accounts_added")
        self.recorder = StageRecorder(spec.budgets, cumulative=True)  # deltas shipped to the daemon, which windows them
        self.bus = Bus()
        self.table = table
        pretrade = None
        if spec.pretrade_endpoint is not None:
            # Staleness is read from the service (created just below) when a check runs.
            switches = KillSwitches(spec.kill_switch_journal, read_only=True)
            self.checker = PreTradeChecker(self.shard, spec.pretrade, switches,
                                           market_age=lambda u: self.service.market_age_s(u))
            pretrade = (spec.pretrade_endpoint, self.checker, spec.pretrade.timeout_us)
        self.checker_or_none = self.checker if spec.pretrade_endpoint is not None else None
        self.snapshotter: Snapshotter | None = None
        self.restored_seq: int | None = None
        self.bulk_replay: ReplayStats | None = None
        held = []
        with gc_paused():  # the applied fills' keys: long-lived objects by the million (actors/recovery_gc.py)
            if spec.state_dir is not None:
                self._restore(spec)
            if spec.journal_dir is not None:
                self.bulk_replay, held = bulk_replay(self.shard, spec.journal_dir, self.checker_or_none)
                self.startup.mark("journal_replayed")
                log.info("position shard %d: %d journaled events applied from the journal (seq %d to %d)",
                         spec.shard, self.bulk_replay.applied, self.bulk_replay.from_seq, self.shard.applied_seq)
        self._wait_for_subscribers(spec.subscribers)
        self.startup.mark("subscribers_up")
        restarted = _restarted_by_ray()
        # Without a state folder there is no journal to replay from: a restart starts empty.
        recovering = (restarted and spec.replay_endpoint is not None and spec.ingest_name is not None
                      and spec.state_dir is not None)
        self.service = PositionService(self.shard, self.bus, spec.events_endpoint, spec.risk_endpoints,
                                       bind_risk=False, recorder=self.recorder,
                                       market_endpoint=spec.market_endpoint, model_builder=self._build_model,
                                       replay_endpoint=spec.replay_endpoint, recovering=recovering,
                                       pretrade=pretrade, action_endpoints=spec.action_endpoints,
                                       periodic=self.snapshotter.maybe if self.snapshotter else None).start()
        self.startup.mark("service_started")
        self.fpga: FpgaPath | None = None
        if self.service.pretrade is not None:
            self.fpga = self.service.pretrade.fpga = FpgaPath.open(spec.fpga, spec.pretrade)
        self.restarted = restarted
        if self.bulk_replay is not None:
            self.service.call(self._after_bulk_replay(self.bulk_replay.last_seq, held))
        if self.restored_seq is not None or (self.bulk_replay is not None and self.bulk_replay.applied):
            # Subscribers (the liquidation actor, the daemon's view) get every restored
            # account's AccountRisk now, not at its next change.
            self.service.update_model(self.shard.model, self.shard.model_version)
        if recovering:
            # Rebuild from the drop copy: the ingest sends every event it routed here so
            # far, then a marker; live events wait behind it (PositionService).
            import ray

            ray.get_actor(spec.ingest_name).replay.remote(spec.shard, self.shard.applied_seq)
            log.warning("position shard %d restarted: replaying its journaled events from seq %d", spec.shard,
                        self.shard.applied_seq)
        log.info("position shard %d of %d up with %d accounts", spec.shard, spec.n_shards, len(spec.accounts))
        self.startup.mark("constructed")
        start_gc_freezer()  # a full collection over the accounts' objects costs ~80 ms (actors/gc_quiet.py)

    def _wait_for_subscribers(self, subscribers: tuple[str, ...], timeout_s: float = 120.0) -> None:
        """Block until every subscriber actor (by Ray name) answers ``health``: its SUB is
        bound. One that does not within ``timeout_s`` (dead for good) is logged, not
        waited for: the daemon's own subscriber is bound before any actor exists."""
        if not subscribers:
            return
        import ray

        try:
            ray.get([ray.get_actor(name).health.remote() for name in subscribers], timeout=timeout_s)
        except Exception as exc:
            log.warning("position shard %d: an AccountRisk subscriber did not come up (%s): publishing anyway",
                        self.spec.shard, exc)

    def _after_bulk_replay(self, last_seq: int, held: list) -> Any:
        """On the shard's thread: the events the bulk replay took count as received (drain
        checks), and its held events are reported as the live path reports them."""
        service = self.service

        def done(_shard: PositionShard) -> None:
            service.max_seq = max(service.max_seq, last_seq)
            for event in held:
                service._emit(event)
        return done

    def _restore(self, spec: ShardSpec) -> None:
        """Load the shard's latest snapshot (if any) and set up the periodic ones."""
        path = snapshot_path(spec.state_dir, spec.shard)  # type: ignore[arg-type]
        profiles = spec.params.profiles
        snapshot = read_snapshot(path)
        self.startup.mark("snapshot_read")
        if snapshot is not None:
            restore_shard(self.shard, snapshot, profiles, self.checker_or_none, source=str(path))
            self.startup.mark("snapshot_restored")
            self.restored_seq = snapshot.applied_seq
            age_s = (time.time_ns() - snapshot.written_unix_ns) / 1e9
            log.warning("position shard %d restored from %s (seq %d, %.1f s old, %d accounts)", spec.shard, path,
                        snapshot.applied_seq, age_s, len(snapshot.accounts))
        self.snapshotter = Snapshotter(path, spec.snapshot_interval_s,
                                       lambda: capture_shard(self.shard, profiles, self.checker_or_none))

    def applied_seq(self) -> int:
        """The drop-copy seq this shard has applied up to (read on its thread): where the
        ingest's catch-up resumes."""
        return self.service.read(lambda shard: shard.applied_seq, timeout_s=30.0)

    def fill_keys(self) -> list[tuple[str, str, str]]:
        """(trade date, ExecID, kind) of every fill applied (audit and recovery trials)."""
        return self.service.read(lambda shard: list(shard.applied_fills), timeout_s=60.0)

    def snapshot(self) -> int:
        """Write a snapshot now (on the shard's thread); returns the seq it reflects."""
        if self.snapshotter is None:
            raise RuntimeError("this shard has no state folder")
        snapshotter = self.snapshotter
        return self.service.read(lambda shard: snapshotter.take().applied_seq, timeout_s=120.0)

    def _build_model(self, update: Any, previous: RiskModel) -> RiskModel:
        """The risk model of a MarketUpdate: only the changed underlyings repriced, unless full."""
        if update.full:
            return RiskModel(self.table, update.snapshot, self.spec.params, self.spec.history_returns)
        changed = {self.table.underlying_index[u] for u in update.changed if u in self.table.underlying_index}
        return RiskModel(self.table, update.snapshot, self.spec.params, self.spec.history_returns,
                         previous=previous, changed=changed)

    def health(self) -> dict[str, Any]:
        """Counters for `riskd status` (a Ray call: never on a hot path)."""
        return {"shard": self.spec.shard, "pid": os.getpid(), "accounts": len(self.shard.accounts),
                "received": self.service.received, "malformed": self.service.malformed,
                "handler_errors": self.service.handler_errors, "last_error": self.service.last_error,
                "held": len(self.shard.held), "duplicates": self.shard.duplicates,
                "market_version": self.service.market_version, "market_errors": self.service.market_errors,
                "restarted": self.restarted, "recovering": self.service.recovering,
                "replayed": self.service.replayed, "max_seq": self.service.max_seq,
                "applied_seq": self.shard.applied_seq, "stale": self.service.stale,
                "restored_seq": self.restored_seq,
                "snapshots": self.snapshotter.written if self.snapshotter else 0,
                "snapshot_pause_ms": round(self.snapshotter.last_pause_ms, 2) if self.snapshotter else 0.0,
                "snapshot_write_ms": round(self.snapshotter.last_write_ms, 1) if self.snapshotter else 0.0,
                "snapshot_failures": self.snapshotter.failures if self.snapshotter else 0,
                "pretrade": self.service.pretrade.checker.state() if self.service.pretrade else None,
                "affinity": sorted(os.sched_getaffinity(0)), "gc": gc_stats(),
                "fpga": self.fpga.state() if self.fpga is not None else None, "startup": self.startup.as_dict(),
                "startup_cpu": self.startup.cpu_dict(),
                "bulk_replay": msgspec.to_builtins(self.bulk_replay) if self.bulk_replay is not None else None}

    def positions(self) -> dict[str, dict[str, float]]:
        """Signed contracts per instrument per account (read on the shard's thread)."""
        return self.service.read(lambda shard: {
            account_id: {symbol: pos.quantity for symbol, pos in account.iter_positions()}
            for account_id, account in shard.accounts.items()}, timeout_s=5.0)

    def state(self) -> dict[str, dict[str, Any]]:
        """Every account's cash, positions (contracts, average price), tier and last
        drop-copy seq: the shutdown snapshot and audit view."""
        return self.service.read(lambda shard: {
            account_id: {"cash": account.cash, "tier": account.tier.name.lower(),
                         "last_seq": shard.last_seq.get(account_id, 0),
                         "positions": {s: [p.quantity, p.average_price] for s, p in account.iter_positions()}}
            for account_id, account in shard.accounts.items()}, timeout_s=10.0)

    def kill_switch(self, command: KillSwitchCommand) -> bool:
        """Apply a kill-switch command the daemon has journaled (on the shard's thread,
        between two checks); True if it changed this shard's switches."""
        if self.service.pretrade is None:
            return False
        switches = self.service.pretrade.checker.kill_switches
        return self.service.read(lambda _shard: switches.apply(command), timeout_s=5.0)

    def latency(self) -> bytes:
        """This shard's stage histograms since the last call (StageRecorder.encode)."""
        return self.recorder.encode()

    def stop(self) -> None:
        """Stop the receive loop, then write the shutdown snapshot."""
        self.service.stop()
        if self.fpga is not None:
            self.fpga.stop()
        if self.snapshotter is not None:
            try:
                snapshot = self.snapshotter.take()
                log.info("position shard %d: shutdown snapshot at seq %d", self.spec.shard, snapshot.applied_seq)
            except Exception:
                log.exception("position shard %d: shutdown snapshot failed", self.spec.shard)
        self.bus.close()


def _restarted_by_ray() -> bool:
    """True inside a Ray actor that Ray has restarted after a failure."""
    try:
        import ray

        return ray.is_initialized() and ray.get_runtime_context().was_current_actor_reconstructed
    except Exception:  # not in a Ray actor
        return False


def position_actor_class(max_restarts: int = 3, num_cpus: float = 0.0) -> Any:
    """The Ray actor class of :class:`PositionActorImpl` (see :func:`actors.ray_actor.actor_class`)."""
    return actor_class(PositionActorImpl, max_restarts, num_cpus)
