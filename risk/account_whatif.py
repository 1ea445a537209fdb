"""The pre-trade what-if of a VaR profile, and the per-model and per-account state it
reads, without building a trial reservation.

Split out of risk/account.py. Every figure is computed by the same IEEE operations,
on the same operands, as ``initial_margin(method_margins(model, exposure, profile,
trial))`` with ``trial`` = the account's reservation plus the order (the previous
implementation, kept as tests/reference_account_v0.py): bit-identical, tested. It
saves the trial's copies, the per-underlying terms the order does not touch (the
account keeps them, ``Account._terms_all``) and the array-module dispatch.

Money is in the account currency; quantities are signed contracts.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from risk.errors import RiskModelError
from risk.exposure import order_var, scan_risk
from risk.model import RiskModel
from risk.var import var_es_from_pnl

if TYPE_CHECKING:
    from risk.account import Account

_SUM = np.add.reduce
#: Every finite double is an integer multiple of 2**-1074.
_SHIFT = 1074
_SCALE = 1 << _SHIFT


class ExactSum:
    """A running sum of floats kept exactly (an integer in units of 2**-1074), so an
    add and a remove are O(1) and :meth:`value` is the correctly rounded sum of the
    values in it: equal to ``math.fsum`` of them (also correctly rounded), whatever
    their order. A non-finite value makes it :attr:`exact` False until cleared
    (callers then fall back to fsum of the values themselves)."""

    __slots__ = ("_acc", "_nonfinite")

    def __init__(self) -> None:
        self._acc = 0
        self._nonfinite = 0

    @property
    def exact(self) -> bool:
        return not self._nonfinite

    def add(self, value: float, sign: int = 1) -> None:
        """Add (sign=1) or remove (sign=-1) ``value``."""
        if value - value != 0.0:  # inf or NaN
            self._nonfinite += sign
            return
        n, d = value.as_integer_ratio()
        self._acc += sign * (n << (_SHIFT + 1 - d.bit_length()))

    def value(self, extra: float = 0.0) -> float:
        """The correctly rounded sum, plus ``extra`` (finite) exactly before rounding."""
        if extra:
            n, d = extra.as_integer_ratio()
            return (self._acc + (n << (_SHIFT + 1 - d.bit_length()))) / _SCALE
        return self._acc / _SCALE

    def clear(self) -> None:
        self._acc = 0
        self._nonfinite = 0


class ModelLists(NamedTuple):
    """Per-model constants of the per-order paths, as Python objects."""

    #: RiskModel.option_notional as Python floats (currency per short contract).
    option_notional: list[float]
    #: Historical VaR's tail size k for the model's day count and confidence (0: no history).
    tail_k: int


_LISTS: "weakref.WeakKeyDictionary[RiskModel, ModelLists]" = weakref.WeakKeyDictionary()


def model_lists(model: RiskModel) -> ModelLists:
    """The :class:`ModelLists` of ``model``, built once per model (accounts bind them at rebind)."""
    lists = _LISTS.get(model)
    if lists is None:
        n = model.n_history
        c = model.params.var.confidence
        # As risk.var.var_es_from_pnl: (1 - c) n rounded to 9 decimals, at least 1.
        k = max(1, math.ceil(round((1.0 - c) * n, 9))) if n and 0.0 < c < 1.0 else 0
        lists = _LISTS[model] = ModelLists(model.option_notional.tolist(), k)
    return lists


class VarTrial(NamedTuple):
    """What a VaR what-if computed that reserving the same order reuses (all currency).

    ``pnl``: scenario P&L of underlying ``u`` with the order, = positions + (reservation
    + order) as the reservation will sum it (None without the scenario method);
    ``scan`` and ``short``: its scan risk and short-option notional; ``history_loss``:
    minus the order's worst-case historical P&L (None when not tracked); ``var``: the
    order's stand-alone VaR; ``orders_var``: the open orders' VaRs with it, summed (=
    the reservation's var once it is reserved); ``after``: IM with orders after it."""

    pnl: np.ndarray | None
    scan: float
    short: float
    history_loss: np.ndarray | None
    var: float
    orders_var: float
    after: float


def var_what_if(account: "Account", u: int, row: int, quantity: float, x: np.ndarray) -> VarTrial:
    """IM with open orders after one more order (``quantity`` of ``row``, underlying
    ``u``; ``x`` = quantity x its worst-case scenario row), for a profile with VaR."""
    model, profile, exposure, reserve = account.model, account.profile, account._exposure, account._reserve
    methods = profile.methods
    rate = profile.short_option_minimum
    short_u = account._short_all[u]
    if quantity < 0:
        # = exposure + (reservation + order), the order the reservation sums it in.
        short_u = exposure.short_list[u] + (reserve.short_notional[u] +
                                            -quantity * account._lists.option_notional[row])
    # Order VaR first: it raises what parametric VaR raises, where the trial did.
    var = 0.0
    if account._uses_var:  # = order_var(model, row, quantity), its cache read inline
        unit = model.unit_order_var.get(row if quantity > 0 else -1 - row)
        var = abs(quantity) * unit if unit is not None else order_var(model, row, quantity)
    shorts = list(account._short_all)
    shorts[u] = short_u
    values: list[float] = []
    pnl, scan = None, 0.0
    if "scenario" in methods:
        pnl = x + account._reserve_views[u]
        pnl += account._exposure_views[u]
        worst = pnl.item(pnl.argmin()) if pnl.size else 0.0  # = min, as risk.exposure.scan_risk
        if worst != worst:
            scan_risk(pnl)  # raises
        scan = -worst if worst < 0.0 else 0.0  # = scan_risk(pnl)
        terms = list(account._terms_all)
        terms[u] = max(scan, rate * short_u)
        scen = math.fsum(terms)
        if scen != scen:  # a term left NaN by a failed refresh: fail as the recomputation would
            raise RiskModelError("scenario P&L is NaN: a price, vol or scenario produced no value")
        values.append(scen)
    orders_var = 0.0
    if account._uses_var:
        total = account._var_sum
        if not total._nonfinite and var - var == 0.0:  # = account._orders_var(var), inline
            n, d = var.as_integer_ratio()
            orders_var = (total._acc + (n << (_SHIFT + 1 - d.bit_length()))) / _SCALE
        else:
            orders_var = account._orders_var(var)
    if "parametric_var" in methods:
        cached = exposure._pvar  # = exposure.parametric_var(model), its cache read inline
        pvar = cached[1] if cached is not None and cached[0] is model else exposure.parametric_var(model)
        values.append(pvar + orders_var)
    loss = None
    if account._uses_history:
        if model.historical_rows is None:
            raise RiskModelError("historical_var needs a price history (none configured)")
        days = model.historical_loss_if_bought if quantity > 0 else model.historical_loss_if_sold
        loss = (-quantity) * days[row]  # type: ignore[index]
    if "historical_var" in methods:
        if loss is None:
            raise RiskModelError("historical_var needs a price history (none configured)")
        # Losses = -(positions + (reservation + order)): negation is exact, so this is
        # the negated P&L var_es_from_pnl partitions, bit for bit.
        losses = loss - reserve.historical
        losses -= exposure.historical
        k = account._lists.tail_k
        total_loss = float(_SUM(losses))
        if k and total_loss - total_loss == 0.0:  # = _historical_var(model, losses, k), inline
            n_days = losses.shape[0]
            losses.partition(n_days - k)
            values.append(max(float(losses[n_days - k]), 0.0))
        else:
            values.append(_historical_var(model, losses, k))
    after = max(values) if values else math.nan
    # The short-option minimum floors IM (as risk.exposure.initial_margin): rate x the
    # NumPy sum of the short notionals, within a few ulps of sum |notional| of the
    # exact sum: it can only bind when rate x that (1e-12 over) reaches the rest.
    bound = abs(rate) * math.fsum(map(abs, shorts)) * (1.0 + 1e-12)
    if not bound < after:  # also when a figure is NaN or there is no method at all
        after = max(values + [float(rate * _SUM(shorts))])
    return VarTrial(pnl, scan, short_u, loss, var, orders_var, after)


def _historical_var(model: RiskModel, losses: np.ndarray, k: int) -> float:
    """risk.var.var_es_from_pnl(-losses)[0] (currency), with its NumPy operations."""
    total = float(_SUM(losses))
    if not k or total - total != 0.0:  # a non-finite loss (or an overflow): let it judge
        return float(var_es_from_pnl(-losses, model.params.var.confidence)[0])
    n = losses.shape[0]
    # In place (``losses`` is the caller's scratch): np.partition is a copy, then this.
    losses.partition(n - k)
    return max(float(losses[n - k]), 0.0)
