"""The planner's candidates of one underlying (risk.liquidation_greedy): what a step re-evaluates."""

from __future__ import annotations

import math

import numpy as np

_INF = math.inf
_min = np.minimum.reduce
#: Groups up to this many candidates finish their relief and scores on Python floats
#: (cheaper than four more NumPy calls at this size; the same IEEE operations).
SMALL_GROUP = 64


class Group:
    """The candidates of underlying ``u``: ``idx`` their indices (ascending) and
    ``rows`` their risk arrays, scenario-major (its ``width`` scenarios plus a zero
    row x the candidates, so a minimum over scenarios runs along contiguous rows);
    ``block`` the same arrays candidate-major (``block[slot]``: one candidate's
    scenarios, contiguous, for pricing its run).

    Per candidate, for its next lot (``Greedy._next_all``): ``move`` (the lot's
    scenario P&L; the zero row -inf when it may not be cut), ``extra``
    (short-option notional released; only with a short-option minimum), ``cost``
    (currency, a list), ``floor_cost`` (floored at 1e-12: the score's divisor) and
    ``target_cost`` (target x cost, a list). After each step's refresh
    (``Greedy.run``): ``relief`` (MM relief, currency, unmasked) and ``score``, the
    group's ``best`` slot, ``best_score`` and ``top_relief``. ``back_*``: giving
    the last lot back (prune pass, on a group of the cut candidates only).
    """

    __slots__ = ("u", "idx", "ids", "width", "rows", "block", "move", "buffer", "extra", "cost", "floor_cost",
                 "target_cost", "relief", "score", "best", "best_score", "top_relief", "back_move",
                 "back_extra", "back_relief")

    def __init__(self, u: int, idx: np.ndarray, rows: np.ndarray, block: np.ndarray) -> None:
        self.u, self.idx, self.ids, self.rows, self.block = u, idx, idx.tolist(), rows, block
        self.width = rows.shape[0] - 1
        self.buffer = np.empty_like(rows)
        self.best, self.best_score, self.top_relief = 0, -_INF, -_INF
        self.extra: np.ndarray | None = None
        self.back_extra: np.ndarray | None = None
        self.back_relief: list[float] = []

    def subset(self, slots: list[int], ids: list[int]) -> Group:
        """The group of the candidates in ``slots`` (their indices ``ids``, ascending)."""
        return Group(self.u, np.array(ids, dtype=np.int64), self.rows[:, slots], self.block[slots])

    def relief_of(self, move: np.ndarray, extra: np.ndarray | None, pnl_column: np.ndarray, term: float,
                  short: float, mmf: float, som: float) -> list[float]:
        """MM relief (currency) of each candidate moving by ``move`` alone, on the
        underlying's scenario P&L ``pnl_column`` (its zero row included, as a column),
        scenario term ``term`` and short-option notional ``short``:
        mm_factor x min(term + min(worst, 0), term - som x short) (risk.liquidation_greedy).
        Small groups finish on Python floats (fewer NumPy calls; the same IEEE operations)."""
        relief = _min(np.add(move, pnl_column, out=self.buffer), axis=0)  # min(worst, 0); -inf: blocked
        if len(self.ids) <= SMALL_GROUP:
            worst = relief.tolist()
            if som:
                extras = extra.tolist() if extra is not None else None
                # The short-option minimum caps no candidate when the largest term + worst is
                # under the smallest cap (fl(t - som x (s + e)) falls as e grows: the cap at
                # the largest e): the usual case, one comparison instead of two passes.
                if max(worst) + term > term - som * (short + (max(extras) if extras else 0.0)):
                    caps = [term - som * (short + e) for e in extras] if extras is not None else \
                        [term - som * short] * len(worst)
                    return [(a if a <= b else b) * mmf for a, b in zip([w + term for w in worst], caps)]
            return [(w + term) * mmf for w in worst]
        relief += term
        if som:
            np.minimum(relief, term - som * (short + extra) if extra is not None else term - som * short, out=relief)
        relief *= mmf
        return relief.tolist()
