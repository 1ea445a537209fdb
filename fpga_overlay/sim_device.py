"""A simulated ``pynq.Device``: the overlay's IPs in the Amaranth simulator.

``pynq.Overlay(bit, device=SimulatedDevice())`` takes its metadata from
:meth:`SimulatedDevice.get_bitfile_metadata` (an ip_dict with each IP's VLNV, so
pynq binds the drivers of :mod:`fpga_overlay.drivers`), MMIO goes through
``read_registers`` / ``write_registers`` (the REGISTER_RW capability) and becomes
AXI4-Lite transactions on the simulation, and ``pynq.allocate`` returns buffers in a
simulated DDR that the Greeks IP's AXI4 master reads and writes.

THE ADDRESS MAP BELOW IS SIMULATED: it is this module's choice, not read from a
.hwh (a real board's addresses come from the Vivado address editor).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from pynq.buffer import PynqBuffer
from pynq.pl_server.device import Device

from fpga_overlay.cores import FILTER_VLNV, GREEKS_VLNV, FilterIP, GreeksIP
from fpga_overlay.sim_bus import AxiSim

#: Simulated address map: name -> (VLNV, base address, range bytes).
SIMULATED_ADDRESS_MAP = {
    "risk_filter_0": (FILTER_VLNV, 0xA000_0000, 0x1000),
    "greeks_core_0": (GREEKS_VLNV, 0xA001_0000, 0x1000),
}
#: Simulated DDR window for pynq.allocate buffers.
SIMULATED_DDR = (0x8_0000_0000, 1 << 30)
SIMULATED_BIT_LABEL = b"SIMULATED PLACEHOLDER - not a bitstream: riskd fpga_overlay SimulatedDevice\n"


def write_placeholder_bitstream(path: str | Path) -> Path:
    """pynq.Overlay needs a .bit file to exist: write one labelled as simulated."""
    path = Path(path)
    path.write_bytes(SIMULATED_BIT_LABEL)
    return path


class SimulatedDevice(Device):
    """The overlay's IPs simulated cycle by cycle behind pynq's Device interface."""

    def __init__(self, tag: str = "riskd-simulated-overlay") -> None:
        super().__init__(tag)
        self.capabilities = {"REGISTER_RW": True}
        self.name = "riskd simulated overlay (Amaranth)"
        self.timestamp = ""
        self.bitfile_name = ""
        self.sims: dict[str, AxiSim] = {}
        self._buffers: list[tuple[int, np.ndarray]] = []
        self._next = SIMULATED_DDR[0]

    # ----- metadata and download ---------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name: str) -> SimpleNamespace:
        ip_dict = {
            name: {"fullpath": name, "type": vlnv, "phys_addr": base, "addr_range": size, "state": None,
                   "interrupts": {}, "gpio": {}, "parameters": {}, "registers": {}, "mem_id": "s_axi_control"}
            for name, (vlnv, base, size) in SIMULATED_ADDRESS_MAP.items()
        }
        mem = {"simulated_ddr": {"fullpath": "simulated_ddr", "type": "DDR4", "base_address": SIMULATED_DDR[0],
                                 "size": SIMULATED_DDR[1], "used": 1, "raw_type": None, "streaming": False,
                                 "idx": 0, "tag": "simulated_ddr"}}
        return SimpleNamespace(ip_dict=ip_dict, mem_dict=mem, gpio_dict={}, interrupt_pins={},
                               interrupt_controllers={}, hierarchy_dict={}, clock_dict={}, systemgraph=None)

    def download(self, bitstream, parser=None) -> None:
        """'Program' the simulated fabric: fresh simulations of both IPs (reset state)."""
        with open(bitstream.bitfile_name, "rb") as f:
            head = f.read(len(SIMULATED_BIT_LABEL))
        if head != SIMULATED_BIT_LABEL:
            raise ValueError(f"{bitstream.bitfile_name}: not a simulated placeholder; a real bitstream"
                             " needs a board (SimulatedDevice runs the Amaranth simulation)")
        self.sims = {"risk_filter_0": AxiSim(FilterIP()),
                     "greeks_core_0": AxiSim(GreeksIP(), mem_read=self._mem_read, mem_write=self._mem_write)}
        self.post_download(bitstream, parser)

    # ----- MMIO (REGISTER_RW) -----------------------------------------------------
    def _target(self, address: int, length: int) -> tuple[AxiSim, int]:
        for name, (_, base, size) in SIMULATED_ADDRESS_MAP.items():
            if base <= address and address + length <= base + size:
                if name not in self.sims:
                    raise RuntimeError("simulated overlay not downloaded")
                return self.sims[name], address - base
        raise ValueError(f"address {address:#x} (+{length}) is in no IP of the simulated address map")

    def read_registers(self, address: int, length: int) -> bytes:
        sim, offset = self._target(address, length)
        if offset % 4 or length % 4:
            raise ValueError(f"AXI4-Lite reads are 32-bit aligned words: offset {offset:#x}, length {length}")
        return b"".join(sim.read(offset + i).to_bytes(4, "little") for i in range(0, length, 4))

    def write_registers(self, address: int, data: bytes) -> None:
        sim, offset = self._target(address, len(data))
        if offset % 4 or len(data) % 4:
            raise ValueError(f"AXI4-Lite writes are 32-bit aligned words: offset {offset:#x}, {len(data)} bytes")
        for i in range(0, len(data), 4):
            sim.write(offset + i, int.from_bytes(data[i:i + 4], "little"))

    # ----- memory --------------------------------------------------------------------
    def allocate(self, shape, dtype, **kwargs) -> PynqBuffer:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw = np.zeros(max(nbytes, 1), dtype=np.uint8)
        address = self._next
        self._next += (nbytes + 4095) // 4096 * 4096 or 4096  # 4 KiB aligned: AXI bursts never cross
        if self._next > SIMULATED_DDR[0] + SIMULATED_DDR[1]:
            raise MemoryError("simulated DDR exhausted")
        self._buffers.append((address, raw))
        return PynqBuffer(shape, dtype, buffer=raw, device=self, device_address=address, coherent=True)

    def _find(self, address: int, n: int) -> np.ndarray:
        for base, raw in self._buffers:
            if base <= address and address + n <= base + len(raw):
                return raw[address - base:address - base + n]
        raise ValueError(f"AXI access at {address:#x} (+{n}) outside every allocated buffer")

    def _mem_read(self, address: int, n: int) -> bytes:
        return self._find(address, n).tobytes()

    def _mem_write(self, address: int, data: bytes) -> None:
        self._find(address, len(data))[:] = np.frombuffer(data, dtype=np.uint8)
