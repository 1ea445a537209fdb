"""The overlay as the daemon sees it: open it if there is a device, else None.

``open_overlay(path)`` loads the bitstream with pynq on a board;
``open_overlay(path, simulate=True)`` runs the same drivers on
:class:`fpga_overlay.sim_device.SimulatedDevice` (a placeholder .bit labelled as
simulated is written when ``path`` is None). Without pynq or without a device it
returns None, and the caller stays on the software path.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class FpgaBackend:
    """The two IP drivers of a loaded overlay."""

    def __init__(self, overlay, simulated: bool) -> None:
        self.overlay = overlay
        self.simulated = simulated
        self.filter = overlay.risk_filter_0
        self.greeks_ip = overlay.greeks_core_0

    def check(self, order: dict[str, int]):
        """One order's decision (a drivers.FilterDecision) from the risk filter;
        ``order``: fpga_overlay.risk_filter_host.order_fields's record."""
        return self.filter.check(order)

    def greeks(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Integer Greeks of a batch (greeks_core.quantize fields -> integer outputs)."""
        return self.greeks_ip.greeks(batch)


def open_overlay(bitstream_path: str | None, simulate: bool = False) -> FpgaBackend | None:
    """The overlay, or None when there is no device (or no pynq) to run it on."""
    try:
        import pynq

        from fpga_overlay import drivers  # noqa: F401  (registers the drivers by VLNV)
    except ImportError as exc:
        log.info("fpga overlay: pynq is not installed (%s): software path", exc)
        return None
    if simulate:
        from fpga_overlay.sim_device import SimulatedDevice, write_placeholder_bitstream

        if bitstream_path is None:
            bitstream_path = str(Path(tempfile.mkdtemp(prefix="riskd-fpga-sim-")) / "riskd_overlay_SIMULATED.bit")
            write_placeholder_bitstream(bitstream_path)
        return FpgaBackend(pynq.Overlay(bitstream_path, device=SimulatedDevice()), simulated=True)
    if bitstream_path is None:
        return None
    try:
        devices = pynq.Device.devices
    except RuntimeError:
        devices = []
    if not devices:
        log.info("fpga overlay: no FPGA device found: software path")
        return None
    return FpgaBackend(pynq.Overlay(bitstream_path), simulated=False)
