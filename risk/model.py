"""The shared risk context at one market snapshot: marks, Greeks and risk arrays.

A :class:`RiskModel` holds, for every instrument, what an account needs to move
its margin by one fill in O(S): its scenario risk array (a view into its
underlying's block), its historical-scenario P&L row, its dollar delta and gamma
and its short-option notional. Accounts (risk.account) keep only quantities and
quantity-weighted sums of these rows.
"""

from __future__ import annotations

import numpy as np

from risk.covariance import EwmaCovariance, repair_psd
from risk.errors import RiskModelError
from risk.instruments import InstrumentTable, MarketSnapshot, PricingInputs, pricing_inputs
from risk.params import MarginParams
from risk.valuation import UnderlyingRiskArrays, Valuation, shocked_pnl, underlying_risk_arrays, value_instruments


class RiskModel:
    """Marks, Greeks, risk arrays and covariance for one market snapshot.

    ``history_returns``: optional (D, U) relative returns of the underlyings over
    the VaR horizon (columns in ``table.underlying_ids`` order), oldest first; they
    give the historical-scenario arrays (n, D) and the EWMA covariance used by
    parametric VaR. Without them, profiles asking for VaR raise RiskModelError.

    ``previous`` and ``changed`` (underlying rows): reprice only the underlyings
    whose market moved and reuse ``previous``'s risk arrays for the others (they
    were computed at the same time to expiry only if ``market.as_of`` did not move
    much: the pricing actor revalues everything at its full-revaluation interval).
    """

    def __init__(self, table: InstrumentTable, market: MarketSnapshot, params: MarginParams,
                 history_returns: np.ndarray | None = None, *, previous: "RiskModel | None" = None,
                 changed: set[int] | None = None) -> None:
        self.table = table
        self.market = market
        self.params = params
        self.inputs: PricingInputs = pricing_inputs(table, market)
        self.valuation: Valuation = value_instruments(table, self.inputs)
        reuse = previous is not None and changed is not None and previous.table is table
        self.blocks: list[UnderlyingRiskArrays] = []
        offset = 0
        for u, spec in enumerate(table.underlying_specs):
            grid = params.grids.get(spec.grid)
            if grid is None:
                raise RiskModelError(f"underlying {spec.id!r} names grid {spec.grid!r}, which is not in margin.grids")
            if reuse and u not in changed:  # type: ignore[operator]
                block = previous.blocks[u]  # type: ignore[union-attr]
            else:
                block = underlying_risk_arrays(table, self.inputs, u, grid, offset)
            self.blocks.append(block)
            offset += len(block.scenarios)
        self.n_scenarios = offset
        n = len(table)
        self.block_of = table.underlying.copy()
        #: block_of as Python ints: the hot paths index lists with it, and a NumPy
        #: scalar costs a conversion per use.
        self.block_list: list[int] = self.block_of.tolist()
        self.position_in_block = np.empty(n, dtype=np.int64)
        for block in self.blocks:
            self.position_in_block[block.rows] = np.arange(len(block.rows))
        if reuse:
            rows = [int(r) for u in sorted(changed) for r in self.blocks[u].rows]  # type: ignore[arg-type]
            self.scenario_rows = list(previous.scenario_rows)  # type: ignore[union-attr]
            self.scenario_rows_loss_if_bought = list(previous.scenario_rows_loss_if_bought)  # type: ignore[union-attr]
            self.scenario_rows_loss_if_sold = list(previous.scenario_rows_loss_if_sold)  # type: ignore[union-attr]
        else:
            rows = list(range(n))
            self.scenario_rows = [None] * n  # type: ignore[list-item]
            self.scenario_rows_loss_if_bought = [None] * n  # type: ignore[list-item]
            self.scenario_rows_loss_if_sold = [None] * n  # type: ignore[list-item]
        for i in rows:
            #: Per-instrument risk array, a view into its block: the O(S) hot-path row.
            row = self.blocks[self.block_of[i]].arrays[self.position_in_block[i]]
            self.scenario_rows[i] = row
            # min(0, row) and max(0, row): an order's worst case is min(0, q row) =
            # q x (negative part if q > 0, else positive part), one multiply.
            self.scenario_rows_loss_if_bought[i] = np.minimum(row, 0.0)
            self.scenario_rows_loss_if_sold[i] = np.maximum(row, 0.0)
        self.segments: list[slice] = [slice(b.offset, b.offset + len(b.scenarios)) for b in self.blocks]
        #: Currency per short option contract that the short-option minimum rate applies to:
        #: the option's own underlying price (the future's, for options on futures) x multiplier.
        self.option_notional = np.where(table.is_option, self.inputs.s * table.multiplier, 0.0)
        #: Currency value of one contract at its mark (mark x multiplier): equity is
        #: cash + quantities . unit_value - cost basis, one dot product per fill.
        self.unit_value = self.valuation.mark * table.multiplier
        #: Marks (per unit) and multipliers as Python floats, for the per-order checks.
        self.mark_list: list[float] = self.valuation.mark.tolist()
        #: Stand-alone parametric VaR of one contract by (row if bought else -1 - row),
        #: currency, filled by risk.account as orders ask (this model's covariance).
        self.unit_order_var: dict[int, float] = {}
        self.multiplier_list: list[float] = np.asarray(table.multiplier, dtype=float).tolist()

        self.history_returns = history_returns
        self.historical_rows: np.ndarray | None = None
        #: min(0, historical_rows) and max(0, historical_rows): an order's worst case
        #: per historical day is q x one of them (as for the scenario rows).
        self.historical_loss_if_bought: np.ndarray | None = None
        self.historical_loss_if_sold: np.ndarray | None = None
        self.covariance: np.ndarray | None = None
        self.covariance_psd = None
        self.covariance_repaired = False
        self.covariance_min_eigenvalue = float("nan")
        if history_returns is not None:
            returns = np.asarray(history_returns, dtype=float)
            if returns.ndim != 2 or returns.shape[1] != len(table.underlying_ids):
                raise RiskModelError(
                    f"history returns have shape {returns.shape}, expected (days, {len(table.underlying_ids)})"
                    f" for underlyings {table.underlying_ids}")
            if reuse and previous.historical_rows is not None and previous.history_returns is history_returns:  # type: ignore[union-attr]
                self.historical_rows = previous.historical_rows.copy()  # type: ignore[union-attr]
                idx = np.asarray(rows, dtype=np.int64)
                if idx.size:
                    self.historical_rows[idx] = shocked_pnl(table, self.inputs, returns, 0.0, self.vol_floors(), idx)
            else:
                self.historical_rows = shocked_pnl(table, self.inputs, returns, 0.0, self.vol_floors())
            if not np.isfinite(self.historical_rows).all():
                raise RiskModelError("historical-scenario P&L is not finite: check the price history returns")
            self.historical_loss_if_bought = np.minimum(self.historical_rows, 0.0)
            self.historical_loss_if_sold = np.maximum(self.historical_rows, 0.0)
            if reuse and previous.covariance_psd is not None and previous.history_returns is history_returns:  # type: ignore[union-attr]
                self._copy_covariance(previous)  # type: ignore[arg-type]
                return
            # Seed with an equal-weighted estimate over the oldest month, then let
            # the EWMA recursion weight the rest of the window.
            n_seed = min(len(returns), max(20, returns.shape[1] + 1))
            ewma = EwmaCovariance.from_returns(returns, n_seed, params.var.ewma_lambda)
            repair = repair_psd(ewma.cov)
            #: The repaired covariance, passed as is to the VaR functions (no re-check per call).
            self.covariance_psd = repair
            self.covariance = repair.matrix
            self.covariance_repaired = repair.repaired
            self.covariance_min_eigenvalue = repair.min_eigenvalue_before

    def _copy_covariance(self, previous: "RiskModel") -> None:
        self.covariance_psd = previous.covariance_psd
        self.covariance = previous.covariance
        self.covariance_repaired = previous.covariance_repaired
        self.covariance_min_eigenvalue = previous.covariance_min_eigenvalue

    def vol_floors(self) -> np.ndarray:
        """Per-instrument vol floor (fraction per year): that of its underlying's grid."""
        floors = np.array([self.params.grids[spec.grid].vol_floor for spec in self.table.underlying_specs])
        return floors[self.table.underlying]

    @property
    def n_underlyings(self) -> int:
        return len(self.table.underlying_ids)

    @property
    def n_history(self) -> int:
        return 0 if self.historical_rows is None else self.historical_rows.shape[1]
