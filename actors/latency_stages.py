"""Latency stages: the pipeline's stage names, their p99 budgets and per-stage stats.

One job: the vocabulary shared by recording (:mod:`actors.latency`) and alerting
(:mod:`actors.latency_budget`): the stage constants and :data:`STAGES`,
:class:`LatencyBudgets` (config, defaults from ARCHITECTURE.md "Latency budget per
stage") and :class:`StageStats` (one stage at one snapshot). Figures in microseconds
(us). Import these from :mod:`actors.latency`, which re-exports them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = [
    "FIX_PARSE", "ROUTE", "POSITION_UPDATE", "RISK_PUBLISH", "PRETRADE", "REPRICE",
    "LIQUIDATION_DECISION", "END_TO_END", "STAGES", "LatencyBudgets", "StageStats",
]

# Stage names, as recorded, exported (Prometheus label ``stage``) and configured.
FIX_PARSE = "fix_parse"                        # bytes read -> Fill struct
ROUTE = "route"                                # ingest -> position actor (ZMQ)
POSITION_UPDATE = "position_update"            # fill applied, account vector, margin
RISK_PUBLISH = "risk_publish"                  # margin -> AccountRisk delivered
PRETRADE = "pretrade"                          # check received -> decision sent
REPRICE = "reprice"                            # tick -> risk arrays published (per underlying)
LIQUIDATION_DECISION = "liquidation_decision"  # AccountRisk -> order instruction
END_TO_END = "end_to_end"                      # drop-copy bytes in -> AccountRisk out

#: Every stage, in the order of ARCHITECTURE.md's table (the pipeline order).
STAGES: tuple[str, ...] = (FIX_PARSE, ROUTE, POSITION_UPDATE, RISK_PUBLISH, PRETRADE, REPRICE,
                           LIQUIDATION_DECISION, END_TO_END)


# --------------------------------------------------------------------------- config

_BudgetUs = Annotated[float, Meta(gt=0)]


class LatencyBudgets(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """p99 latency budget per stage, in microseconds (us), and how breaches are judged.

    Stage fields: the p99 each stage must stay under (us); defaults are
    ARCHITECTURE.md's table. ``check_interval_s``: seconds between breach
    evaluations. ``min_samples``: a stage with fewer samples in the window is never
    declared in breach (a p99 of a handful of samples is noise). ``window_s``:
    seconds of recent samples the percentiles and breaches are computed over (at
    the granularity of one snapshot); a cumulative p99 could never clear once a
    long run had piled up bad samples.
    """

    fix_parse: _BudgetUs = 15.0
    route: _BudgetUs = 80.0
    position_update: _BudgetUs = 25.0
    risk_publish: _BudgetUs = 80.0
    pretrade: _BudgetUs = 25.0
    reprice: _BudgetUs = 5000.0
    liquidation_decision: _BudgetUs = 200.0
    end_to_end: _BudgetUs = 500.0
    check_interval_s: Annotated[float, Meta(gt=0)] = 1.0
    min_samples: Annotated[int, Meta(ge=1)] = 100
    window_s: Annotated[float, Meta(gt=0)] = 60.0

    def __post_init__(self) -> None:
        # "<field>: " prefix: daemon.config_errors appends the field to the path.
        if self.window_s < self.check_interval_s:
            raise ValueError(f"window_s: must be >= check_interval_s ({self.check_interval_s}), "
                             f"found {self.window_s}")

    def budget_us(self, stage: str) -> float | None:
        """The p99 budget of ``stage`` in us, or None for a stage without one."""
        return getattr(self, stage) if stage in STAGES else None

    def as_dict(self) -> dict[str, float]:
        """Every stage's p99 budget in us, in pipeline order."""
        return {stage: getattr(self, stage) for stage in STAGES}


# --------------------------------------------------------------------------- results

class StageStats(msgspec.Struct, frozen=True, kw_only=True):
    """One stage at one snapshot. Latencies in microseconds (us).

    ``count``: samples since start or :meth:`StageRecorder.reset` (monotonic, merged
    samples included). ``window_count``: samples in the window the percentiles are
    computed over. ``p50_us``/``p99_us``/``p999_us``/``max_us``: over the window,
    NaN when it is empty. ``budget_us``: the stage's p99 budget (None if it has
    none). ``breached``: p99 above budget with at least ``min_samples`` in the
    window. ``anomalies``: values not recorded (negative or over 60 s) since start.
    """

    count: int
    window_count: int
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    budget_us: float | None
    breached: bool
    anomalies: int = 0
