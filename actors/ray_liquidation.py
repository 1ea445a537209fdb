"""The liquidation actor: AccountRisk in, tier events, margin calls and liquidation orders out.

Threads. One receive loop owns the :class:`actors.liquidation_engine.LiquidationEngine`
and every piece of its state: AccountRisk frames from the shards (its own SUB,
bound; the shards' PUB sockets connect to it), market updates (it applies them
as a shard does, so its risk model is the shards'), and everything other threads
hand it with ``call_soon``. A fetch thread reads account copies from the
position shards (a Ray call, 1-2 ms), rebuilds the account and works out its
plan (milliseconds more), all off the loop, as soon as an account reaches
margin call, so a later breach is sent without waiting. The loop thread writes
the round's NewOrderSingles on the execution socket itself
(actors.liquidation_orders, actors.liquidation_wire); the execution session's
FIX thread reads the venue's reports, which the loop takes after any AccountRisk
already waiting (breaches before bookkeeping). Alerts go to the log, to
:meth:`metrics` (the daemon's /metrics), to the JSON events PUB socket when
configured, and to the webhook (its own thread).

Where the engine's view of an account comes from: the shards' state (positions
and cash as the drop copy made them, deduplicated by ExecID there) is the
system of record; the actor never books fills itself, it re-reads the account
whenever an AccountRisk says it changed (another last_seq, model version or
figure) while the account is at margin call or worse. Its own orders' states
(ack, fill, reject, IOC expiry) come from the execution session's reports.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import msgspec
import zmq

from actors.gc_quiet import start_gc_freezer
from actors.bus import Bus, ReceiveLoop
from actors.latency import LIQUIDATION_DECISION, LatencyBudgets, StageRecorder
from actors.liquidation_config import LiquidationSettings
from actors.liquidation_engine import LiquidationEngine, Mirror
from actors.liquidation_journal import LiquidationJournal
from actors.liquidation_orders import ExecutionLink
from actors.messages import AccountRisk, MarketUpdate, decode
from actors.position_shard import shard_of
from actors.ray_actor import actor_class
from fix.order_entry import NewOrder
from fix.settings import SessionSettings
from risk.account import Account
from risk.instruments import InstrumentTable, MarketSnapshot
from risk.liquidation import book_from_account, plan_reduction
from risk.model import RiskModel
from risk.params import InstrumentSpec, MarginParams, UnderlyingSpec

log = logging.getLogger("riskd.liquidation")

#: Tiers at which the liquidation engine acts (orders gated or positions cut).
ACTION_TIERS = frozenset({"reduce_only", "partial_liquidation", "full_liquidation"})
_JSON = msgspec.json.Encoder()
#: Seconds a read of an account waits for the position actors to be attached.
_ATTACH_WAIT_S = 60.0


class LiquidationSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the liquidation actor needs (plain data: Ray pickles it).

    ``risk_endpoint``: the AccountRisk SUB endpoint it binds. ``accounts``: account
    id -> margin profile name. ``execution``: the order-entry session (None: dry
    run only). ``state_dir``: journal and execution ExecIDs (settings.journal_dir
    wins when set). ``market_endpoint``: MarketUpdates to follow (None: static
    ``market``). ``events_endpoint``: a PUB it binds for JSON events (None: off).
    ``switch_interval_s``: the process's GIL switch interval (0: leave CPython's
    5 ms), see ``__init__``. ``cpus``: CPU ids to pin to. ``budgets``: latency budgets of its stage
    histograms (``liquidation_decision``: AccountRisk received -> the round's
    orders journaled and handed to execution).
    """

    risk_endpoint: str
    cpus: tuple[int, ...] = ()
    settings: LiquidationSettings = LiquidationSettings()
    params: MarginParams | None = None
    underlyings: tuple[UnderlyingSpec, ...] = ()
    instruments: tuple[InstrumentSpec, ...] = ()
    market: MarketSnapshot | None = None
    accounts: dict[str, str] = {}
    history_returns: Any = None
    execution: SessionSettings | None = None
    state_dir: str = ""
    market_endpoint: str | None = None
    events_endpoint: str | None = None
    n_shards: int = 1
    budgets: LatencyBudgets | None = None
    switch_interval_s: float = 0.001


class _Outputs:
    def __init__(self, actor: "LiquidationActorImpl") -> None:
        self.actor = actor

    def send(self, order: NewOrder) -> None:
        self.actor._send(order)

    def refresh(self, account: str) -> None:
        self.actor._fetch_queue.put(account)

    def event(self, kind: str, payload: object) -> None:
        self.actor._event(kind, payload)

    def decision(self, start_ns: int, end_ns: int) -> None:
        self.actor.recorder.record(LIQUIDATION_DECISION, start_ns, end_ns)
        self.actor.decisions_us.append((end_ns - start_ns) / 1e3)
        self.actor.last_decision_ns = (start_ns, end_ns)


class LiquidationActorImpl:
    """The actor's body, usable without Ray (tests) or as ``ray.remote(LiquidationActorImpl)``.

    ``fetch(account) -> state``: reads one account from its shard (``cash``,
    ``last_seq``, ``positions`` {symbol: [quantity, average price]}); by default
    the position actors given to :meth:`attach_positions`. ``send``: overrides the
    execution session (bench and tests).
    """

    def __init__(self, spec: LiquidationSpec, *, fetch: Callable[[str], dict[str, Any]] | None = None) -> None:
        if spec.cpus:
            os.sched_setaffinity(0, set(spec.cpus))
        if spec.switch_interval_s:
            # How long the loop thread may wait for the GIL behind another thread that is
            # computing (the FIX thread parsing a burst of execution reports, the fetch
            # thread pricing a mirror, a Ray call). The loop thread writes its orders itself
            # (actors.liquidation_wire), so nothing on the breach -> wire path waits for
            # another thread; a shorter interval only added forced switches: bench medians
            # of 5 runs, p99 breach -> wire 1.7 ms at 0.2 ms, 1.1 ms at 1 ms, 1.0 ms at 5 ms.
            # 1 ms keeps the bound on a computing thread's hold 5x tighter than the default.
            sys.setswitchinterval(spec.switch_interval_s)
        self.spec = spec
        self.bus = Bus()
        self.received = 0
        self.transitions = 0
        self.tiers: dict[str, str] = {}
        self.ratios: dict[str, float] = {}
        self.events: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=200)
        self.write_ns: dict[str, int] = {}
        self.breach_ns: dict[str, int] = {}
        self.recorder = StageRecorder(spec.budgets, cumulative=True)  # deltas shipped to the daemon, which windows them
        #: The last decisions' durations (us), for benches and health.
        self.decisions_us: collections.deque[float] = collections.deque(maxlen=10_000)
        self.last_decision_ns: tuple[int, int] = (0, 0)
        self._positions: list[Any] = []
        self._attached = threading.Event()  # set by attach_positions
        self._fetch = fetch
        self._fetch_queue: queue.Queue[str | None] = queue.Queue()
        socket = self._risk_socket = self.bus.socket(zmq.SUB, spec.risk_endpoint, bind=True)
        handlers: dict[zmq.Socket, Callable[[bytes], None]] = {socket: self._on_risk}
        self._reports_unsynced = False
        self.engine: LiquidationEngine | None = None
        self.link: ExecutionLink | None = None
        self.webhook = None
        self._events_pub = None
        if spec.params is not None:
            self._start_engine(spec, handlers)
        self._last_tick = 0.0
        self._loop = ReceiveLoop(handlers, name="liquidation", context=self.bus.context, on_idle=self._tick,
                                 on_batch_end=self._tick).start()
        self._fetcher = threading.Thread(target=self._fetch_run, name="liquidation-fetch", daemon=True)
        self._fetcher.start()
        log.info("liquidation actor up on %s (%s)", spec.risk_endpoint,
                 "no engine" if self.engine is None else "dry run" if spec.settings.dry_run else "live")
        start_gc_freezer()  # no full collection between a breach and its orders (actors/gc_quiet.py)

    def _start_engine(self, spec: LiquidationSpec, handlers: dict[zmq.Socket, Callable[[bytes], None]]) -> None:
        from actors.webhook import WebhookSender

        settings = spec.settings
        self.table = InstrumentTable(spec.underlyings, spec.instruments)
        self.model = RiskModel(self.table, spec.market, spec.params, spec.history_returns)  # type: ignore[arg-type]
        self.model_version = 0
        state = Path(settings.journal_dir or spec.state_dir or ".")
        self.journal = LiquidationJournal(state if settings.journal_dir else state / "liquidation",
                                          fsync=settings.journal_fsync)
        self.webhook = WebhookSender(settings.webhook)
        self.engine = LiquidationEngine(settings, spec.params, self.journal, _Outputs(self))  # type: ignore[arg-type]
        if spec.execution is not None and not settings.dry_run:
            self.link = ExecutionLink(spec.execution, self.journal.folder, self._on_report_fix,
                                      on_written=self._on_written)
        if spec.market_endpoint is not None:
            handlers[self.bus.socket(zmq.SUB, spec.market_endpoint, bind=False)] = self._on_market
        if spec.events_endpoint is not None:
            self._events_pub = self.bus.socket(zmq.PUB, spec.events_endpoint, bind=True)

    # ----- the loop thread -------------------------------------------------------------
    def _on_risk(self, frame: bytes) -> None:
        received_ns = time.monotonic_ns()
        message = decode(frame)
        if not isinstance(message, AccountRisk):
            return
        self.received += 1
        before = self.tiers.get(message.account, "normal")
        self.tiers[message.account] = message.tier
        self.ratios[message.account] = message.margin_ratio
        if message.tier != before:
            self.transitions += 1
            if message.tier in ("partial_liquidation", "full_liquidation") and before not in (
                    "partial_liquidation", "full_liquidation"):
                self.breach_ns[message.account] = time.monotonic_ns()
        if self.engine is not None:
            self.engine.on_risk(message, received_ns)
        elif message.tier != before and (message.tier in ACTION_TIERS or before in ACTION_TIERS):
            log.warning("account %s: tier %s -> %s (MM/equity %.4f); liquidation engine not configured",
                        message.account, before, message.tier, message.margin_ratio)

    def _on_market(self, frame: bytes) -> None:
        message = decode(frame)
        if not isinstance(message, MarketUpdate) or message.version <= self.model_version:
            return
        if message.full:
            model = RiskModel(self.table, message.snapshot, self.spec.params, self.spec.history_returns)  # type: ignore[arg-type]
        else:
            changed = {self.table.underlying_index[u] for u in message.changed if u in self.table.underlying_index}
            model = RiskModel(self.table, message.snapshot, self.spec.params, self.spec.history_returns,  # type: ignore[arg-type]
                              previous=self.model, changed=changed)
        self.model, self.model_version = model, message.version
        if self.engine is not None:
            self.engine.on_model(model, message.version)

    def _tick(self) -> None:
        if self._reports_unsynced and self.engine is not None:
            self._reports_unsynced = False
            self.engine.flush()
        now = time.monotonic()
        if self.engine is not None and now - self._last_tick >= 0.05:
            self._last_tick = now
            self.engine.on_timer()

    def _build_mirror(self, account_id: str, state: dict[str, Any]) -> Mirror | None:
        """The account as its shard sent it, on the current model, with its plan worked out
        (fetch thread: the milliseconds this takes stay off the loop thread, where a
        breach of another account could be waiting)."""
        profile = self.spec.params.profiles[self.spec.accounts.get(account_id, "")] \
            if self.spec.accounts.get(account_id) in self.spec.params.profiles else None  # type: ignore[union-attr]
        if profile is None or self.engine is None:
            log.error("account %s: no margin profile known to the liquidation actor", account_id)
            return None
        while True:  # the loop thread stores the model, then its version: read them back to back
            version = self.model_version
            model = self.model
            if self.model_version == version:  # (a new model with the old version only costs a re-read)
                break
        account = Account(account_id, profile, model, float(state["cash"]))
        for symbol, (quantity, average) in state["positions"].items():
            row = self.table.index.get(symbol)
            if row is not None and quantity:
                account.apply_fill(row, float(quantity), float(average))
        account.cash = float(state["cash"])
        planner, plan = self.spec.settings.planner, None
        try:
            plan = plan_reduction(book_from_account(account, planner), planner.target_ratio)
        except Exception as exc:  # the engine plans again when it needs the plan (and says why it cannot)
            log.warning("account %s: no plan worked out ahead: %s", account_id, exc)
        return Mirror(account, int(state["last_seq"]), version, plan)

    def _mirror(self, account_id: str, mirror: Mirror) -> None:
        if self.engine is not None:
            self.engine.on_mirror(account_id, mirror)

    # ----- other threads -----------------------------------------------------------------
    def _fetch_run(self) -> None:
        while True:
            account_id = self._fetch_queue.get()
            if account_id is None:
                return
            try:
                state = self._read_account(account_id)
            except Exception as exc:
                log.error("account %s: cannot read its positions: %s", account_id, exc)
                continue
            if state is None:
                continue
            try:
                mirror = self._build_mirror(account_id, state)
            except Exception as exc:
                log.error("account %s: cannot mirror its positions: %s", account_id, exc)
                continue
            if mirror is not None:
                self._loop.call_soon(lambda a=account_id, m=mirror: self._mirror(a, m))

    def _read_account(self, account_id: str) -> dict[str, Any] | None:
        if self._fetch is not None:
            return self._fetch(account_id)
        # A restarted daemon's shards publish their recovered accounts before it attaches
        # them here: wait for them rather than drop the read (the engine asks once per
        # AccountRisk change, and an account waiting on its round may not change for long).
        if not self._attached.wait(_ATTACH_WAIT_S):
            return None
        import ray

        shard = self._positions[shard_of(account_id, len(self._positions))]
        return ray.get(shard.state.remote(), timeout=10).get(account_id)

    def _send(self, order: NewOrder) -> None:
        if self.link is None:
            raise RuntimeError("no execution session configured")
        self.link.send(order)

    def _on_report_fix(self, cl_ord_id: str, status: str, cum_qty: float, exec_id: str) -> None:
        self._loop.call_soon(lambda: self._on_report(cl_ord_id, status, cum_qty, exec_id))

    def _on_report(self, cl_ord_id: str, status: str, cum_qty: float, exec_id: str) -> None:
        # Breaches before bookkeeping: a round's acks arrive in a burst (one per order)
        # and are queued behind each other; an AccountRisk waiting meanwhile is taken
        # first. Their journal records are flushed once, at the end of the burst (_tick):
        # a crash before that loses report records only (the round then waits for its
        # settle timeout and re-plans from the drop copy's positions; the orders' ClOrdIDs
        # were journaled before they were sent, so none is sent twice).
        self._take_risk()
        self.engine.on_report(cl_ord_id, status, cum_qty, exec_id, sync=False)  # type: ignore[union-attr]
        self._reports_unsynced = True

    def _take_risk(self) -> None:
        """Handle the AccountRisk frames already waiting on the SUB socket (loop thread)."""
        socket = self._risk_socket
        while True:
            try:
                frame = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._on_risk(frame)
            except Exception as exc:
                self._loop.errors += 1
                self._loop.last_error = repr(exc)
                log.exception("AccountRisk handler failed on a %d-byte frame", len(frame))

    def _on_written(self, cl_ord_id: str, ns: int) -> None:
        self.write_ns[cl_ord_id] = ns

    def _event(self, kind: str, payload: object) -> None:
        body = _JSON.encode({"kind": kind, "event": payload})
        self.events.append((kind, body))
        if self._events_pub is not None:
            self._events_pub.send(body)
        if self.webhook is not None and kind in ("tier_transition", "margin_call", "instruction"):
            self.webhook.post({"kind": kind, "event": payload})

    # ----- control plane (Ray calls) -------------------------------------------------------
    def attach_positions(self, handles: list[Any]) -> None:
        """The position actors, index = shard (accounts are read from them)."""
        self._positions = list(handles)
        self._attached.set()

    def latency(self) -> bytes:
        """This actor's stage histograms since the last call (StageRecorder.encode)."""
        return self.recorder.encode()

    def health(self) -> dict[str, Any]:
        """Counters and the accounts at an action tier (a Ray call: never on a hot path)."""
        return {"pid": os.getpid(), "received": self.received, "transitions": self.transitions,
                "errors": self._loop.errors, "last_error": self._loop.last_error,
                "action_accounts": {a: t for a, t in sorted(self.tiers.items()) if t in ACTION_TIERS},
                "engine": self.metrics() if self.engine is not None else None}

    def metrics(self) -> dict[str, Any]:
        """Counters and gauges for /metrics (names riskd_liquidation_<key>)."""
        engine = self.engine
        if engine is None:
            return {}
        by_tier = collections.Counter(self.tiers.values())
        out: dict[str, Any] = {f"{k}_total": v for k, v in engine.counters.items()}
        out.update({f"accounts_{t}": by_tier.get(t, 0) for t in
                    ("normal", "margin_call", "reduce_only", "partial_liquidation", "full_liquidation")})
        out["margin_calls_outstanding"] = sum(1 for st in engine.accounts.values() if st.called)
        out["dry_run"] = int(self.spec.settings.dry_run)
        out["execution_logged_on"] = int(self.link.logged_on) if self.link is not None else 0
        if self.webhook is not None:
            out.update({f"webhook_{k}": v for k, v in self.webhook.stats().items() if isinstance(v, int)})
        return out

    def recent_events(self) -> list[str]:
        return [body.decode() for _, body in self.events]

    def stop(self) -> None:
        self._fetch_queue.put(None)
        self._loop.stop()
        if self.link is not None:
            self.link.stop()
        if self.webhook is not None:
            self.webhook.stop()
        if self.engine is not None:
            self.journal.close()
        self.bus.close()


def liquidation_actor_class(max_restarts: int = 3, num_cpus: float = 0.0) -> Any:
    """The Ray actor class of :class:`LiquidationActorImpl` (see :func:`actors.ray_actor.actor_class`)."""
    return actor_class(LiquidationActorImpl, max_restarts, num_cpus)
