"""cocotb testbench of the exported risk_filter.v: AXI4-Lite transactions from Python against
the bit-exact model (fpga_overlay.risk_filter.model), active-low reset included.

Run by tests/test_fpga_cocotb.py (cocotb 2.x, Icarus Verilog); RISKD_COCOTB_N records.
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from fpga_overlay import risk_filter as rf
from fpga_overlay.cores import FILTER_REGS

P = "s_axi_control_"


def _sig(dut, name):
    return getattr(dut, P + name)


async def axi_write(dut, addr: int, value: int) -> None:
    _sig(dut, "AWADDR").value = addr
    _sig(dut, "WDATA").value = value
    _sig(dut, "WSTRB").value = 0xF
    _sig(dut, "AWVALID").value = 1
    _sig(dut, "WVALID").value = 1
    _sig(dut, "BREADY").value = 1
    while True:
        await RisingEdge(dut.ap_clk)
        if int(_sig(dut, "AWREADY").value):
            break
    _sig(dut, "AWVALID").value = 0
    _sig(dut, "WVALID").value = 0
    while True:
        await ReadOnly()
        if int(_sig(dut, "BVALID").value):
            break
        await RisingEdge(dut.ap_clk)
    await RisingEdge(dut.ap_clk)
    _sig(dut, "BREADY").value = 0


async def axi_read(dut, addr: int) -> int:
    _sig(dut, "ARADDR").value = addr
    _sig(dut, "ARVALID").value = 1
    _sig(dut, "RREADY").value = 1
    while True:
        await RisingEdge(dut.ap_clk)
        if int(_sig(dut, "ARREADY").value):
            break
    _sig(dut, "ARVALID").value = 0
    while True:
        await ReadOnly()
        if int(_sig(dut, "RVALID").value):
            value = int(_sig(dut, "RDATA").value)
            break
        await RisingEdge(dut.ap_clk)
    await RisingEdge(dut.ap_clk)
    _sig(dut, "RREADY").value = 0
    return value


def records(n: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    out: dict[str, list[int]] = {}
    for name, (bits, _) in rf.FIELDS.items():
        lo, hi = rf.field_range(name)
        if bits == 1:
            out[name] = [int(rng.random() < (0.08 if name.startswith("kill") else 0.5)) for _ in range(n)]
        else:
            out[name] = [min(max(rng.getrandbits(rng.randint(1, bits)) * rng.choice((-1, 1)), lo), hi)
                         for _ in range(n)]
    return out


@cocotb.test()
async def filter_matches_model(dut) -> None:
    cocotb.start_soon(Clock(dut.ap_clk, 10, unit="ns").start())
    for name in ("AWVALID", "WVALID", "BREADY", "ARVALID", "RREADY"):
        _sig(dut, name).value = 0
    dut.ap_rst_n.value = 0
    for _ in range(5):
        await RisingEdge(dut.ap_clk)
    dut.ap_rst_n.value = 1
    await RisingEdge(dut.ap_clk)
    assert (await axi_read(dut, 0x00)) & 0x7 == 0x4, "after reset: idle, not started, not done"
    n = int(os.environ.get("RISKD_COCOTB_N", "40"))
    fields = records(n, seed=11)
    want = rf.model({k: np.asarray(v, dtype=object) for k, v in fields.items()})
    seen = set()
    for i in range(n):
        for name in rf.FIELDS:
            for offset, word in FILTER_REGS.words(name, fields[name][i]):
                await axi_write(dut, offset, word)
        await axi_write(dut, 0x00, 1)
        polls = 0
        while not (await axi_read(dut, 0x00)) & 0x2:
            polls += 1
            assert polls < 100, "ap_done never set"
        decision = await axi_read(dut, FILTER_REGS.offsets["decision"][0])
        off, words, width = FILTER_REGS.offsets["im_after"]
        raw = 0
        for w in range(words):
            raw |= (await axi_read(dut, off + 4 * w)) << (32 * w)
        im = raw - (1 << width) if raw >> (width - 1) else raw
        assert decision & 1 == int(want["accept"][i]), i
        assert decision >> 1 == int(want["code"][i]), i
        assert im == int(want["im_after"][i]), i
        seen.add(decision >> 1)
        if i == n // 2:  # an active-low reset between orders: back to idle, registers cleared
            dut.ap_rst_n.value = 0
            await RisingEdge(dut.ap_clk)
            await RisingEdge(dut.ap_clk)
            dut.ap_rst_n.value = 1
            await RisingEdge(dut.ap_clk)
            assert (await axi_read(dut, 0x00)) & 0x7 == 0x4
            assert await axi_read(dut, FILTER_REGS.offsets["decision"][0]) == 0
    assert len(seen) >= 5, seen
