"""The partial-liquidation planner's search on scenario-only books (risk.liquidation).

Lots are taken greedily by margin relief per unit of marginal cost, several at a
time. A step evaluates the next lot of every candidate at once (one trial per
candidate: its underlying's scenario P&L plus the lot times its risk array, a
few NumPy calls over candidates x scenarios), picks the best, then evaluates
every further lot of that candidate at once and keeps taking them while each
still scores at least the runner-up's next lot. MM is convex in each position
(a maximum of linear functions) and the cost convex in the contracts traded, so
a candidate's lots score no better the more of it is cut: a run is what
lot-by-lot greedy would take while the runner-up stays behind. A run stops one
lot short of reaching the target; the next step then takes the cheapest single
lot that reaches it, whichever candidate it belongs to.

The prune pass gives lots back the same way, dearest first: every taken
candidate's last lot is tried at once, and the dearest one that can go back
(target still met) gives back as many lots as keep the target met and are at
least as dear as the other candidates' last lots that could go back too.

Only the underlying of the candidate that moved changes, so the state is kept
incrementally: the scenario P&L vector, the short-option notional and the
scenario term per underlying (currency), MM and the expected cost spent.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from risk.liquidation import LiquidationBook

#: Relief below this (currency of MM) is no relief: rounding must not buy a cut.
RELIEF_EPSILON = 1e-9
#: Lots of one candidate priced per step (a longer run goes on at the next step).
MAX_CURVE = 64


def ratio_ok(mm: np.ndarray, equity: np.ndarray, target: float) -> np.ndarray:
    """Element-wise ``risk.tiers.margin_ratio(mm, equity) <= target`` (fractions)."""
    positive = equity > 0.0
    ratio = mm / np.where(positive, equity, 1.0)
    return (mm <= 0.0) | (positive & (ratio <= target))


class Greedy:
    """Search state: lots taken per candidate and the account's margin terms after them."""

    def __init__(self, book: LiquidationBook, target: float) -> None:
        self.book = book
        self.target = target
        n = len(book.rows)
        self.lots = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n)  # contracts cut per candidate (unsigned)
        self.done_cost = np.zeros(n)  # expected cost of them (currency)
        self.quantity = book.held.copy()
        self.short_held = np.maximum(-book.held, 0.0)  # short contracts (options' minimum)
        self.pnl = np.append(book.pnl0, np.inf)  # the last column pads short underlyings
        self.short = book.short0.astype(float).copy()
        c = book.costs
        self.linear = book.unit * book.half_spread  # currency per contract
        self.quadratic = book.unit * (c.impact / 2.0)  # currency per contract^2
        self.floor = c.min_cost_per_contract
        self.mm_factor = book.mm_factor
        self.terms = np.array(book.initial_terms)
        self.mm = book.initial_mm
        self.spent = 0.0
        # Per-candidate constants as Python floats: a run is priced lot by lot in Python.
        self._lot, self._abs, self._sign = book.lot.tolist(), book.abs_held.tolist(), book.sign.tolist()
        self._linear, self._quadratic = self.linear.tolist(), self.quadratic.tolist()
        self._u, self._opt, self._max = book.underlying.tolist(), book.is_option.tolist(), book.max_lots.tolist()
        self._notional = book.option_notional.tolist()
        self._row = book.own_row
        self._allowed = np.ones(n, dtype=bool)

    def _term(self, u: int) -> float:
        b = self.book
        worst = float(self.pnl[b.column_slices[u]].min()) if b.column_slices[u].stop > b.column_slices[u].start \
            else 0.0
        return max(-worst, 0.0, b.som * float(self.short[u]))

    def _cost(self, idx: np.ndarray | slice | int, contracts: np.ndarray) -> np.ndarray:
        cost = contracts * (self.linear[idx] + self.quadratic[idx] * contracts)
        return np.maximum(cost, self.floor * contracts)

    def _relief(self, idx: np.ndarray | slice, contracts: np.ndarray) -> np.ndarray:
        """MM relief (currency) of moving candidate ``idx[j]`` to ``contracts[j]`` cut, alone."""
        b = self.book
        change = b.sign[idx] * (contracts - self.done[idx])
        pnl = self.pnl[b.gather[idx]]
        pnl += change[:, None] * b.compact[idx]
        term = pnl.min(axis=1)
        np.negative(term, out=term)
        np.maximum(term, 0.0, out=term)
        u = b.underlying[idx]
        short = self.short[u]
        if b.has_options:
            extra = np.maximum(-(self.quantity[idx] + change), 0.0)
            extra -= self.short_held[idx]
            extra *= b.option_notional[idx]
            short = short + extra
        np.maximum(term, b.som * short, out=term)
        relief = self.terms[u] - term
        relief *= self.mm_factor
        return relief

    def _move(self, i: int, lots: int) -> None:
        """Cut ``lots`` lots of candidate ``i`` in all (more or fewer than now)."""
        b = self.book
        contracts = min(lots * self._lot[i], self._abs[i])
        change = self._sign[i] * (contracts - float(self.done[i]))
        u = self._u[i]
        self.pnl[b.column_slices[u]] += change * self._row[i]
        self.quantity[i] += change
        if self._opt[i]:
            short = max(-float(self.quantity[i]), 0.0)
            self.short[u] += (short - float(self.short_held[i])) * self._notional[i]
            self.short_held[i] = short
        cost = self._cost1(i, contracts)
        self.spent += cost - float(self.done_cost[i])
        self.done_cost[i], self.done[i], self.lots[i] = cost, contracts, lots
        self.terms[u] = self._term(u)
        self.mm = self.mm_factor * math.fsum(self.terms.tolist())

    def _cost1(self, i: int, contracts: float) -> float:
        cost = contracts * (self._linear[i] + self._quadratic[i] * contracts)
        floor = self.floor * contracts
        return cost if cost > floor else floor

    def _terms_at(self, i: int, contracts: list[float]) -> list[float]:
        """Scenario term (currency) of ``i``'s underlying with ``i`` cut to each of ``contracts``."""
        b = self.book
        u = self._u[i]
        change = np.array(contracts)
        change -= float(self.done[i])
        change *= self._sign[i]
        pnl = np.multiply.outer(change, self._row[i])
        pnl += self.pnl[b.column_slices[u]]
        worst = pnl.min(axis=1).tolist() if pnl.shape[1] else [0.0] * len(contracts)
        som = b.som
        if self._opt[i]:
            q, held, notional = float(self.quantity[i]), float(self.short_held[i]), self._notional[i]
            base = float(self.short[u])
            shorts = [som * (base + (max(-(q + c), 0.0) - held) * notional) for c in change.tolist()]
        else:
            shorts = [som * float(self.short[u])] * len(contracts)
        return [max(-w, 0.0, s) for w, s in zip(worst, shorts)]

    def _curve(self, i: int) -> tuple[list[float], list[float]]:
        """Cumulative (relief, cost) of each further lot of ``i`` from the current state
        (currency; at most ``MAX_CURVE`` lots: a longer run goes on at the next step)."""
        k0 = int(self.lots[i])
        lot, held = self._lot[i], self._abs[i]
        contracts = [min((k0 + j) * lot, held) for j in range(1, min(self._max[i] - k0, MAX_CURVE) + 1)]
        term = float(self.terms[self._u[i]])
        mmf = self.mm_factor
        relief = [mmf * (term - t) for t in self._terms_at(i, contracts)]
        done_cost = float(self.done_cost[i])
        return relief, [self._cost1(i, c) - done_cost for c in contracts]

    def ratio_met(self) -> bool:
        equity = self.book.equity - self.spent
        return self.mm <= 0.0 or (equity > 0.0 and self.mm / equity <= self.target)

    # ----- taking lots ------------------------------------------------------------------
    def _refresh(self) -> None:
        """Exact (relief, cost) of every candidate's next lot, its score and finishing margin."""
        b = self.book
        nxt = (self.lots + 1) * b.lot
        np.minimum(nxt, b.abs_held, out=nxt)
        relief = self._relief(slice(None), nxt)
        cost = self._cost(slice(None), nxt)
        cost -= self.done_cost
        self.relief, self.cost = relief, cost
        good = self._allowed & (self.lots < b.max_lots) & (relief > RELIEF_EPSILON)
        self.score = np.where(good, relief / np.maximum(cost, 1e-12), -np.inf)
        self.margin = np.where(good, relief - self.target * cost, -np.inf)

    def run(self, allowed: np.ndarray) -> bool:
        """Take lots among ``allowed`` candidates until the target is met (True) or no lot helps.

        Each step re-evaluates every candidate's next lot exactly; the cheapest single
        lot that reaches the target wins, else the best score takes a run of lots.
        """
        self._allowed = allowed
        target = self.target
        if not self.ratio_met() and not allowed.any():
            return False
        while not self.ratio_met():
            self._refresh()
            equity = self.book.equity - self.spent
            near = (self.margin >= self.mm - target * equity) & (self.cost < equity)
            if near.any():  # one lot reaches the target: the cheapest such
                pick = int(np.argmin(np.where(near, self.cost, np.inf)))
                self._move(pick, int(self.lots[pick]) + 1)
                continue
            i = int(self.score.argmax())
            if self.score[i] == -np.inf:
                return False
            self.score[i] = -np.inf
            runner = float(self.score.max())
            relief, cost = self._curve(i)
            taken, before_r, before_c = 0, 0.0, 0.0
            for r, c in zip(relief, cost):
                step_r, step_c = r - before_r, c - before_c
                if not (step_r > RELIEF_EPSILON and step_r >= runner * max(step_c, 1e-12)):
                    break
                after = equity - c
                if after > 0.0 and self.mm - r <= target * after:
                    break  # the lot that reaches the target: the next step takes the cheapest such
                taken, before_r, before_c = taken + 1, r, c
            self._move(i, int(self.lots[i]) + max(taken, 1))
        return True

    # ----- giving lots back ------------------------------------------------------------
    def prune(self) -> None:
        """Give back every lot the plan can do without, dearest (by marginal cost) first."""
        b = self.book
        while True:
            taken = np.flatnonzero(self.lots)
            if not taken.size:
                return
            fewer = np.minimum((self.lots[taken] - 1) * b.lot[taken], b.abs_held[taken])
            saved = self.done_cost[taken] - self._cost(taken, fewer)
            ok = ratio_ok(self.mm - self._relief(taken, fewer), b.equity - self.spent + saved, self.target)
            if not ok.any():
                return
            dearest = np.where(ok, saved, -np.inf)
            j = int(np.argmax(dearest))
            dearest[j] = -np.inf
            i = int(taken[j])
            self._move(i, int(self.lots[i]) - self._give_back(i, float(dearest.max())))

    def _give_back(self, i: int, runner: float) -> int:
        """Lots of ``i`` to give back (>= 1, the first is known to keep the target met):
        while the target stays met and each is at least as dear as ``runner``."""
        k0 = int(self.lots[i])
        if k0 <= 1:
            return 1
        lot, held = self._lot[i], self._abs[i]
        contracts = [min(k * lot, held) for k in range(k0 - 1, -1, -1)]
        u = self._u[i]
        others = self.mm - self.mm_factor * float(self.terms[u])
        equity = self.book.equity - self.spent + float(self.done_cost[i])
        target = self.target
        given, previous = 0, float(self.done_cost[i])
        for c, term in zip(contracts, self._terms_at(i, contracts)):
            cost = self._cost1(i, c)
            mm, eq = others + self.mm_factor * term, equity - cost
            if not (mm <= 0.0 or (eq > 0.0 and mm / eq <= target)) or previous - cost < runner:
                break
            given, previous = given + 1, cost
        return max(given, 1)
