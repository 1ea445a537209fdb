"""Host side of the risk filter: an account and an order -> the filter's integer record.

The host reads the account's state (risk.account.Account, scenario-only margin
profiles) and the order, quantizes every figure to the record formats of
:mod:`fpga_overlay.risk_filter` and refuses (ValueError naming the field and the
value) what the filter cannot represent: the caller then decides in software,
so nothing is ever decided on a clipped figure (fail closed).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from fpga_overlay import risk_filter as rf
from risk.account import Account


class FilterLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The static limits the filter applies (0 = off), named and in the units of
    actors.pretrade_config.PretradeLimits: contracts, currency, a fraction."""

    max_order_qty: float = 0.0
    max_order_notional: float = 0.0
    price_collar: float = 0.0
    max_position_instrument: float = 0.0
    max_position_underlying: float = 0.0


class FilterDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The filter's answer (what ``RiskFilterDriver.check`` returns): ``reason`` a
    FilterReason code; ``im_after`` currency (IM after the order, meaningful when the
    margin check was reached); ``cycles``: clock cycles from ap_start to ap_done as
    counted by the IP."""

    accepted: bool
    reason: str
    im_after: float
    cycles: int


class KillFlags(msgspec.Struct, frozen=True, kw_only=True):
    """Kill switches engaged for this order: global, its account, its underlying."""

    global_: bool = False
    account: bool = False
    underlying: bool = False


def _fx(name: str, value: float, frac: int) -> int:
    """``value`` in the field's format (round to nearest); ValueError if it does not fit."""
    if not math.isfinite(value):
        raise ValueError(f"risk filter field {name}: {value!r} is not finite")
    raw = round(value * (1 << frac))
    lo, hi = rf.field_range(name)
    if not lo <= raw <= hi:
        raise ValueError(f"risk filter field {name}: {value!r} is outside the format's range"
                         f" [{lo / (1 << frac):g}, {hi / (1 << frac):g}]")
    return raw


_C_KEYS = tuple(f"c{s}" for s in range(rf.S))
_A_KEYS = tuple(f"a{s}" for s in range(rf.S))
#: Scaled lane values below this magnitude convert to int64 exactly (checked per lane above it).
_EXACT = 2.0 ** 62


def _fx_lanes(keys: tuple[str, ...], values: np.ndarray, frac: int) -> list[int]:
    """:func:`_fx` of every lane at once (the S scenario lanes are most of a record):
    ``np.rint`` rounds half to even like ``round``, and scaling by 2**frac is exact,
    so the integers are :func:`_fx`'s; anything unusual goes through :func:`_fx`
    itself (its ValueError names the lane)."""
    scaled = np.asarray(values, dtype=float) * float(1 << frac)
    lo, hi = rf.field_range(keys[0])
    if np.isfinite(scaled).all() and (np.abs(scaled) < _EXACT).all():
        ints = np.rint(scaled).astype(np.int64)
        if not len(ints) or (int(ints.min()) >= lo and int(ints.max()) <= hi):
            return ints.tolist()
    return [_fx(key, float(v), frac) for key, v in zip(keys, values)]


def supported(account: Account) -> str:
    """"" if the filter can judge this account's orders, else why not."""
    if account.profile.methods != ("scenario",):
        return f"margin profile methods {account.profile.methods} (the filter has the scenario method only)"
    return ""


def order_fields(account: Account, row: int, quantity: float, price: float, limits: FilterLimits,
                 kills: KillFlags, im_tolerance: float, max_utilization: float | None = None) -> dict[str, int]:
    """The filter's record for an order of ``quantity`` signed contracts of table ``row``
    at ``price`` (per unit) by ``account``. ``im_tolerance``: currency (the hook's
    setting). ValueError when a figure does not fit its field or the account's
    profile is not scenario-only."""
    why = supported(account)
    if why:
        raise ValueError(f"risk filter: account {account.id}: {why}")
    model = account.model
    table = model.table
    u = int(model.block_of[row])
    pnl, term, short = account.scenario_with_orders(u)
    if len(pnl) > rf.S:
        raise ValueError(f"risk filter: underlying {table.underlying_ids[u]} has {len(pnl)} scenarios > S = {rf.S}")
    risk = model.scenario_rows[row]
    out: dict[str, int] = {"kill_g": int(kills.global_), "kill_a": int(kills.account),
                           "kill_u": int(kills.underlying)}
    out["q"] = _fx("q", quantity, rf.QTY_FRAC)
    out["price"] = _fx("price", price, rf.PRICE_FRAC)
    mark = float(model.valuation.mark[row])
    out["ref"] = _fx("ref", mark, rf.PRICE_FRAC) if mark > 0.0 and math.isfinite(mark) else 0
    out["mult"] = _fx("mult", float(table.multiplier[row]), rf.MULT_FRAC)
    for key, name, value, frac in (("en_qty", "lim_qty", limits.max_order_qty, rf.QTY_FRAC),
                                   ("en_notional", "lim_notional", limits.max_order_notional, rf.MONEY_FRAC),
                                   ("en_collar", "collar", limits.price_collar, rf.COLLAR_FRAC),
                                   ("en_pos_i", "lim_pos_i", limits.max_position_instrument, rf.QTY_FRAC),
                                   ("en_pos_u", "lim_pos_u", limits.max_position_underlying, rf.QTY_FRAC)):
        out[key] = int(bool(value))
        out[name] = _fx(name, value, frac)
    # held, open buys and open sells per row of the underlying (actors.pretrade_limits' view)
    rows = {int(r) for r in model.blocks[u].rows}
    sides: dict[int, list[float]] = {}
    for r, pos in account.positions.items():
        if r in rows:
            sides[r] = [pos.quantity, 0.0, 0.0]
    for order in account.orders.values():
        if order.row in rows:
            entry = sides.setdefault(order.row, [0.0, 0.0, 0.0])
            entry[1 if order.quantity > 0 else 2] += order.quantity
    held, buys, sells = sides.pop(row, [0.0, 0.0, 0.0])
    out["held"] = _fx("held", held, rf.QTY_FRAC)
    out["buys"] = _fx("buys", buys, rf.QTY_FRAC)
    out["sells"] = _fx("sells", sells, rf.QTY_FRAC)
    gross = math.fsum(max(abs(h + b), abs(h + s)) for h, b, s in sides.values())
    out["gross_other"] = _fx("gross_other", gross, rf.QTY_FRAC)
    n = len(pnl)  # unused lanes hold 0 (a leaf of the min tree anyway)
    out.update(zip(_C_KEYS, _fx_lanes(_C_KEYS, pnl, rf.MONEY_FRAC) + [0] * (rf.S - n)))
    out.update(zip(_A_KEYS, _fx_lanes(_A_KEYS, np.asarray(risk)[:n], rf.RISK_FRAC) + [0] * (rf.S - n)))
    before = account.initial_margin_with_orders()
    equity, _ = account.equity()
    utilization = account.profile.max_utilization if max_utilization is None else max_utilization
    out["base"] = _fx("base", before - term, rf.MONEY_FRAC)
    out["before"] = _fx("before", before, rf.MONEY_FRAC)
    out["limit"] = _fx("limit", equity * utilization, rf.MONEY_FRAC)
    out["tol"] = _fx("tol", im_tolerance, rf.MONEY_FRAC)
    rate = account.profile.short_option_minimum
    out["short_som"] = _fx("short_som", rate * short, rf.MONEY_FRAC)
    out["som_per"] = _fx("som_per", rate * float(model.option_notional[row]), rf.MONEY_FRAC)
    return out


def stack(records: list[dict[str, int]]) -> dict[str, np.ndarray]:
    """Records -> field -> object array of ints (the model's and the simulator's input)."""
    return {name: np.asarray([r[name] for r in records], dtype=object) for name in rf.FIELDS}


def decode(outputs: dict[str, np.ndarray], i: int) -> tuple[bool, str, float]:
    """(accepted, reason code, IM after in currency) of result ``i``."""
    return (bool(outputs["accept"][i]), rf.FilterReason.ALL[int(outputs["code"][i])],
            int(outputs["im_after"][i]) / float(1 << rf.MONEY_FRAC))
