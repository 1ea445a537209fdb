"""Latency budget alerts: compare stage snapshots with their p99 budgets.

One job: :class:`BudgetMonitor` turns :class:`~actors.latency.StageRecorder`
snapshots into :class:`BudgetBreach` events, one alert and one log line per
transition (breach starts, breach clears). Latencies in microseconds (us);
wall-clock times are float seconds since the Unix epoch. Both names are also
re-exported by :mod:`actors.latency`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

import msgspec

from actors.latency_stages import LatencyBudgets, StageStats

__all__ = ["BudgetBreach", "BudgetMonitor"]

# Same logger name as before the split (actors.latency), so log routing is unchanged.
log = logging.getLogger("riskd.latency")


class BudgetBreach(msgspec.Struct, frozen=True, kw_only=True):
    """A stage over (``state="breached"``) or back under (``"cleared"``) its p99 budget.

    ``p99_us``/``budget_us`` in microseconds; ``count``: samples the p99 is based on;
    ``at_wall_time``: float seconds since the Unix epoch when it was detected.
    """

    stage: str
    p99_us: float
    budget_us: float
    count: int
    at_wall_time: float
    state: Literal["breached", "cleared"] = "breached"


class BudgetMonitor:
    """Turns snapshots into budget alerts, one per transition.

    :meth:`check` compares each stage's window p99 with its budget. A stage enters
    breach when p99 > budget with at least ``min_samples`` samples in the window;
    it clears when the p99 is back at or under budget, or when its window is empty
    (no traffic: nothing left to alert on). Falling under ``min_samples`` alone
    does not clear it, so a stage hovering around ``min_samples`` cannot flap.
    ``on_alert`` receives a :class:`BudgetBreach` at each transition (``state``
    "breached" or "cleared") and one structured log line is written; nothing is
    repeated while a state persists. ``wall_clock``: seconds since the epoch.
    """

    def __init__(self, budgets: LatencyBudgets | None = None,
                 on_alert: Callable[[BudgetBreach], None] | None = None, *,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.budgets = budgets if budgets is not None else LatencyBudgets()
        self.on_alert = on_alert
        self._wall_clock = wall_clock
        self._active: dict[str, BudgetBreach] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> dict[str, BudgetBreach]:
        """Stages in breach now (as of the last check), with the breach that started it."""
        with self._lock:
            return dict(self._active)

    def check(self, snapshot: Mapping[str, StageStats]) -> list[BudgetBreach]:
        """Evaluate one snapshot; return every stage in breach now (us figures).

        Alerts and log lines are emitted only for stages whose state changed.
        """
        now = self._wall_clock()
        breaches: list[BudgetBreach] = []
        transitions: list[BudgetBreach] = []
        with self._lock:
            for stage, stats in snapshot.items():
                budget = self.budgets.budget_us(stage)
                if budget is None:
                    continue
                n, p99 = stats.window_count, stats.p99_us
                was = stage in self._active
                over = n > 0 and p99 > budget  # False for NaN (empty window)
                if over and (was or n >= self.budgets.min_samples):
                    breach = BudgetBreach(stage=stage, p99_us=p99, budget_us=budget, count=n, at_wall_time=now)
                    breaches.append(breach)
                    if not was:
                        self._active[stage] = breach
                        transitions.append(breach)
                elif was and not over:
                    del self._active[stage]
                    transitions.append(BudgetBreach(stage=stage, p99_us=p99, budget_us=budget, count=n,
                                                    at_wall_time=now, state="cleared"))
        for event in transitions:  # outside the lock: callbacks may call back in
            self._emit(event)
        return breaches

    def _emit(self, event: BudgetBreach) -> None:
        fields = {"event": f"latency_budget_{event.state}", "stage": event.stage, "p99_us": event.p99_us,
                  "budget_us": event.budget_us, "samples": event.count, "at_wall_time": event.at_wall_time}
        if event.state == "breached":
            log.warning("latency budget breached: %s p99 %.1f us > budget %.1f us (%d samples)",
                        event.stage, event.p99_us, event.budget_us, event.count, extra=fields)
        else:
            log.info("latency budget cleared: %s p99 %.1f us <= budget %.1f us (%d samples)",
                     event.stage, event.p99_us, event.budget_us, event.count, extra=fields)
        if self.on_alert is not None:
            try:
                self.on_alert(event)
            except Exception:
                # A failing alert sink must not stop monitoring or hide later alerts.
                log.exception("latency alert callback failed", extra={"event": "latency_alert_error",
                                                                      "stage": event.stage})

    def run(self, snapshot: Callable[[], Mapping[str, StageStats]], stop: threading.Event) -> None:
        """Check ``snapshot()`` every ``check_interval_s`` seconds until ``stop`` is set.

        Meant as a thread's target; an exception from ``snapshot`` is logged and the
        loop goes on.
        """
        interval = self.budgets.check_interval_s
        while not stop.wait(interval):
            try:
                self.check(snapshot())
            except Exception:
                log.exception("latency budget check failed", extra={"event": "latency_check_error"})
