"""The pipeline bench's universe: many accounts, enough instruments for many positions each.

:func:`build_universe` starts from the built-in sample book (``builtin:demo_book.toml``:
the default config's margin parameters, SPX and NDX with their futures and options,
and a market snapshot) and adds, programmatically:

- listed options on both underlyings' spot (calls and puts over a strike ladder and
  three expiries) until there are at least ``4 x positions`` instruments, each
  with its own implied vol (a mild smile), so every option is priced from a quote;
- ``accounts`` accounts ``BENCH-0000``.. with cash large enough to stay in the
  normal tier whatever the bench trades (money in USD), every tenth (by default)
  on the ``conservative`` profile (scenario + parametric + historical VaR, about
  ten times the margin work of a scenario-only account), the others on ``span``
  (scenario only);
- for every account ``positions`` distinct instruments (a seeded draw) it trades:
  the OMS loads one fill per (account, instrument) first, then trades only those.

The result is a checked :class:`daemon.config.RiskdConfig` (``check_references``)
and the :class:`risk.instruments.MarketSnapshot`; the daemon and the simulated OMS
are pointed at their ports and folders by the caller.
"""

from __future__ import annotations

import datetime as dt
import math
import random

import msgspec

from daemon.book import build_model, load_book
from daemon.config import BUILTIN_PREFIX, AccountSpec, RiskdConfig, check_references, resolve_data_path
from risk.instruments import MarketSnapshot
from risk.params import InstrumentSpec

#: Cash per account (USD): margin on the bench's positions stays far below it.
BENCH_CASH = 10_000_000_000.0
#: Every ``VAR_EVERY``-th account uses the VaR profile (the rest scenario only).
VAR_EVERY = 10
_EXPIRIES = (dt.date(2026, 12, 18), dt.date(2027, 3, 19), dt.date(2027, 6, 18))


class Universe(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the bench needs to know about what is traded.

    ``holdings[a]``: the instrument ids account ``accounts[a]`` trades (distinct);
    ``marks``: instrument id -> fill price per unit (the model's mark, rounded to
    0.01 and at least 0.05); ``profiles``: profile name -> number of accounts.
    """

    config: RiskdConfig
    market: MarketSnapshot
    accounts: tuple[str, ...]
    holdings: tuple[tuple[str, ...], ...]
    marks: dict[str, float]
    profiles: dict[str, int]


def _extra_options(config: RiskdConfig, market: MarketSnapshot, needed: int
                   ) -> tuple[list[InstrumentSpec], dict[str, float]]:
    """``needed`` spot options over strikes around each underlying's price, with smile vols."""
    taken = {i.id for i in config.instruments}
    specs: list[InstrumentSpec] = []
    vols: dict[str, float] = {}
    step_index = 0
    underlyings = [u.id for u in config.underlyings]
    while len(specs) < needed:
        # Strikes fan out from the money: 0, +1, -1, +2, -2 ... steps of 2 % of spot.
        k = (step_index + 1) // 2 * (1 if step_index % 2 else -1)
        step_index += 1
        for uid in underlyings:
            quote = market.underlyings[uid]
            grain = 50.0 if quote.price < 10_000 else 250.0
            strike = round(quote.price * (1.0 + 0.02 * k) / grain) * grain
            moneyness = math.log(strike / quote.price)
            for expiry in _EXPIRIES:
                for right in ("call", "put"):
                    iid = f"{uid} {expiry:%y%m%d}{right[0].upper()}{strike:.0f}"
                    if iid in taken or len(specs) >= needed:
                        continue
                    taken.add(iid)
                    specs.append(InstrumentSpec(id=iid, kind="option", underlying=uid, right=right,
                                                strike=strike, expiry=expiry, multiplier=100.0 if uid == "SPX" else 20.0))
                    vols[iid] = round(max(0.05, quote.vol - 0.10 * moneyness + 0.40 * moneyness ** 2), 4)
    return specs, vols


def build_universe(accounts: int, positions: int, *, seed: int = 2026, var_every: int = VAR_EVERY) -> Universe:
    """The bench config (``accounts`` x ``positions`` distinct instruments each) and its market.

    ``var_every``: every n-th account uses the VaR profile (0: none)."""
    if accounts < 1 or positions < 1:
        raise ValueError(f"accounts and positions must be >= 1, found {accounts} and {positions}")
    book, config = load_book(str(resolve_data_path(BUILTIN_PREFIX + "demo_book.toml")))
    market = book.market
    needed = max(0, 4 * positions - len(config.instruments))
    extra, vols = _extra_options(config, market, needed)
    market = msgspec.structs.replace(market, option_vols={**market.option_vols, **vols})
    profiles = sorted(config.margin.profiles)
    var_profile = "conservative" if "conservative" in profiles else profiles[0]
    plain_profile = "span" if "span" in profiles else profiles[0]
    ids = tuple(f"BENCH-{i:04d}" for i in range(accounts))
    specs = tuple(AccountSpec(id=a, profile=var_profile if var_every and i % var_every == var_every - 1
                              else plain_profile,
                              cash=BENCH_CASH) for i, a in enumerate(ids))
    config = msgspec.structs.replace(config, instruments=config.instruments + tuple(extra), accounts=specs)
    check_references(config, "bench universe")
    model = build_model(config, market, "bench universe")
    marks = {iid: max(0.05, round(float(model.valuation.mark[row]), 2)) for iid, row in model.table.index.items()}
    universe_ids = sorted(model.table.index)
    if positions > len(universe_ids):
        raise ValueError(f"{positions} positions per account need as many instruments, found {len(universe_ids)}")
    rng = random.Random(seed)
    holdings = tuple(tuple(rng.sample(universe_ids, positions)) for _ in ids)
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.profile] = counts.get(spec.profile, 0) + 1
    return Universe(config=config, market=market, accounts=ids, holdings=holdings, marks=marks, profiles=counts)
