"""The pricing actor's option Greeks through the FPGA overlay's Greeks core.

One job: :class:`FpgaGreeks`, called by :class:`actors.pricing_engine.PricingEngine`
after each revaluation with the new :class:`risk.model.RiskModel`. The options the
core can price (Black-Scholes on spot: not Black-76, not options on futures) whose
inputs lie in :class:`fpga_overlay.greeks_core.GreeksDomain` go to the overlay in one
batch (``GreeksDriver.greeks``: ``pynq.allocate`` buffers, the core's AXI master);
the others keep their float64 Greeks (``software_options``, counted per run).

Path (the ``[fpga]`` section, as for the pre-trade filter): ``"fpga"`` (shadow off):
the model's delta, gamma, vega and theta, and the dollar delta, dollar gamma and
vega per contract derived from them, are the overlay's; ``"fpga-shadow"``: the
float64 Greeks stay and the overlay's are only compared (every ``shadow_every``-th
revaluation); ``"software"``: no overlay. On both overlay paths the maximum error
against the float64 Greeks of the same revaluation is exported (``max_rel_err_*``,
``max_abs_err_theta_per_s``: the metrics of ``greeks_core.ERROR_BOUND``; the float64
values are there anyway, see below). The mark stays float64 on every path: it is the
base of the risk arrays and of equity, which are full revaluations in float64 by
design. A device error keeps the float64 Greeks for that revaluation (counted,
logged at ERROR): the fast path they feed is an estimate checked at every full
revaluation.

The risk model (risk/model.py) still values every instrument in float64 before this
runs: the overlay replaces the Greeks, it does not yet save their float64 cost.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec
import numpy as np

from actors.fpga_shadow import FpgaSettings, open_backend, path_of

log = logging.getLogger("riskd.fpga")

#: Error metrics exported (greeks_core.ERROR_BOUND's, named as in ``riskd bench fpga``).
ERROR_KEYS = {"price": "max_rel_err_price", "delta": "max_rel_err_delta", "gamma": "max_rel_err_gamma",
              "vega": "max_rel_err_vega", "theta": "max_abs_err_theta_per_s"}


class FpgaGreeks:
    """The pricing actor's Greeks path; ``backend`` as for actors.fpga_shadow.FpgaPath
    (anything with ``greeks(batch)`` and ``simulated``; None: software only).

    Counters: ``runs`` (revaluations whose batch the overlay computed), ``options``
    (options it computed, in all), ``software_options`` (options kept on float64: not
    Black-Scholes on spot, or outside the domain), ``errors`` (device failures).
    """

    def __init__(self, settings: FpgaSettings, backend: Any = None, why: str = "") -> None:
        self.settings = settings
        self.backend = backend
        self.path = path_of(settings, backend)
        where = "simulated overlay" if backend is not None and backend.simulated else "overlay"
        self.mode = ("software (fpga off)" if settings.enabled == "off" else
                     f"software (no overlay: {why})" if backend is None else
                     f"fpga-shadow (float64 Greeks, {where} compared)" if settings.shadow else
                     f"fpga (option Greeks from the {where}; Black-76 and out-of-domain options float64)")
        self.runs = 0
        self.options = 0
        self.software_options = 0
        self.last_batch = 0
        self.errors = 0
        self.last_error = ""
        self.max_err = {key: 0.0 for key in ERROR_KEYS.values()}
        self.last_err = {key: 0.0 for key in ERROR_KEYS.values()}
        self._seen = 0

    @classmethod
    def open(cls, settings: FpgaSettings) -> "FpgaGreeks":
        """Open the overlay as configured (FpgaUnavailable when ``on`` and none opens)."""
        backend, why = open_backend(settings)
        greeks = cls(settings, backend, why)
        log.info("pricing Greeks path: %s", greeks.mode, extra={"event": "fpga_greeks_path", "path": greeks.path,
                                                                 "mode": greeks.mode})
        return greeks

    def eligible(self, model: Any) -> tuple[np.ndarray, int]:
        """(rows the core computes, options left on float64) of ``model``'s table."""
        from fpga_overlay.greeks_core import GreeksDomain

        table, x = model.table, model.inputs
        options = np.flatnonzero(table.is_option)
        spot_bs = options[~table.black76[options] & (table.future_row[options] < 0)]
        inside = GreeksDomain.contains(x.s[spot_bs], table.strike[spot_bs], x.t[spot_bs], x.vol[spot_bs],
                                       x.r[spot_bs], x.q[spot_bs])
        rows = spot_bs[inside]
        return rows, len(options) - len(rows)

    def apply(self, model: Any) -> None:
        """Put ``model``'s option Greeks through the overlay (see the module docstring);
        on the ``"fpga"`` path ``model.valuation`` is replaced by one with its Greeks."""
        if self.backend is None:
            return
        self._seen += 1
        if self.path == "fpga-shadow" and (self._seen - 1) % self.settings.shadow_every:
            return
        from fpga_overlay import greeks_core as gc

        rows, left = self.eligible(model)
        self.software_options += left
        if not rows.size:
            return
        table, x, v = model.table, model.inputs, model.valuation
        fields = gc.quantize(table.is_call[rows], x.s[rows], table.strike[rows], x.t[rows], x.vol[rows],
                             x.r[rows], x.q[rows])
        try:
            got = gc.to_float(self.backend.greeks(fields))
        except Exception as exc:  # the float64 Greeks stay for this revaluation
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("fpga Greeks core failed on %d options (%s): float64 Greeks kept", len(rows), self.last_error,
                      extra={"event": "fpga_error"})
            return
        self.runs += 1
        self.options += len(rows)
        self.last_batch = len(rows)
        reference = {"price": v.mark[rows], "delta": v.delta[rows], "gamma": v.gamma[rows], "vega": v.vega[rows],
                     "theta": v.theta[rows]}
        for name, err in gc.errors(reference, got, x.s[rows]).items():
            key = ERROR_KEYS[name]
            self.last_err[key] = err
            self.max_err[key] = max(self.max_err[key], err) if math.isfinite(err) else math.inf
        if self.path == "fpga":
            model.valuation = with_greeks(model, rows, got)

    def state(self) -> dict[str, Any]:
        """For health (/metrics: ``riskd_health_value`` under ``market.fpga``) and ``riskd status``."""
        return {"path": self.path, "mode": self.mode, "runs": self.runs, "options": self.options,
                "software_options": self.software_options, "last_batch": self.last_batch, "errors": self.errors,
                "last_error": self.last_error, **self.max_err,
                **{f"last_{key}": value for key, value in self.last_err.items()}}


def with_greeks(model: Any, rows: np.ndarray, got: dict[str, np.ndarray]) -> Any:
    """``model.valuation`` with the Greeks of ``rows`` replaced by ``got`` (risk.pricing's
    units) and the per-contract figures derived from them; the mark unchanged."""
    v, s, mult = model.valuation, model.inputs.s, model.table.multiplier
    delta, gamma, vega, theta = v.delta.copy(), v.gamma.copy(), v.vega.copy(), v.theta.copy()
    delta[rows], gamma[rows], vega[rows], theta[rows] = got["delta"], got["gamma"], got["vega"], got["theta"]
    return msgspec.structs.replace(v, delta=delta, gamma=gamma, vega=vega, theta=theta,
                                   dollar_delta=delta * s * mult, dollar_gamma=gamma * s**2 * mult,
                                   vega_contract=vega * mult)
