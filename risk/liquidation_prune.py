"""The planner's prune pass (risk.liquidation_greedy): give back every lot the plan can do without.

Dearest first: every cut candidate's last lot is tried at once, and the dearest
one that can go back (target still met) gives back as many lots as keep the
target met and are at least as dear as the other candidates' last lots that
could go back too. Ties: the lowest candidate index, as before.

Only the cut candidates can give lots back, so the pass works on groups of
those alone (:meth:`risk.liquidation_groups.Group.subset`: the same risk arrays,
a few columns), and their last lots are set up one by one on Python floats (a
handful of candidates: cheaper than NumPy over every candidate) with the same
IEEE operations as :meth:`Greedy._move` uses for them afterwards.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from risk.liquidation_greedy import Greedy

_INF = math.inf


class Pruning:
    """The prune pass of :class:`risk.liquidation_greedy.Greedy` (a base class: it
    works on the search's own state)."""

    def _back_groups(self: Greedy, cut: list[int]) -> None:
        """Groups of the ``cut`` candidates only (ascending), each with what giving
        back its last lot does; the search's groups and slots now point at them."""
        members: dict[int, list[int]] = {}
        for i in cut:
            members.setdefault(self._group_of[i], []).append(i)
        lots, lot, held, done, sign = self._lots, self._lot, self._abs, self._done, self._sign
        q, short_held, notional = self._q, self._short_held, self._notional
        releases = self._releases
        groups = []
        saved = self._saved = [0.0] * len(lots)
        for g, ids in sorted(members.items()):
            slots = [self._slot[i] for i in ids]
            group = self._groups[g].subset(slots, ids)
            changes, extras = [], []
            for slot, i in enumerate(ids):
                self._group_of[i], self._slot[i] = len(groups), slot
                fewer = min((lots[i] - 1) * lot[i], held[i])
                change = sign[i] * (fewer - done[i])
                changes.append(change)
                saved[i] = self._done_cost[i] - self._cost1(i, fewer)
                if releases:
                    after = q[i] + change
                    extras.append(((-after if after < 0.0 else 0.0) - short_held[i]) * notional[i])
            move = group.rows * np.array(changes)
            move[-1] = 0.0  # every one has a lot to give back
            group.back_move = move
            group.back_extra = np.array(extras) if releases else None
            groups.append(group)
        self._groups = groups
        self._dirty.clear()
        self._dirty.update(range(len(groups)))

    def prune(self: Greedy) -> None:
        """Give back every lot the plan can do without, dearest (by marginal cost) first."""
        self._pruning = True
        cut = [i for i, k in enumerate(self._lots) if k]
        self._back_groups(cut)
        target, lots, saved_of, groups = self.target, self._lots, self._saved, self._groups
        columns, terms, shorts, mmf, som = self._column, self.terms, self.short, self.mm_factor, self.som
        where = [(i, groups[self._group_of[i]], self._slot[i]) for i in cut]
        steps = self._steps()
        while True:
            steps -= 1
            if steps < 0:
                raise RuntimeError("liquidation planner: no progress (a prune step gave back no lot)")
            for g in self._dirty:
                group = groups[g]
                u = group.u
                group.back_relief = group.relief_of(group.back_move, group.back_extra, columns[u], terms[u],
                                                    shorts[u], mmf, som)
            self._dirty.clear()
            base = self.book.equity - self.spent
            now = self.mm
            best, best_saved, runner = -1, -_INF, -_INF
            for i, group, slot in where:  # can i's last lot go back? dearest first
                saved = saved_of[i]
                mm = now - group.back_relief[slot]
                equity = base + saved
                if not (mm <= 0.0 or (equity > 0.0 and mm / equity <= target)):
                    continue
                if saved > best_saved:
                    best, best_saved, runner = i, saved, best_saved
                elif saved > runner:
                    runner = saved
            if best < 0:
                return
            self._move(best, lots[best] - self._give_back(best, runner))
            if not lots[best]:
                where = [w for w in where if w[0] != best]

    def _give_back(self: Greedy, i: int, runner: float) -> int:
        """Lots of ``i`` to give back (>= 1, the first is known to keep the target met):
        while the target stays met and each is at least as dear as ``runner``."""
        k0 = self._lots[i]
        if k0 <= 1:
            return 1
        lot, held = self._lot[i], self._abs[i]
        contracts = [x if x < held else held for x in [k * lot for k in range(k0 - 1, -1, -1)]]
        others = self.mm - self.mm_factor * self.terms[self._u[i]]
        equity = self.book.equity - self.spent + self._done_cost[i]
        target, mmf = self.target, self.mm_factor
        lin, quad, floor = self._linear[i], self._quadratic[i], self.floor
        given, previous = 0, self._done_cost[i]
        for c, term in zip(contracts, self._terms_at(i, contracts)):
            cost = c * (lin + quad * c)
            if not cost > floor * c:
                cost = floor * c
            mm, eq = others + mmf * term, equity - cost
            if not (mm <= 0.0 or (eq > 0.0 and mm / eq <= target)) or previous - cost < runner:
                break
            given, previous = given + 1, cost
        return max(given, 1)
