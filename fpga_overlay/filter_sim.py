"""Fast streaming of many records through a pipeline in the Amaranth simulator.

:func:`fpga_overlay.sim_stream.run_stream` sets every field of every record from
Python (tens of calls per cycle for the risk filter's 66 fields). Here the records
are packed into one wide word per record and held in a ROM inside the simulated
design; a counter feeds them one per clock, so the Python testbench only reads one
packed result word per cycle. The ROM and the unpacking are test scaffolding
around the unchanged pipeline (they are not part of the exported core).
"""

from __future__ import annotations

from typing import Sequence

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from fpga_overlay.hdl_dataflow import DataflowPipeline


def _widths(signals: dict) -> list[tuple[str, int, int]]:
    """(name, offset, width) of each signal in the packed word, in dict order."""
    out, offset = [], 0
    for name, sig in signals.items():
        out.append((name, offset, len(sig)))
        offset += len(sig)
    return out


def pack(values: dict[str, Sequence[int]], layout: list[tuple[str, int, int]], n: int) -> list[int]:
    words = []
    for i in range(n):
        w = 0
        for name, off, width in layout:
            w |= (int(values[name][i]) & ((1 << width) - 1)) << off
        words.append(w)
    return words


class _Fed(Elaboratable):
    def __init__(self, dut: DataflowPipeline, words: list[int]) -> None:
        self.dut = dut
        self.words = words
        self.in_layout = _widths(dut.inputs)
        self.out_layout = _widths(dut.outputs)
        self.out_word = Signal(sum(w for _, _, w in self.out_layout))
        self.out_valid = Signal()
        self.taken = Signal(range(len(words) + 2))

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dut = dut = self.dut
        width = sum(w for _, _, w in self.in_layout)
        m.submodules.rom = rom = Memory(shape=width, depth=len(self.words), init=self.words)
        port = rom.read_port(domain="comb")
        n = len(self.words)
        m.d.comb += [port.addr.eq(self.taken), dut.in_valid.eq(self.taken < n), dut.out_ready.eq(1)]
        for name, off, w in self.in_layout:
            m.d.comb += dut.inputs[name].eq(port.data[off:off + w])
        with m.If(dut.in_valid & dut.in_ready):
            m.d.sync += self.taken.eq(self.taken + 1)
        for name, off, w in self.out_layout:
            m.d.comb += self.out_word[off:off + w].eq(dut.outputs[name])
        m.d.comb += self.out_valid.eq(dut.out_valid)
        return m


def _signed(v: int, width: int) -> int:
    return v - (1 << width) if v >> (width - 1) else v


def run_fed(dut: DataflowPipeline, fields: dict[str, Sequence[int]]) -> tuple[dict[str, list[int]], int]:
    """Run every record of ``fields`` through ``dut`` at one record per clock; returns
    (outputs field -> ints in order, cycles from the first record in to the last result out)."""
    n = len(next(iter(fields.values())))
    layout = _widths(dut.inputs)
    top = _Fed(dut, pack(fields, layout, n))
    words: list[int] = []

    async def bench(ctx) -> None:
        cycles = 0
        while len(words) < n:
            if cycles > n + 4 * dut.latency + 16:
                raise TimeoutError(f"filter stream stalled: {len(words)} of {n} results")
            if ctx.get(top.out_valid):
                words.append(ctx.get(top.out_word))
            await ctx.tick()
            cycles += 1
        state["cycles"] = cycles

    state = {"cycles": 0}
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    out: dict[str, list[int]] = {}
    for name, off, w in top.out_layout:
        raw = [(word >> off) & ((1 << w) - 1) for word in words]
        out[name] = [_signed(v, w) for v in raw] if dut.outputs[name].shape().signed else raw
    return out, state["cycles"]
