"""The partial-liquidation planner's search on scenario-only books (risk.liquidation).

Lots are taken greedily by margin relief per unit of marginal cost, several at a
time. A step knows the next lot of every candidate (one trial per candidate: its
underlying's scenario P&L plus the lot times its risk array), picks the best,
then evaluates every further lot of that candidate at once and keeps taking them
while each still scores at least the runner-up's next lot. MM is convex in each
position (a maximum of linear functions) and the cost convex in the contracts
traded, so a candidate's lots score no better the more of it is cut: a run is
what lot-by-lot greedy would take while the runner-up stays behind. A run stops
one lot short of reaching the target; the next step then takes the cheapest
single lot that reaches it, whichever candidate it belongs to.

The prune pass (risk.liquidation_prune) gives lots back the same way, dearest
first: every taken candidate's last lot is tried at once, and the dearest one
that can go back (target still met) gives back as many lots as keep the target
met and are at least as dear as the other candidates' last lots that could go
back too.

Incremental. At these sizes the search is bound by the number of NumPy calls
(a microsecond or two each, whatever the size) and Python operations, not by
arithmetic. A move changes one candidate and one underlying, so a step
re-evaluates only that underlying's candidates (a :class:`Group`: two NumPy
calls over its scenarios x its candidates, the rest on Python floats up to
SMALL_GROUP candidates); the other groups keep their figures. What a
candidate's next lot (and, pruning, its last lot) does to the scenario P&L, the
short-option notional and the cost changes only when that candidate moves: it
is cached per candidate; per-candidate state lives in Python lists (single
values are several times dearer to read and write in NumPy arrays); the trial
P&L a run was priced on becomes the underlying's P&L when it is taken.

Every figure is computed with the same floating-point operations as a full
re-evaluation, and every choice breaks ties as ``argmax`` / ``argmin`` over all
candidates did (the lowest index), so the plans are those of the previous
planner, which re-evaluated every candidate at every step
(tests/liquidation_reference.py keeps it; tests/test_liquidation_planner_incremental.py
compares the two):

- relief = mm_factor x (term - max(-worst, 0, som x short)) is evaluated as
  mm_factor x min(term + min(worst, 0), term - som x short): the same number to
  the last bit (fl(t - x) is monotone in x; t - (-w) is t + w by definition), the
  0 coming from a zero row appended to each group's scenarios;
- a candidate that may not be cut (not allowed, or all cut) has -inf in that row,
  so its relief and score are -inf without a mask;
- a lot helps only if its relief > RELIEF_EPSILON: the best score and the
  runner-up are taken unmasked and taken again, masked, in the rare step where
  the one found does not help (:meth:`Greedy._best`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from risk.liquidation_groups import Group
from risk.liquidation_prune import Pruning

if TYPE_CHECKING:
    from risk.liquidation import LiquidationBook

#: Relief below this (currency of MM) is no relief: rounding must not buy a cut.
RELIEF_EPSILON = 1e-9
#: Lots of one candidate priced per step (a longer run goes on at the next step).
MAX_CURVE = 64
_INF = math.inf
_min = np.minimum.reduce


class Greedy(Pruning):
    """Search state: lots taken per candidate and the account's margin terms after them."""

    def __init__(self, book: LiquidationBook, target: float) -> None:
        self.book = book
        self.target = target
        n = len(book.rows)
        held = book.held.tolist()
        self._lots = [0] * n
        self._done = [0.0] * n  # contracts cut per candidate (unsigned)
        self._done_cost = [0.0] * n  # expected cost of them (currency)
        self._q = held  # signed contracts held after the cuts
        self._short_held = [-h if h < 0.0 else 0.0 for h in held]  # short contracts (options' minimum)
        #: Scenario P&L per underlying (currency) and a trailing 0 (see the module docstring):
        #: views of one copy; ``_head`` without the 0, ``_column`` as a column (for a group's refresh).
        pnl = book.pnl_padded.copy()
        self.pnl = [pnl[s] for s in book.padded_slices]
        self._head = [p[:-1] for p in self.pnl]
        self._column = [p[:, None] for p in self.pnl]
        self.short = book.short0.tolist()
        c = book.costs
        self.linear = book.unit * book.half_spread  # currency per contract
        self.quadratic = book.unit * (c.impact / 2.0)  # currency per contract^2
        self.floor = c.min_cost_per_contract
        self.mm_factor = book.mm_factor
        self.som = book.som
        self.terms = list(book.initial_terms)
        self.mm = book.initial_mm
        self.spent = 0.0
        self._lot, self._abs, self._sign = book.lot.tolist(), book.abs_held.tolist(), book.sign.tolist()
        self._linear, self._quadratic = self.linear.tolist(), self.quadratic.tolist()
        self._u, self._opt, self._max = book.underlying.tolist(), book.is_option.tolist(), book.max_lots.tolist()
        self._notional = book.option_notional.tolist()
        self._releases = book.has_options and bool(book.som)  # options' short minimum matters
        self._allowed = [True] * n
        self._allowed_mask = np.ones(n, dtype=bool)
        self._groups = [Group(u, idx, rows, block) for u, idx, rows, block in book.groups]
        self._group_of, self._slot = list(book.group_of), list(book.slot)  # candidate -> group, slot there
        self._dirty: set[int] = set()
        self._moved = False
        self._pruning = False
        self._saved: list[float] = []

    @property
    def lots(self) -> np.ndarray:
        """Lots cut per candidate (int64)."""
        return np.array(self._lots, dtype=np.int64)

    def ratio_met(self) -> bool:
        equity = self.book.equity - self.spent
        return self.mm <= 0.0 or (equity > 0.0 and self.mm / equity <= self.target)

    # ----- one candidate -----------------------------------------------------------------
    def _cost1(self, i: int, contracts: float) -> float:
        cost = contracts * (self._linear[i] + self._quadratic[i] * contracts)
        floor = self.floor * contracts
        return cost if cost > floor else floor

    def _move(self, i: int, lots: int, trial: np.ndarray | None = None, worst: float = 0.0) -> None:
        """Cut ``lots`` lots of candidate ``i`` in all (more or fewer than now), then
        cache what its next lot (pruning: its last lot) does. ``trial``: the scenario
        P&L after the cut as :meth:`_run_of` priced it (the same numbers), ``worst`` its minimum."""
        contracts = min(lots * self._lot[i], self._abs[i])
        change = self._sign[i] * (contracts - self._done[i])
        g, slot = self._group_of[i], self._slot[i]
        group = self._groups[g]
        u = group.u
        if trial is None:  # the zero row would stay 0 (0 + -0 is 0): left out
            pnl = self._head[u]
            pnl += change * group.block[slot]
            worst = float(_min(pnl)) if group.width else 0.0
        else:
            self._head[u][:] = trial
        q = self._q[i] = self._q[i] + change
        if self._opt[i]:
            short = max(-q, 0.0)
            self.short[u] += (short - self._short_held[i]) * self._notional[i]
            self._short_held[i] = short
        cost = self._cost1(i, contracts)
        self.spent += cost - self._done_cost[i]
        self._done_cost[i], self._done[i], self._lots[i] = cost, contracts, lots
        self.terms[u] = max(-worst, 0.0, self.som * self.short[u])
        self.mm = self.mm_factor * math.fsum(self.terms)
        self._dirty.add(g)
        self._moved = True
        if self._pruning:
            other = min((lots - 1) * self._lot[i], self._abs[i])
            moves, extras, blocked = group.back_move, group.back_extra, lots <= 0
            self._saved[i] = cost - self._cost1(i, other)
        else:
            other = min((lots + 1) * self._lot[i], self._abs[i])
            moves, extras = group.move, group.extra
            blocked = lots >= self._max[i] or not self._allowed[i]
            step = self._cost1(i, other) - cost
            group.cost[slot], group.target_cost[slot] = step, self.target * step
            group.floor_cost[slot] = step if step > 1e-12 else 1e-12
        if blocked:  # its figures are moot: the -inf row keeps it out
            moves[-1, slot] = -_INF
            return
        change = self._sign[i] * (other - contracts)
        np.multiply(group.rows[:, slot], change, out=moves[:, slot])
        moves[-1, slot] = 0.0
        if extras is not None:
            extras[slot] = ((-(q + change) if q + change < 0.0 else 0.0) - self._short_held[i]) * self._notional[i]

    def _shorts(self, i: int, change: list[float]) -> list[float]:
        """Short-option minimum (currency) of ``i``'s underlying with ``i`` moved by each of ``change``."""
        som, base = self.som, self.short[self._u[i]]
        if not self._opt[i]:
            return [som * base] * len(change)
        q, held, notional = self._q[i], self._short_held[i], self._notional[i]
        return [som * (base + ((-(q + c) if q + c < 0.0 else 0.0) - held) * notional) for c in change]

    def _trials(self, i: int, contracts: list[float]) -> tuple[np.ndarray, list[float], list[float]]:
        """(the scenario P&L of ``i``'s underlying with ``i`` cut to each of ``contracts``
        (one row each), its worst per row, the changes: signed contracts)."""
        done, sign = self._done[i], self._sign[i]
        change = [sign * (c - done) for c in contracts]
        group = self._groups[self._group_of[i]]
        if not group.width:
            return np.zeros((len(contracts), 0)), [0.0] * len(contracts), change
        trial = np.multiply(np.array(change)[:, None], group.block[self._slot[i]])  # outer product
        trial += self._head[group.u]
        return trial, _min(trial, axis=1).tolist(), change

    def _terms_at(self, i: int, contracts: list[float]) -> list[float]:
        """Scenario term (currency) of ``i``'s underlying with ``i`` cut to each of ``contracts``."""
        _, worst, change = self._trials(i, contracts)
        # max(-w, 0.0, s) as the builtin does it (the first of equals), without the call
        terms = [0.0 if 0.0 > -w else -w for w in worst]
        if not self._short_binds(i, change, min(terms)):
            return terms
        return [s if s > t else t for t, s in zip(terms, self._shorts(i, change))]

    def _short_binds(self, i: int, change: list[float], lowest: float) -> bool:
        """Whether the short-option minimum can exceed a scan term (the smallest: ``lowest``,
        currency) with ``i`` moved by ``change`` (monotone: a cut never flips a position, so
        the minimum moves one way along ``change``, and its largest value is at an end)."""
        if not self.som:
            return False
        ends = self._shorts(i, [change[0], change[-1]])
        return (ends[0] if ends[0] > ends[1] else ends[1]) > lowest

    def _run_of(self, i: int, runner: float, mm: float, equity: float) -> tuple[int, np.ndarray, list[float]]:
        """(the run of ``i``'s lots to take: those, from the current state, that each
        score at least ``runner`` and help, stopping one short of meeting the target
        (at least 1; at most ``MAX_CURVE``: a longer run goes on at the next step);
        the trial P&L and its worst per lot count, for :meth:`_move`). ``mm``, ``equity``:
        now (currency). Each lot's relief and cost are those of the cumulative curve
        (relief and cost of k lots from now), priced lot by lot until the run stops."""
        k0, lot, held = self._lots[i], self._lot[i], self._abs[i]
        contracts = [x if x < held else held for x in [(k0 + j) * lot for j in
                                                        range(1, min(self._max[i] - k0, MAX_CURVE) + 1)]]
        trial, worst, change = self._trials(i, contracts)
        term, mmf, target = self.terms[self._u[i]], self.mm_factor, self.target
        shorts = None
        som = self.som
        if som:  # can the short-option minimum exceed a scan term? (:meth:`_short_binds`, inline)
            top, base = max(worst), self.short[self._u[i]]
            if self._opt[i]:
                q, short_held, notional = self._q[i], self._short_held[i], self._notional[i]
                a, b = q + change[0], q + change[-1]
                a = som * (base + ((-a if a < 0.0 else 0.0) - short_held) * notional)
                b = som * (base + ((-b if b < 0.0 else 0.0) - short_held) * notional)
            else:
                a = b = som * base
            if (a if a > b else b) > (0.0 if 0.0 > -top else -top):
                shorts = self._shorts(i, change)
        lin, quad, floor, done_cost = self._linear[i], self._quadratic[i], self.floor, self._done_cost[i]
        taken, before_r, before_c = 0, 0.0, 0.0
        for k, w in enumerate(worst):
            # term after = max(-w, 0.0, s) as the builtin takes it (the first of equals), written out
            t = 0.0 if 0.0 > -w else -w
            if shorts is not None:
                s = shorts[k]
                t = s if s > t else t
            r = mmf * (term - t)
            c = contracts[k]
            x = c * (lin + quad * c)
            c = (x if x > floor * c else floor * c) - done_cost
            step_r, step_c = r - before_r, c - before_c
            if not (step_r > RELIEF_EPSILON and step_r >= runner * (step_c if step_c > 1e-12 else 1e-12)):
                break
            after = equity - c
            if after > 0.0 and mm - r <= target * after:
                break  # the lot that reaches the target: the next step takes the cheapest such
            taken, before_r, before_c = taken + 1, r, c
        return (taken if taken else 1), trial, worst

    # ----- every candidate -------------------------------------------------------------------
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lots, done, done cost, held, short held) per candidate as arrays."""
        if not self._moved:
            b = self.book
            zeros = np.zeros(len(self._lots))
            return np.zeros(len(self._lots), dtype=np.int64), zeros, zeros, b.held, np.maximum(-b.held, 0.0)
        return (np.array(self._lots, dtype=np.int64), np.array(self._done), np.array(self._done_cost),
                np.array(self._q), np.array(self._short_held))

    def _cost(self, contracts: np.ndarray) -> np.ndarray:
        """Expected cost (currency) of ``contracts`` (unsigned) of every candidate."""
        cost = contracts * (self.linear + self.quadratic * contracts)
        return np.maximum(cost, self.floor * contracts, out=cost)

    def _changes(self, lots: np.ndarray, done: np.ndarray, quantity: np.ndarray, short_held: np.ndarray,
                 blocked: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None, np.ndarray]:
        """(per group, its candidates' moves to ``lots`` lots cut in all, ``blocked`` ones
        with the -inf row; the short-option notional released, or None; the contracts cut)."""
        b = self.book
        contracts = np.minimum(lots * b.lot, b.abs_held)
        change = b.sign * (contracts - done)
        extra = None
        if self._releases:
            extra = np.maximum(-(quantity + change), 0.0)
            extra -= short_held
            extra *= b.option_notional
        moves = []
        last = np.where(blocked, -np.inf, 0.0)
        for group in self._groups:
            move = group.rows * change[group.idx]
            move[-1] = last[group.idx]
            moves.append(move)
        return moves, extra, contracts

    def _next_all(self) -> None:
        """Cache what every candidate's next lot does (see :class:`Group`); every group dirty."""
        b = self.book
        lots, done, done_cost, quantity, short_held = self._arrays()
        blocked = lots >= b.max_lots
        if not self._allowed_mask.all():
            blocked |= ~self._allowed_mask
        moves, extra, nxt = self._changes(lots + 1, done, quantity, short_held, blocked)
        cost = self._cost(nxt)
        cost -= done_cost
        floor_cost = np.maximum(cost, 1e-12).tolist()
        target_cost = (self.target * cost).tolist()
        cost = cost.tolist()
        for g, group in enumerate(self._groups):
            ids = group.ids
            group.move = moves[g]
            group.extra = None if extra is None else extra[group.idx]
            group.cost, group.target_cost = [cost[i] for i in ids], [target_cost[i] for i in ids]
            group.floor_cost = [floor_cost[i] for i in ids]
            self._dirty.add(g)

    def _best(self) -> tuple[int, float]:
        """(the best-scoring candidate whose next lot helps, or -1; the runner-up's score,
        -inf if none): as ``argmax`` over every candidate's masked score."""
        groups = self._groups
        best_g, best, best_score = -1, -1, -_INF
        for g, group in enumerate(groups):
            s = group.best_score
            if s > best_score or (s == best_score and s > -_INF and group.ids[group.best] < best):
                best_g, best, best_score = g, group.ids[group.best], s
        if best_g < 0:
            return -1, -_INF
        group = groups[best_g]
        slot = group.best
        if not group.relief[slot] > RELIEF_EPSILON:
            return self._best_masked()
        score = group.score
        score[slot] = -_INF
        runner = max(score)
        helps = runner == -_INF or group.relief[score.index(runner)] > RELIEF_EPSILON
        score[slot] = best_score
        for g, other in enumerate(groups):
            s = other.best_score
            if g != best_g and s > -_INF and s >= runner:
                # the runner-up's score helps if any candidate with that score helps
                helps = (helps and s == runner) or other.relief[other.best] > RELIEF_EPSILON
                runner = s
        if not helps:
            return self._best_masked()
        return best, runner

    def _best_masked(self) -> tuple[int, float]:
        """:meth:`_best` the slow way: scores masked to the lots that help."""
        scores = [-_INF] * len(self._lots)
        for group in self._groups:
            for i, r, s in zip(group.ids, group.relief, group.score):
                if r > RELIEF_EPSILON:
                    scores[i] = s
        top = max(scores, default=-_INF)
        if top == -_INF:
            return -1, -_INF
        best = scores.index(top)
        scores[best] = -_INF
        return best, max(scores)

    def _finishing(self, reach: float, equity: float) -> int:
        """The cheapest candidate whose next lot alone helps and meets the target
        (``relief - target x cost >= reach``, cost < equity), -1 if none; ties: lowest index."""
        pick, pick_cost = -1, _INF
        for group in self._groups:
            if group.top_relief < reach:  # relief - target x cost <= relief: none here
                continue
            for i, r, tc, c in zip(group.ids, group.relief, group.target_cost, group.cost):
                if r > RELIEF_EPSILON and r - tc >= reach and c < equity and (
                        c < pick_cost or (c == pick_cost and i < pick)):
                    pick, pick_cost = i, c
        return pick

    def _steps(self) -> int:
        # Every step moves at least one lot: more steps than lots is a bug, not a long search.
        return sum(self._max) + 2

    # ----- taking lots ------------------------------------------------------------------
    def run(self, allowed: np.ndarray) -> bool:
        """Take lots among ``allowed`` candidates until the target is met (True) or no lot helps.

        Each step knows every candidate's next lot exactly; the cheapest single lot
        that reaches the target wins, else the best score takes a run of lots.
        """
        self._allowed, self._allowed_mask = allowed.tolist(), allowed
        target = self.target
        if not self.ratio_met() and not allowed.any():
            return False
        if not self.ratio_met():
            self._next_all()
        steps = self._steps()
        # The hot loop: attribute lookups hoisted, refresh and the finishing pre-check inline.
        groups, dirty, lots, book_equity = self._groups, self._dirty, self._lots, self.book.equity
        finishing, best_of, run_of, move = self._finishing, self._best, self._run_of, self._move
        columns, terms, shorts, mmf, som = self._column, self.terms, self.short, self.mm_factor, self.som
        while True:
            mm, equity = self.mm, book_equity - self.spent
            if mm <= 0.0 or (equity > 0.0 and mm / equity <= target):
                return True
            steps -= 1
            if steps < 0:
                raise RuntimeError("liquidation planner: no progress (a step moved no lot)")
            for g in dirty:  # the underlying that moved: its candidates' next lots
                group = groups[g]
                u = group.u
                relief = group.relief = group.relief_of(group.move, group.extra, columns[u], terms[u], shorts[u],
                                                        mmf, som)
                score = group.score = [r / f for r, f in zip(relief, group.floor_cost)]
                best = group.best_score = max(score)
                group.best, group.top_relief = score.index(best), max(relief)
            dirty.clear()
            reach = mm - target * equity
            # relief - target x cost <= relief: no lot can finish unless some relief reaches
            for group in groups:
                if group.top_relief >= reach:
                    pick = finishing(reach, equity)
                    if pick >= 0:  # one lot reaches the target: the cheapest such
                        move(pick, lots[pick] + 1)
                    break
            else:
                pick = -1
            if pick >= 0:
                continue
            i, runner = best_of()
            if i < 0:
                return False
            taken, trial, worst = run_of(i, runner, mm, equity)
            move(i, lots[i] + taken, trial[taken - 1], worst[taken - 1])
