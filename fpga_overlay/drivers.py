"""PYNQ drivers of the overlay's two IPs, bound by VLNV (``bindto``).

They only use pynq's public API: MMIO register reads and writes through
``DefaultIP.read`` / ``write`` and ``pynq.allocate`` buffers, so the same code
runs on a board and on :class:`fpga_overlay.sim_device.SimulatedDevice`.
Register offsets come from :mod:`fpga_overlay.cores` (the HLS layout:
CTRL at 0x00, arguments from 0x10).
"""

from __future__ import annotations

import numpy as np
import pynq

from fpga_overlay import greeks_core as gc
from fpga_overlay import risk_filter as rf
from fpga_overlay.cores import FILTER_REGS, FILTER_VLNV, GREEKS_REGS, GREEKS_VLNV, RECORD_BYTES
from fpga_overlay.risk_filter_host import FilterDecision  # noqa: F401  (the driver's result type, re-exported)

AP_START, AP_DONE = 0x1, 0x2
LANES = RECORD_BYTES // 8


def _wait_done(ip: pynq.DefaultIP, max_polls: int) -> None:
    for _ in range(max_polls):
        if ip.read(0x00) & AP_DONE:
            return
    raise TimeoutError(f"{type(ip).__name__}: ap_done not seen after {max_polls} polls of CTRL")


class RiskFilterDriver(pynq.DefaultIP):
    """The pre-trade risk filter (one order per call)."""

    bindto = [FILTER_VLNV]

    def check(self, order: dict[str, int]) -> FilterDecision:
        """Decide one order; ``order``: the integer record of
        :func:`fpga_overlay.risk_filter_host.order_fields`."""
        for name in rf.FIELDS:
            for offset, word in FILTER_REGS.words(name, int(order[name])):
                self.write(offset, word)
        self.write(0x00, AP_START)
        _wait_done(self, 1000)
        decision = self.read(FILTER_REGS.offsets["decision"][0])
        off, words, width = FILTER_REGS.offsets["im_after"]
        raw = sum(self.read(off + 4 * i) << (32 * i) for i in range(words))
        im = raw - (1 << width) if raw >> (width - 1) else raw
        return FilterDecision(accepted=bool(decision & 1), reason=rf.FilterReason.ALL[(decision >> 1) & 0x1F],
                              im_after=im / float(1 << rf.MONEY_FRAC),
                              cycles=self.read(FILTER_REGS.offsets["cycles"][0]))


class GreeksDriver(pynq.DefaultIP):
    """The Greeks core: a batch of options per call, through ``pynq.allocate`` buffers."""

    bindto = [GREEKS_VLNV]

    def greeks(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Integer input fields (greeks_core.quantize) -> integer outputs (int64 arrays,
        greeks_core's formats); the last run's cycle count is in :attr:`last_cycles`."""
        n = len(batch["s"])
        src = pynq.allocate((max(n, 1), LANES), dtype=np.int64, target=self.device)
        dst = pynq.allocate((max(n, 1), LANES), dtype=np.int64, target=self.device)
        src[:] = 0
        for i, name in enumerate(gc.INPUTS):
            src[:n, i] = np.asarray(batch[name], dtype=np.int64)
        src.flush()
        for name, value in (("src", src.device_address), ("dst", dst.device_address), ("n", n)):
            for offset, word in GREEKS_REGS.words(name, value):
                self.write(offset, word)
        self.write(0x00, AP_START)
        _wait_done(self, 100 + 4 * n)
        dst.invalidate()
        self.last_cycles = self.read(GREEKS_REGS.offsets["cycles"][0])
        out = {name: np.array(dst[:n, i]) for i, name in enumerate(gc.OUTPUTS)}
        src.freebuffer()
        dst.freebuffer()
        return out
