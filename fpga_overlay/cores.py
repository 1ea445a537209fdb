"""The two overlay IPs: the pipelines behind Vitis-HLS-style AXI interfaces.

- :class:`FilterIP`: the risk filter behind the AXI4-Lite control slave: the order
  record is written as arguments, ap_start runs it, the decision is read back.
- :class:`GreeksIP`: the Greeks core with AXI-Lite control (``src``, ``dst``, ``n``)
  and an AXI4 master (``m_axi_gmem``, 512-bit beats): ``n`` option records (one beat
  each) are read from ``src``, priced one per clock and written to ``dst``.
- :class:`HlsTop`: the exported top level: ``ap_clk``, the active-low ``ap_rst_n``,
  ``s_axi_control_*``, ``m_axi_gmem_*`` and ``interrupt``, the names Vivado's
  interface inference maps to AXI bus interfaces.

Memory record of the Greeks core (64 bytes per option, 64-bit little-endian
lanes, sign-extended): in s, k, t, vol, r, q, is_call (greeks_core's formats) then
one unused lane; out price, delta, gamma, vega, theta then three zero lanes.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal, Signal

from fpga_overlay import greeks_core as gc
from fpga_overlay import risk_filter as rf
from fpga_overlay.axi_lite import AxiLiteSlave, RegisterMap
from fpga_overlay.axi_master import AxiMasterStream
from fpga_overlay.hdl_dataflow import DataflowPipeline

GREEKS_VLNV = "riskd:fpga:greeks_core:1.0"
FILTER_VLNV = "riskd:fpga:risk_filter:1.0"
LANE = 64
RECORD_BYTES = 64

GREEKS_REGS = RegisterMap([("src", 64), ("dst", 64), ("n", 32)], [("cycles", 32)])
FILTER_REGS = RegisterMap([(name, bits) for name, (bits, _) in rf.FIELDS.items()],
                          [("decision", 32), ("im_after", 96), ("cycles", 32)])


class _Counter:
    """Cycles from ap_start to done (a result register: latency as the hardware sees it)."""

    @staticmethod
    def add(m: Module, start: Signal, done: Signal, busy: Signal, out: Signal) -> None:
        with m.If(start):
            m.d.sync += out.eq(0)
        with m.Elif(busy & ~done):
            m.d.sync += out.eq(out + 1)


class FilterIP(Elaboratable):
    """The risk filter, one order per ap_start. Result ``decision``: bit 0 accept,
    bits 1..5 the reason code (index into FilterReason.ALL); ``im_after``: currency Q16."""

    vlnv = FILTER_VLNV

    def __init__(self) -> None:
        self.ctrl = AxiLiteSlave(FILTER_REGS)
        self.pipe = DataflowPipeline(rf.filter_graph())
        self.gmem = None

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.ctrl = ctrl = self.ctrl
        m.submodules.pipe = pipe = self.pipe
        for name, sig in pipe.inputs.items():
            m.d.comb += sig.eq(ctrl.args[name])
        m.d.comb += [pipe.in_valid.eq(ctrl.start), pipe.out_ready.eq(1), ctrl.done.eq(pipe.out_valid)]
        with m.If(pipe.out_valid):
            m.d.sync += [ctrl.results["decision"].eq(pipe.outputs["accept"] | (pipe.outputs["code"] << 1)),
                         ctrl.results["im_after"].eq(pipe.outputs["im_after"])]
        _Counter.add(m, ctrl.start, ctrl.done, ctrl.busy, ctrl.results["cycles"])
        return m


class GreeksIP(Elaboratable):
    """The Greeks core over AXI4: ``n`` records from ``src`` to ``dst``, one per clock."""

    vlnv = GREEKS_VLNV

    def __init__(self) -> None:
        self.ctrl = AxiLiteSlave(GREEKS_REGS)
        self.gmem = AxiMasterStream(data_width=8 * RECORD_BYTES)
        self.pipe = DataflowPipeline(gc.greeks_graph())

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.ctrl = ctrl = self.ctrl
        m.submodules.gmem = gmem = self.gmem
        m.submodules.pipe = pipe = self.pipe
        m.d.comb += [gmem.start.eq(ctrl.start), gmem.src.eq(ctrl.args["src"]), gmem.dst.eq(ctrl.args["dst"]),
                     gmem.n.eq(ctrl.args["n"]), ctrl.done.eq(gmem.done),
                     pipe.in_valid.eq(gmem.in_valid), gmem.in_ready.eq(pipe.in_ready),
                     gmem.out_valid.eq(pipe.out_valid), pipe.out_ready.eq(gmem.out_ready)]
        for i, name in enumerate(gc.INPUTS):
            m.d.comb += pipe.inputs[name].eq(gmem.in_data[LANE * i:LANE * (i + 1)])
        for i, name in enumerate(gc.OUTPUTS):
            m.d.comb += gmem.out_data[LANE * i:LANE * (i + 1)].eq(pipe.outputs[name])
        _Counter.add(m, ctrl.start, ctrl.done, ctrl.busy, ctrl.results["cycles"])
        return m


class HlsTop(Elaboratable):
    """Exported top level of an IP: its own clock domain with the active-low reset."""

    def __init__(self, ip: FilterIP | GreeksIP) -> None:
        self.ip = ip
        self.ap_clk = Signal()
        self.ap_rst_n = Signal()
        self.pins: dict[str, Signal] = {}
        for port in ip.ctrl.ports():
            name = "interrupt" if port is ip.ctrl.interrupt else f"s_axi_control_{port.name.upper()}"
            self.pins[name] = port
        if ip.gmem is not None:
            for port in ip.gmem.ports():
                self.pins[f"m_axi_gmem_{port.name.upper()}"] = port
        self.wires = {name: Signal(len(port), name=name) for name, port in self.pins.items()}
        outs = [ip.ctrl.awready, ip.ctrl.wready, ip.ctrl.bresp, ip.ctrl.bvalid, ip.ctrl.arready,
                         ip.ctrl.rdata, ip.ctrl.rresp, ip.ctrl.rvalid, ip.ctrl.interrupt]
        if ip.gmem is not None:
            g = ip.gmem
            outs += [g.araddr, g.arlen, g.arsize, g.arburst, g.arvalid, g.rready, g.awaddr, g.awlen,
                              g.awsize, g.awburst, g.awvalid, g.wdata, g.wstrb, g.wlast, g.wvalid, g.bready]
        self._outputs = {id(s) for s in outs}

    def ports(self) -> list[Signal]:
        return [self.ap_clk, self.ap_rst_n, *self.wires.values()]

    def elaborate(self, platform) -> Module:
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(self.ap_clk), ResetSignal("sync").eq(~self.ap_rst_n)]
        m.submodules.ip = self.ip
        for name, port in self.pins.items():
            wire = self.wires[name]
            m.d.comb += (wire.eq(port) if id(port) in self._outputs else port.eq(wire))
        return m
