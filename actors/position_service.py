"""One position shard behind its sockets: drop-copy events in, AccountRisk out.

The receive loop thread owns the :class:`PositionShard`: fills and order events
arrive on a PULL socket (from the ingest router), and every change publishes the
account's AccountRisk on a PUB socket. Model updates, new accounts and snapshots
requested from other threads (the Ray actor's methods) are queued onto the same
thread with ``ReceiveLoop.call_soon``, so the shard is never touched concurrently.

Latency stages recorded here (``recorder.record(stage, start_ns, end_ns)``,
monotonic ns): fix_parse (bytes read -> fill parsed, from the stamps the ingest
wrote), route (ingest send -> shard receive) and position_update (receive ->
margin recomputed).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Protocol, TypeVar

import zmq

from actors.bus import Bus, ReceiveLoop
from actors.messages import (AccountRisk, CollateralMsg, FillMsg, HeldEvent, MarketUpdate, OrderMsg, ReplayDone,
                             Stamps, decode, encode)
from risk.errors import RiskModelError
from actors.position_shard import PositionShard
from actors.pretrade import PreTradeChecker
from actors.pretrade_endpoint import PretradeEndpoint
from risk.model import RiskModel
from risk.params import MarginProfile
from risk.tiers import Tier

log = logging.getLogger("riskd.position")
T = TypeVar("T")
#: Reservation-only AccountRisk republishes per flush at most (20-80 us each). The
#: first is always made (the queue drains under any load); each further one only
#: while no check waits on the ROUTER: a check never waits behind more than one.
RESERVED_BATCH = 16
#: AccountRisk.tier of an account that calls for no action.
NORMAL_TIER = Tier.NORMAL.name.lower()
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class StageSink(Protocol):
    def record(self, stage: str, start_ns: int, end_ns: int) -> None: ...


class _NoRecorder:
    def record(self, stage: str, start_ns: int, end_ns: int) -> None:
        pass


class PositionService:
    """Sockets and thread around one shard; see the module docstring."""

    def __init__(self, shard: PositionShard, bus: Bus, events_endpoint: str, risk_endpoint: str | tuple[str, ...], *,
                 bind_risk: bool = True, recorder: StageSink | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns, market_endpoint: str | None = None,
                 model_builder: Callable[[MarketUpdate, RiskModel], RiskModel] | None = None,
                 replay_endpoint: str | None = None, recovering: bool = False,
                 pretrade: tuple[str, PreTradeChecker, float] | None = None,
                 periodic: Callable[[], None] | None = None, action_endpoints: tuple[str, ...] = ()) -> None:
        """``replay_endpoint``: where the ingest sends this shard's past events after a
        restart; ``recovering``: hold live events until that replay has been applied
        (then apply the held ones that were not in it). ``pretrade``: (ROUTER
        endpoint, checker, client timeout in us) of the pre-trade hook, answered on
        this thread. ``periodic``: called on this thread at each batch end and idle
        tick (the snapshotter: it decides itself whether one is due).
        ``action_endpoints``: subscribers (bound) that get only the AccountRisk that may
        call for action: an account not in the normal tier, or whose tier changed
        since this shard last published it (the liquidation actor: at 2,000 fills/s
        it spent 13 % of a CPU decoding normal accounts' messages to ignore them).

        Frames are applied in drop-copy order; a fill or order event (or collateral
        change) below the shard's ``applied_seq`` is one it already holds (a replay
        or catch-up overlapping what it applied) and is skipped; same-seq frames are
        re-applied idempotently (ExecID dedup for fills, reservations set)."""
        self.shard = shard
        self._periodic = periodic
        #: Frames skipped as older than what the shard applied.
        self.stale = 0
        self._clock_ns = clock_ns
        self.recorder = recorder or _NoRecorder()
        self._pull = bus.socket(zmq.PULL, events_endpoint, bind=True)
        # Subscribers (the daemon, the liquidation actor) bind and the shards connect:
        # one PUB connected to every subscriber fans out with no proxy hop.
        endpoints = (risk_endpoint,) if isinstance(risk_endpoint, str) else tuple(risk_endpoint)
        if bind_risk and len(endpoints) != 1:
            raise ValueError("a bound AccountRisk PUB socket takes exactly one endpoint")
        self._pub = bus.socket(zmq.PUB, endpoints[0], bind=bind_risk)
        for extra in endpoints[1:]:
            self._pub.connect(extra)
        self._action_pub: zmq.Socket | None = None
        if action_endpoints:
            self._action_pub = bus.socket(zmq.PUB, action_endpoints[0], bind=False)
            for extra in action_endpoints[1:]:
                self._action_pub.connect(extra)
        #: Tier of each account's last AccountRisk (for the action subscribers' filter).
        self._published_tier: dict[str, str] = {}
        handlers: dict[zmq.Socket, Callable[[bytes], None]] = {self._pull: self._on_frame}
        self._build_model = model_builder
        self.market_version = 0
        self.market_errors = 0
        self._static_market = market_endpoint is None
        self._market_ns: dict[str, int] = {}
        self._started_ns = clock_ns()
        if market_endpoint is not None:
            if model_builder is None:
                raise ValueError("a market endpoint needs a model builder")
            handlers[bus.socket(zmq.SUB, market_endpoint, bind=False)] = self._on_market
        if replay_endpoint is not None:
            handlers[bus.socket(zmq.PULL, replay_endpoint, bind=True, hwm=0)] = self._on_replay_frame
        elif recovering:
            raise ValueError("recovering needs a replay endpoint")
        self.recovering = recovering
        self._held_live: list[bytes] = []
        self.replayed = 0
        #: Highest drop-copy seq among the events received (drain checks compare it with the ingest's).
        self.max_seq = 0
        self._dirty: dict[str, Stamps] = {}
        #: Accounts whose reservations changed, published when _reserved_due_ns comes.
        self._reserved: set[str] = set()
        #: Due reservation-only republishes, RESERVED_BATCH per flush (a check waiting
        #: behind a few hundred of them would wait milliseconds).
        self._reserved_queue: list[str] = []
        self._reserved_due_ns = 0
        self._reserved_every_ns = 0
        self.pretrade: PretradeEndpoint | None = None
        multipart: frozenset[zmq.Socket] = frozenset()
        if pretrade is not None:
            endpoint, checker, timeout_us = pretrade
            router = bus.socket(zmq.ROUTER, endpoint, bind=True)
            self.pretrade = PretradeEndpoint(checker, router, self.recorder, self._mark_reserved,
                                             timeout_us=timeout_us, clock_ns=clock_ns)
            self._reserved_every_ns = int(checker.settings.reservation_publish_s * 1e9)
            handlers[router] = self.pretrade.on_request  # type: ignore[assignment]
            multipart = frozenset({router})
        self._loop = ReceiveLoop(handlers, name=f"shard-{shard.shard}", context=bus.context, on_batch_end=self._flush,
                                 multipart=multipart, on_idle=self._on_idle)
        self.received = 0
        self.malformed = 0
        self.held_reported = 0

    @property
    def handler_errors(self) -> int:
        """Frames whose handling raised (logged with the frame)."""
        return self._loop.errors

    @property
    def last_error(self) -> str:
        return self._loop.last_error

    def start(self) -> "PositionService":
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    # ----- calls from other threads -----------------------------------------
    def update_model(self, model: RiskModel, version: int) -> None:
        """New risk arrays: applied on the shard's thread, every account republished."""
        self._loop.call_soon(lambda: [self._publish(r) for r in self.shard.on_model(model, version)])

    def add_account(self, account_id: str, profile: MarginProfile, cash: float) -> None:
        """Create an account (on the shard's thread), then apply any fills held for it."""
        def add() -> None:
            self.shard.add_account(account_id, profile, cash)
            for result in self.shard.retry_held():
                self._emit(result)
        self._loop.call_soon(add)

    def call(self, fn: Callable[[PositionShard], None]) -> None:
        """Run ``fn(shard)`` on the shard's thread (snapshots, status)."""
        self._loop.call_soon(lambda: fn(self.shard))

    def read(self, fn: Callable[[PositionShard], T], timeout_s: float) -> T:
        """``fn(shard)`` run on the shard's thread, its result returned here; TimeoutError
        if the thread has not run it within ``timeout_s`` seconds (never a partial read)."""
        done = threading.Event()
        result: list[T] = []

        def run(shard: PositionShard) -> None:
            result.append(fn(shard))
            done.set()
        self.call(run)
        if not done.wait(timeout_s):
            raise TimeoutError(f"shard {self.shard.shard} did not answer within {timeout_s:g} s")
        return result[0]

    # ----- the shard's thread ------------------------------------------------
    def _on_frame(self, frame: bytes) -> None:
        if self.recovering:
            self._held_live.append(frame)  # applied after the replay, in order
            return
        self._apply(frame, self._clock_ns(), live=True)

    def _on_replay_frame(self, frame: bytes) -> None:
        message = self._apply(frame, self._clock_ns(), live=False)
        if not isinstance(message, ReplayDone):
            return
        held, self._held_live = self._held_live, []
        self.recovering = False
        log.info("shard %d: replay of %d events applied (to seq %d); %d live events held", self.shard.shard,
                 message.count, message.last_seq, len(held))
        for frame in held:
            self._apply(frame, self._clock_ns(), live=True, after_seq=message.last_seq)
        for account_id in self.shard.accounts:  # one AccountRisk per account, not one per replayed event
            self._publish(self.shard.risk(account_id, Stamps(), explain=True))

    def _apply(self, frame: bytes, received: int, *, live: bool, after_seq: int = 0) -> object:
        """Decode and apply one frame; returns the message (None if malformed).

        ``live``: record its latency stages (a replayed event's stamps are old).
        ``after_seq``: skip fills and order events at or below this drop-copy seq
        (they were in the replay).
        """
        try:
            message = decode(frame)
        except ValueError:
            self.malformed += 1
            log.warning("shard %d: malformed data-plane frame dropped: %r", self.shard.shard, frame[:200])
            return None
        self.received += 1
        if not live:
            self.replayed += 1
        if isinstance(message, (FillMsg, OrderMsg)):
            if message.seq > self.max_seq:
                self.max_seq = message.seq
            if message.seq <= after_seq:
                return message
            if message.seq < self.shard.applied_seq:
                self.stale += 1
                return message
            self.shard.applied_seq = message.seq
            stamps = message.stamps
            stamps.received_ns = received
            fill = isinstance(message, FillMsg)
            result = self.shard.apply_fill(message) if fill else self.shard.apply_order(message)  # type: ignore[arg-type]
            if (not fill and self.pretrade is not None and not isinstance(result, HeldEvent)
                    and message.status not in ("pending_cancel", "pending_replace")):  # type: ignore[union-attr]
                self.pretrade.checker.drop_copy_seen(message.order_id)  # the drop copy owns it now
            if live:
                record = self.recorder.record
                record("fix_parse", stamps.read_ns, stamps.parsed_ns)
                record("route", stamps.routed_ns, stamps.received_ns)
                if result is True:
                    # Margin and AccountRisk once per account per burst (_flush), with the
                    # stamps of the account's latest event.
                    self._dirty[message.account] = stamps
            if isinstance(result, HeldEvent):
                self._emit(result)
            return message
        elif isinstance(message, CollateralMsg):
            if message.seq < self.shard.applied_seq:
                self.stale += 1
                return message
            risk = self.shard.on_collateral(message)
            if live:
                self._emit(risk)
            return message
        elif isinstance(message, ReplayDone):
            return message
        else:
            log.warning("shard %d: unexpected %s ignored", self.shard.shard, type(message).__name__)
            return message

    def market_age_s(self, underlying: str) -> float | None:
        """Seconds since this shard last took a new price/vol for ``underlying`` (the
        start counts as one); 0 with a static market, which is the operator's fixed
        snapshot and never goes stale."""
        if self._static_market:
            return 0.0
        return (self._clock_ns() - self._market_ns.get(underlying, self._started_ns)) / 1e9

    def _mark_changed(self, account_id: str) -> None:
        self._dirty.setdefault(account_id, Stamps())

    def _mark_reserved(self, account_id: str) -> None:
        # A pre-trade reservation made or released: only IM with orders moved, so the
        # account is republished with the next due flush (reservation_publish_s), not
        # with a full margin recomputation after every accepted order.
        self._reserved.add(account_id)

    def _on_idle(self) -> None:
        if self.pretrade is not None:  # reservation TTLs run out with no traffic too
            self._flush()
        elif self._periodic is not None:
            self._periodic()

    def _flush(self) -> None:
        """End of a burst: margin and AccountRisk for every account that changed in it."""
        if self.pretrade is not None:
            self.pretrade.sweep()
        if self._periodic is not None:
            self._periodic()
        if self._reserved and not self._reserved_queue:
            now = self._clock_ns()
            if now >= self._reserved_due_ns:
                self._reserved_queue = sorted(self._reserved, reverse=True)
                self._reserved = set()
                self._reserved_due_ns = now + self._reserved_every_ns
        dirty: dict[str, Stamps] = {}
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            record = self.recorder.record
            for account_id, stamps in dirty.items():
                risk = self.shard.risk(account_id, stamps)
                if stamps.received_ns:  # a drop-copy event's (not a pre-trade reservation's)
                    stamps.applied_ns = self._clock_ns()
                    record("position_update", stamps.received_ns, stamps.applied_ns)
                self._publish(risk)
        queue = self._reserved_queue
        if queue:
            router = self.pretrade.socket if self.pretrade is not None else None
            for n in range(min(RESERVED_BATCH, len(queue))):
                if n and router is not None and router.getsockopt(_EVENTS) & _POLLIN:
                    break  # a check is waiting: it goes first, the rest at the next flush
                account_id = queue.pop()
                if account_id not in dirty:  # else just published in full, reservations included
                    self._publish(self.shard.risk(account_id, Stamps(), carry_driver=True))

    def _on_market(self, frame: bytes) -> None:
        message = decode(frame)
        if not isinstance(message, MarketUpdate) or message.version <= self.market_version:
            return  # an older or repeated update: the shard already has something newer
        try:
            model = self._build_model(message, self.shard.model)  # type: ignore[misc]
        except RiskModelError as exc:
            # The market cannot be priced (a NaN, an expired instrument): keep the last
            # good model, count and log it; the status shows the error count.
            self.market_errors += 1
            log.error("shard %d: market update %d not applied: %s", self.shard.shard, message.version, exc)
            return
        self.market_version = message.version
        now = self._clock_ns()
        for underlying in (self.shard.model.table.underlying_ids if message.full else message.changed):
            self._market_ns[underlying] = now
        if message.stamps.read_ns:
            self.recorder.record("reprice", message.stamps.read_ns, self._clock_ns())
        for risk in self.shard.on_model(model, message.version):
            self._publish(risk)

    def _emit(self, result: AccountRisk | HeldEvent | None) -> None:
        if result is None:
            return
        if isinstance(result, HeldEvent):
            self.held_reported += 1
        self._publish(result)

    def _publish(self, message: AccountRisk | HeldEvent) -> None:
        if isinstance(message, AccountRisk):
            message.stamps.published_ns = self._clock_ns()
            frame = encode(message)
            self._pub.send(frame)
            if self._action_pub is not None:
                tier = message.tier
                if tier != NORMAL_TIER or self._published_tier.get(message.account) != tier:
                    self._action_pub.send(frame)
                self._published_tier[message.account] = tier
            return
        self._pub.send(encode(message))
