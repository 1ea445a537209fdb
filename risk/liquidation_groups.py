"""The planner's candidates of one underlying (risk.liquidation_greedy): what a step re-evaluates."""

from __future__ import annotations

import math

import numpy as np

_INF = math.inf


class Group:
    """The candidates of underlying ``u``: ``idx`` their indices (ascending) and
    ``rows`` their risk arrays, scenario-major (its ``width`` scenarios plus a zero
    row x the candidates, so a minimum over scenarios runs along contiguous rows).

    Per candidate, for its next lot (``Greedy._next_all``): ``move`` (the lot's
    scenario P&L; the zero row -inf when it may not be cut), ``extra``
    (short-option notional released; only with a short-option minimum), ``cost``
    (currency, a list), ``floor_cost`` (floored at 1e-12: the score's divisor) and
    ``target_cost`` (target x cost, a list). After each step's refresh
    (``Greedy.run``): ``relief`` (MM relief, currency, unmasked) and ``score``, the
    group's ``best`` slot, ``best_score`` and ``top_relief``. ``back_*``: giving
    the last lot back (prune pass).
    """

    __slots__ = ("u", "idx", "ids", "width", "rows", "move", "buffer", "extra", "cost", "floor_cost",
                 "target_cost", "relief", "score", "best", "best_score", "top_relief", "back_move",
                 "back_extra", "back_relief")

    def __init__(self, u: int, idx: np.ndarray, rows: np.ndarray) -> None:
        self.u, self.idx, self.ids, self.rows = u, idx, idx.tolist(), rows
        self.width = rows.shape[0] - 1
        self.buffer = np.empty_like(rows)
        self.best, self.best_score, self.top_relief = 0, -_INF, -_INF
        self.extra: np.ndarray | None = None
        self.back_extra: np.ndarray | None = None
        self.back_relief: list[float] = []
