"""The daemon's live view: every account's latest AccountRisk, merged stage latency,
budget alerts and cached actor health, for ``/status``, ``/metrics`` and the demo.

It is the daemon process's AccountRisk subscriber: on each message it records the
``risk_publish`` (published by the shard -> received here) and ``end_to_end``
(drop-copy bytes read -> received here) stages, keeps the message, and logs tier
changes and held events. A refresher thread pulls the actors' stage histograms
and health over Ray every ``refresh_s`` seconds (never on the hot path) and runs
the budget monitor. Latencies in us; money in the account currency.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from actors.latency import BudgetBreach, BudgetMonitor, LatencyBudgets, StageRecorder, StageStats
from actors.messages import AccountRisk, HeldEvent, decode

log = logging.getLogger("riskd.daemon")


class RiskView:
    """Latest state for people and scrapers; see the module docstring.

    ``pull_latency``: returns encoded StageRecorder deltas from the actors;
    ``pull_health``: returns the actors' health dict; ``collateral``: routes a
    cash change (raises KeyError for an unknown account); ``out``: where tier
    changes and held events are printed (None: log only).
    """

    def __init__(self, budgets: LatencyBudgets, *, pull_latency: Callable[[], Sequence[bytes]],
                 pull_health: Callable[[], Mapping[str, Any]], collateral: Callable[[str, float], None],
                 out: TextIO | None = None, refresh_s: float = 1.0,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.recorder = StageRecorder(budgets)
        self.monitor = BudgetMonitor(budgets, on_alert=self._on_alert)
        self._pull_latency = pull_latency
        self._pull_health = pull_health
        self._collateral = collateral
        self._out = out
        self._refresh_s = refresh_s
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._latest: dict[str, AccountRisk] = {}
        self._alerts: deque[BudgetBreach] = deque(maxlen=100)
        self._held: deque[HeldEvent] = deque(maxlen=1000)
        self._health: Mapping[str, Any] = {}
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_loop, name="risk-view", daemon=True)

    # ----- the AccountRisk subscriber (ReceiveLoop handler) --------------------
    def on_frame(self, frame: bytes) -> None:
        received = self._clock_ns()
        message = decode(frame)
        if isinstance(message, AccountRisk):
            stamps = message.stamps
            if stamps.published_ns and stamps.read_ns:  # a fill's risk, not a repricing's
                self.recorder.record("risk_publish", stamps.published_ns, received)
                self.recorder.record("end_to_end", stamps.read_ns, received)
            with self._lock:
                before = self._latest.get(message.account)
                self._latest[message.account] = message
                self.received += 1
            if before is None or before.tier != message.tier:
                log.info("tier %s", message.tier, extra={"event": "tier", "account": message.account,
                                                          "tier": message.tier, "margin_ratio": message.margin_ratio})
                self._print(f"{message.account}: tier {message.tier} (MM/equity {message.margin_ratio:.1%})")
        elif isinstance(message, HeldEvent):
            with self._lock:
                self._held.append(message)
            self._print(f"held {message.account}/{message.symbol} seq {message.seq}: {message.reason}")

    # ----- DaemonView (daemon.http_api) ---------------------------------------
    def stage_snapshot(self) -> Mapping[str, StageStats]:
        return self.recorder.snapshot()

    def accounts(self) -> Sequence[AccountRisk]:
        with self._lock:
            return [self._latest[a] for a in sorted(self._latest)]

    def alerts(self) -> Sequence[BudgetBreach]:
        with self._lock:
            return list(self._alerts)

    def held(self) -> Sequence[HeldEvent]:
        with self._lock:
            return list(self._held)

    def health(self) -> Mapping[str, Any]:
        with self._lock:
            return dict(self._health)

    def set_collateral(self, account: str, cash: float) -> None:
        self._collateral(account, cash)

    # ----- lifecycle ------------------------------------------------------------
    def start(self) -> "RiskView":
        self.refresh()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)

    def refresh(self) -> None:
        """Pull the actors' latency deltas and health now, then check the budgets."""
        for blob in self._pull_latency():
            self.recorder.merge_encoded(blob)
        health = self._pull_health()
        with self._lock:
            self._health = health
        self.monitor.check(self.recorder.snapshot())

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self.refresh()
            except Exception:  # an actor restarting: keep the last figures, try again
                log.exception("status refresh failed", extra={"event": "status_refresh_error"})

    def _on_alert(self, breach: BudgetBreach) -> None:
        with self._lock:
            self._alerts.append(breach)
        self._print(f"latency budget {breach.state}: {breach.stage} p99 {breach.p99_us:.0f} us"
                    f" vs budget {breach.budget_us:.0f} us")

    def _print(self, line: str) -> None:
        if self._out is not None:
            print(line, file=self._out, flush=True)
