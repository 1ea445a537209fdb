"""The overlay's two cores as their bit-exact NumPy models, behind FpgaBackend's interface.

:class:`ModelBackend` answers ``check(record)`` and ``greeks(batch)`` exactly as the
hardware would (the model and the hardware execute one dataflow graph; the
simulation tests check them bit for bit), without a device, pynq or the
cycle-by-cycle simulation: about a millisecond per check instead of a second. For
tests and benches of the daemon's deciding paths that need many orders; the
drivers and the simulated device are tested on their own (tests/test_fpga_overlay.py).
"""

from __future__ import annotations

import numpy as np

from fpga_overlay import greeks_core as gc
from fpga_overlay import risk_filter as rf
from fpga_overlay.risk_filter_host import FilterDecision, decode, stack


class ModelBackend:
    """The bit-exact models as an overlay (``simulated``: True; no AXI, no cycles
    beyond the graphs' latencies)."""

    simulated = True

    def __init__(self) -> None:
        self.checks = 0
        self.options = 0

    def check(self, order: dict[str, int]) -> FilterDecision:
        """The filter's decision on one record (risk_filter_host.order_fields)."""
        self.checks += 1
        accepted, reason, im_after = decode(rf.model(stack([order])), 0)
        return FilterDecision(accepted=accepted, reason=reason, im_after=im_after,
                              cycles=rf.filter_graph().latency)

    def greeks(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Integer Greeks (int64 arrays, greeks_core's output formats) of integer input fields."""
        self.options += len(batch["s"])
        fields = {name: np.asarray(batch[name], dtype=np.int64) for name in gc.INPUTS}
        return {name: np.asarray([int(v) for v in values], dtype=np.int64)
                for name, values in gc.model(fields).items()}
