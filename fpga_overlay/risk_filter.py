"""The pre-trade risk filter: one order in, a decision and a reason code out.

The filter is a dataflow graph (:mod:`fpga_overlay.dataflow`) executed by both the
hardware (:class:`fpga_overlay.hdl_dataflow.DataflowPipeline`, one order per clock)
and the bit-exact model (:func:`model`). It implements, in the software hook's
order (actors.pretrade; the first failure decides):

1. kill switches: global, the account's, the underlying's (flags the host resolves);
2. static limits: max order quantity, max order notional (|q| x price x multiplier),
   price collar (|price - reference| > collar x reference; no reference rejects),
   position per instrument and gross position per underlying (open orders counted
   at their worst side; an order that does not raise the worst case always passes);
3. margin on fixed-point risk arrays, all S = 27 scenarios in parallel lanes: the
   account's scenario P&L with open orders ``c_s`` plus ``min(0, q x a_s)`` (the
   instrument's risk array ``a_s``, the order counted on its worst side), worst
   scenario against the limit: IM after = ``base + max(-worst, 0, som)`` must stay
   <= ``limit`` unless the order adds at most ``tol`` (``base``: the IM of the
   account's other underlyings; ``som``: the short-option minimum after the order).

The tier check, restricted list, rate throttle and stale-data check stay in the
software hook (they need state the filter does not hold), and so do request sanity
and risk that cannot be computed: the host sends only orders that pass those
(:mod:`fpga_overlay.risk_filter_host`).

Record formats (two's-complement integers, value = integer / 2**frac):

=====================  ====  =====  ===================================================
field                  bits  frac   meaning
=====================  ====  =====  ===================================================
kill_g, kill_a, kill_u  1           kill switch engaged: global, account, underlying
q                      64 s  32     signed order quantity, contracts (buy > 0)
price, ref             52 u  32     limit price, the instrument's mark (0 = none), per unit
mult                   40 u  16     contract multiplier
en_*                    1           limit switched on (0 in the config = off)
lim_qty, lim_pos_i     64 u  32     contracts
lim_pos_u              72 u  32     gross contracts on the underlying
lim_notional           63 u  16     currency
collar                 34 u  32     a fraction (0.05 = 5 %)
held, sells            64 s  32     held contracts; open sells (<= 0), this instrument
buys                   64 u  32     open buys (>= 0), this instrument
gross_other            72 u  32     worst-case gross of the underlying's other rows
c0 .. c26              64 s  16     account scenario P&L with orders, currency
a0 .. a26              56 s  24     the instrument's risk array, currency per contract
base, before, limit    64 s  16     currency
tol, short_som         63 u  16     currency
som_per                63 u  16     currency per short contract
code                    5           index into :attr:`FilterReason.ALL`
accept                  1           1 = accepted
im_after               ~90 s 16     IM after the order (currency), for the decision record
=====================  ====  =====  ===================================================
"""

from __future__ import annotations

import functools

import numpy as np

from fpga_overlay import dataflow as df

#: Scenarios per underlying the filter holds (lanes = S: one scenario per lane).
S = 27
LANES = S
QTY_FRAC, PRICE_FRAC, MULT_FRAC, MONEY_FRAC, RISK_FRAC, COLLAR_FRAC = 32, 32, 16, 16, 24, 32


class FilterReason:
    """The software hook's reason codes (actors.pretrade_messages.ReasonCode; a test
    asserts they are equal): the filter outputs an index into :attr:`ALL`."""

    ACCEPTED = "accepted"
    BAD_REQUEST = "bad_request"
    UNKNOWN_ACCOUNT = "unknown_account"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    KILL_SWITCH_GLOBAL = "kill_switch_global"
    KILL_SWITCH_ACCOUNT = "kill_switch_account"
    KILL_SWITCH_UNDERLYING = "kill_switch_underlying"
    REDUCE_ONLY = "reduce_only"
    LIQUIDATION_ONLY = "liquidation_only"
    RESTRICTED_INSTRUMENT = "restricted_instrument"
    MAX_ORDER_QTY = "max_order_qty"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    PRICE_COLLAR = "price_collar"
    MAX_POSITION_INSTRUMENT = "max_position_instrument"
    MAX_POSITION_UNDERLYING = "max_position_underlying"
    RATE_THROTTLE = "rate_throttle"
    STALE_MARKET = "stale_market"
    MARGIN = "margin"
    RISK_UNAVAILABLE = "risk_unavailable"

    ALL: tuple[str, ...] = (
        ACCEPTED, BAD_REQUEST, UNKNOWN_ACCOUNT, UNKNOWN_INSTRUMENT,
        KILL_SWITCH_GLOBAL, KILL_SWITCH_ACCOUNT, KILL_SWITCH_UNDERLYING,
        REDUCE_ONLY, LIQUIDATION_ONLY,
        RESTRICTED_INSTRUMENT, MAX_ORDER_QTY, MAX_ORDER_NOTIONAL, PRICE_COLLAR,
        MAX_POSITION_INSTRUMENT, MAX_POSITION_UNDERLYING, RATE_THROTTLE,
        STALE_MARKET, MARGIN, RISK_UNAVAILABLE,
    )


def code_of(reason: str) -> int:
    return FilterReason.ALL.index(reason)


#: (bits, signed) of every input field, in record order.
FIELDS: dict[str, tuple[int, bool]] = {
    "kill_g": (1, False), "kill_a": (1, False), "kill_u": (1, False),
    "q": (64, True), "price": (52, False), "ref": (52, False), "mult": (40, False),
    "en_qty": (1, False), "en_notional": (1, False), "en_collar": (1, False),
    "en_pos_i": (1, False), "en_pos_u": (1, False),
    "lim_qty": (64, False), "lim_notional": (63, False), "collar": (34, False),
    "lim_pos_i": (64, False), "lim_pos_u": (72, False),
    "held": (64, True), "buys": (64, False), "sells": (64, True), "gross_other": (72, False),
    **{f"c{s}": (64, True) for s in range(S)},
    **{f"a{s}": (56, True) for s in range(S)},
    "base": (64, True), "before": (64, True), "limit": (64, True),
    "tol": (63, False), "short_som": (63, False), "som_per": (63, False),
}
OUTPUTS = ("accept", "code", "im_after")


def field_range(name: str) -> tuple[int, int]:
    bits, signed = FIELDS[name]
    if name == "sells":
        return -(1 << (bits - 1)), 0
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _worst_abs(held: df.Node, buys: df.Node, sells: df.Node) -> df.Node:
    """max(|held + buys|, |held + sells|): the largest position any subset of orders reaches."""
    return df.max_(df.abs_(held + buys), df.abs_(held + sells))


def _tree_min(nodes: list[df.Node]) -> df.Node:
    while len(nodes) > 1:
        nodes = [df.min_(nodes[i], nodes[i + 1]) if i + 1 < len(nodes) else nodes[i]
                 for i in range(0, len(nodes), 2)]
    return nodes[0]


@functools.lru_cache(maxsize=1)
def filter_graph() -> df.Graph:
    """The risk filter as a dataflow graph."""
    x = {name: df.input_(name, *field_range(name)) for name in FIELDS}
    zero = df.const(0)
    q = x["q"]
    size = df.abs_(q)
    buy = df.gt(q, zero)
    sell_size = df.max_(-q, zero)

    # static limits
    fail_qty = df.min_(x["en_qty"], df.gt(size, x["lim_qty"]))
    units = df.mul(size, x["price"], QTY_FRAC + PRICE_FRAC - MONEY_FRAC)      # Q16 price units
    notional = df.mul(units, x["mult"], MULT_FRAC)                              # currency Q16
    fail_notional = df.min_(x["en_notional"], df.gt(notional, x["lim_notional"]))
    band = df.mul(x["collar"], x["ref"], COLLAR_FRAC)                           # Q32 per unit
    deviation = df.abs_(x["price"] - x["ref"])
    no_ref = df.gt(df.const(1), x["ref"])
    fail_collar = df.min_(x["en_collar"], df.max_(no_ref, df.gt(deviation, band)))
    held, buys, sells = x["held"], x["buys"], x["sells"]
    new_buys = buys + df.mux(buy, size, zero)
    new_sells = sells - sell_size
    before_i = _worst_abs(held, buys, sells)
    after_i = _worst_abs(held, new_buys, new_sells)
    raises = df.gt(after_i, before_i)
    fail_pos_i = df.min_(df.min_(x["en_pos_i"], raises), df.gt(after_i, x["lim_pos_i"]))
    fail_pos_u = df.min_(df.min_(x["en_pos_u"], raises), df.gt(x["gross_other"] + after_i, x["lim_pos_u"]))

    # margin: worst of the lanes, 0 (no loss) and -som, all in one min tree
    shift = QTY_FRAC + RISK_FRAC - MONEY_FRAC
    lanes = [df.min_(df.mul(q, x[f"a{s}"], shift) + x[f"c{s}"], x[f"c{s}"]) for s in range(S)]
    som = x["short_som"] + df.mul(sell_size, x["som_per"], QTY_FRAC)
    worst = _tree_min(lanes + [zero, -som])                                    # = -term
    base = x["base"]
    # after - before > tol and after > limit, with after = base - worst:
    threshold = df.min_(base - x["before"] - x["tol"], base - x["limit"])
    fail_margin = df.gt(threshold, worst)
    im_after = base - worst

    r = FilterReason
    code = df.first([(x["kill_g"], code_of(r.KILL_SWITCH_GLOBAL)), (x["kill_a"], code_of(r.KILL_SWITCH_ACCOUNT)),
                     (x["kill_u"], code_of(r.KILL_SWITCH_UNDERLYING)), (fail_qty, code_of(r.MAX_ORDER_QTY)),
                     (fail_notional, code_of(r.MAX_ORDER_NOTIONAL)), (fail_collar, code_of(r.PRICE_COLLAR)),
                     (fail_pos_i, code_of(r.MAX_POSITION_INSTRUMENT)),
                     (fail_pos_u, code_of(r.MAX_POSITION_UNDERLYING)), (fail_margin, code_of(r.MARGIN))],
                    code_of(r.ACCEPTED))
    accept = df.first([(x[k], 0) for k in ("kill_g", "kill_a", "kill_u")]
                      + [(f, 0) for f in (fail_qty, fail_notional, fail_collar, fail_pos_i, fail_pos_u, fail_margin)],
                      1)
    return df.Graph(list(x.values()), {"accept": accept, "code": code, "im_after": im_after})


def model(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bit-exact model: integer outputs for integer input fields (see the table above)."""
    return df.evaluate(filter_graph(), fields)


def latency_bound() -> int:
    """The issue's target: 16 cycles plus S / lanes for the margin check."""
    return 16 + -(-S // LANES)
