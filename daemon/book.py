"""Offline margin books: positions, market data and profiles in one TOML file.

This is the input of ``riskd margin BOOK`` (a desktop SPAN-calculator-like tool)
and of ``riskd demo`` until the daemon runs. A book names a riskd config for its
margin parameters and reference data (``config``, default the built-in one), and
adds a market snapshot and accounts with positions and open orders::

    config = "builtin:default.toml"
    [market]
    as_of = 2026-11-20T21:00:00Z
    [market.underlyings.SPX]
    price = 6900.0
    rate = 0.04
    dividend_yield = 0.013
    vol = 0.17
    [market.option_vols]
    "SPX 261218C7000" = 0.155
    [[accounts]]
    id = "ACC-1"
    cash = 1_000_000
    profile = "span"
    positions = [{ instrument = "ESZ6", quantity = -4, average_price = 6950.0 }]
    orders = [{ id = "o1", instrument = "ESZ6", quantity = 2, limit_price = 6890.0 }]

Average prices default to the mark (no unrealized P&L). Relative paths are from
the book's folder.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from daemon.config import (BUILTIN_PREFIX, ConfigError, RiskdConfig, check_references, decode, load_config,
                           read_toml, resolve_data_path)
from risk.account import Account, AccountMargin
from risk.history import read_history, returns
from risk.instruments import InstrumentTable, MarketSnapshot, ReferenceDataError
from risk.model import RiskModel, RiskModelError
from risk.stress import StressResult, stress_account, stress_moves, stress_pnl_per_contract
from risk.tiers import tier_for_ratio


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class PositionSpec(_Strict):
    """A held position: signed contracts, average traded price per unit (default: mark)."""

    instrument: str
    quantity: float
    average_price: float | None = None


class OrderSpec(_Strict):
    """An open order reserving margin: signed contracts, limit price per unit."""

    id: str
    instrument: str
    quantity: float
    limit_price: float


class BookAccount(_Strict):
    """An account in a book: cash or collateral (currency), profile, positions, orders."""

    id: str
    profile: str
    cash: float = 0.0
    positions: tuple[PositionSpec, ...] = ()
    orders: tuple[OrderSpec, ...] = ()


class Book(_Strict):
    """A margin book file; see the module docstring."""

    market: MarketSnapshot
    accounts: tuple[BookAccount, ...]
    config: str = BUILTIN_PREFIX + "default.toml"


class AccountReport(msgspec.Struct, frozen=True):
    """Everything the margin calculator prints for one account."""

    margin: AccountMargin
    tier: str
    stress: tuple[StressResult, ...]


class BookReport(msgspec.Struct, frozen=True):
    """The margin calculator's output for a whole book."""

    as_of: str
    covariance_repaired: bool
    accounts: tuple[AccountReport, ...]


def load_book(path: str) -> tuple[Book, RiskdConfig]:
    """Read and check a book and the config it names."""
    raw, source, folder = read_toml(path)
    book = decode(raw, Book, source)
    config_ref = book.config
    if not config_ref.startswith(BUILTIN_PREFIX):
        config_ref = str((folder / config_ref).resolve())
    config = load_config(config_ref)
    table = check_references(config, config_ref)
    for i, acct in enumerate(book.accounts):
        if acct.profile not in config.margin.profiles:
            raise ConfigError(source, f"accounts[{i}].profile",
                              f"expected one of the profiles {sorted(config.margin.profiles)}, found {acct.profile!r}")
        for kind, entries in (("positions", acct.positions), ("orders", acct.orders)):
            for j, entry in enumerate(entries):
                if entry.instrument not in table.index:
                    raise ConfigError(source, f"accounts[{i}].{kind}[{j}].instrument",
                                      f"unknown instrument {entry.instrument!r} (not in {config_ref})")
    return book, config


def build_model(config: RiskdConfig, market: MarketSnapshot, source: str = "") -> RiskModel:
    """The risk model of ``config``'s reference data at ``market``, with VaR history if configured."""
    table = InstrumentTable(config.underlyings, config.instruments)
    for uid in table.underlying_ids:
        if uid not in market.underlyings:
            raise ConfigError(source, f"market.underlyings.{uid}", "required: the config trades this underlying"
                              " but the market snapshot has no quote for it")
    history_returns = load_history_returns(config, table)
    try:
        return RiskModel(table, market, config.margin, history_returns)
    except (ReferenceDataError, RiskModelError) as exc:
        raise ConfigError(source, "market", str(exc)) from None


def load_history_returns(config: RiskdConfig, table: InstrumentTable) -> np.ndarray | None:
    """(window, U) relative returns over the VaR horizon from the configured history, or None."""
    if config.history is None:
        return None
    history = read_history(resolve_data_path(config.history))
    missing = [u for u in table.underlying_ids if u not in history.underlyings]
    if missing:
        raise ConfigError(config.history, "", f"price history has no column for underlyings {missing}")
    cols = [history.underlyings.index(u) for u in table.underlying_ids]
    var = config.margin.var
    return np.asarray(returns(history.prices[:, cols], var.horizon_days, var.window))


def open_account(model: RiskModel, spec: BookAccount, config: RiskdConfig) -> Account:
    """An Account with the book's positions and orders booked."""
    account = Account(spec.id, config.margin.profiles[spec.profile], model, spec.cash)
    for pos in spec.positions:
        row = model.table.index[pos.instrument]
        price = pos.average_price if pos.average_price is not None else float(model.valuation.mark[row])
        account.apply_fill(row, pos.quantity, price)
    for order in spec.orders:
        account.reserve(order.id, model.table.index[order.instrument], order.quantity, order.limit_price)
    return account


def margin_book(path: str) -> BookReport:
    """Load a book and compute every account's margin, tier and stress results."""
    book, config = load_book(path)
    model = build_model(config, book.market, path)
    stresses = [(m, stress_pnl_per_contract(model, m)) for m in
                (stress_moves(model, s) for s in config.margin.stress)]
    reports = []
    for spec in book.accounts:
        account = open_account(model, spec, config)
        margin = account.margin()
        results = tuple(stress_account(model, m, per, account.quantities()) for m, per in stresses)
        tier = tier_for_ratio(margin.margin_ratio, config.margin.tiers)
        reports.append(AccountReport(margin, tier.name.lower(), results))
    return BookReport(book.market.as_of.isoformat(), model.covariance_repaired, tuple(reports))


def default_book_path() -> Path:
    return resolve_data_path(BUILTIN_PREFIX + "demo_book.toml")
