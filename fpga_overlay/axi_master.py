"""An AXI4 master that streams fixed-size records from memory through a pipeline and back.

Read engine: INCR bursts of up to 64 beats (one record per beat, ``data_width``
bits; 4 KiB boundaries respected by the host's 4 KiB-aligned buffers and a burst
never crossing one: 64 beats x 64 bytes = 4 KiB), one burst outstanding, beats
handed to the pipeline as they arrive. Write engine: one AW per burst of results,
W beats straight from the pipeline's output, B responses counted. ``done`` pulses
when every B response of ``n`` records has come back.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Mux, Signal

MAX_BURST = 64


class AxiMasterStream(Elaboratable):
    """``n`` records from ``src`` -> pipeline -> ``dst`` (byte addresses, beat-aligned)."""

    def __init__(self, data_width: int = 512, addr_width: int = 64) -> None:
        self.dw = data_width
        self.beat_bytes = data_width // 8
        # control
        self.start = Signal()
        self.src = Signal(addr_width)
        self.dst = Signal(addr_width)
        self.n = Signal(32)
        self.done = Signal()
        # pipeline side
        self.in_data = Signal(data_width)
        self.in_valid = Signal()
        self.in_ready = Signal()
        self.out_data = Signal(data_width)
        self.out_valid = Signal()
        self.out_ready = Signal()
        # AXI4 master
        self.araddr, self.arlen, self.arvalid, self.arready = Signal(addr_width), Signal(8), Signal(), Signal()
        self.arsize, self.arburst = Signal(3), Signal(2)
        self.rdata, self.rlast, self.rvalid, self.rready = Signal(data_width), Signal(), Signal(), Signal()
        self.rresp = Signal(2)
        self.awaddr, self.awlen, self.awvalid, self.awready = Signal(addr_width), Signal(8), Signal(), Signal()
        self.awsize, self.awburst = Signal(3), Signal(2)
        self.wdata, self.wstrb, self.wlast, self.wvalid, self.wready = (Signal(data_width), Signal(data_width // 8),
                                                                         Signal(), Signal(), Signal())
        self.bresp, self.bvalid, self.bready = Signal(2), Signal(), Signal()

    def ports(self) -> list[Signal]:
        return [self.araddr, self.arlen, self.arsize, self.arburst, self.arvalid, self.arready, self.rdata,
                self.rresp, self.rlast, self.rvalid, self.rready, self.awaddr, self.awlen, self.awsize,
                self.awburst, self.awvalid, self.awready, self.wdata, self.wstrb, self.wlast, self.wvalid,
                self.wready, self.bresp, self.bvalid, self.bready]

    def elaborate(self, platform) -> Module:
        m = Module()
        size_code = (self.beat_bytes - 1).bit_length()
        m.d.comb += [self.arsize.eq(size_code), self.awsize.eq(size_code), self.arburst.eq(1),
                     self.awburst.eq(1), self.wstrb.eq(-1)]
        rd_left = Signal(32)     # records not yet requested
        rd_burst = Signal()      # a read burst is outstanding
        wr_left = Signal(32)     # results without an AW yet
        w_beats = Signal(8)      # beats left in the current write burst
        w_open = Signal()
        b_left = Signal(32)      # B responses to come
        rd_addr = Signal.like(self.src)
        wr_addr = Signal.like(self.dst)
        running = Signal()

        with m.If(self.start):
            m.d.sync += [rd_left.eq(self.n), wr_left.eq(self.n), rd_addr.eq(self.src), wr_addr.eq(self.dst),
                         b_left.eq((self.n + MAX_BURST - 1) >> MAX_BURST.bit_length() - 1), running.eq(1),
                         rd_burst.eq(0), w_open.eq(0), self.arvalid.eq(0), self.awvalid.eq(0)]

        def burst_len(left):
            return Mux(left > MAX_BURST, MAX_BURST, left)

        # read address
        with m.If(running & ~rd_burst & ~self.arvalid & (rd_left != 0)):
            length = burst_len(rd_left)
            m.d.sync += [self.araddr.eq(rd_addr), self.arlen.eq(length - 1), self.arvalid.eq(1),
                         rd_left.eq(rd_left - length), rd_addr.eq(rd_addr + length * self.beat_bytes)]
        with m.If(self.arvalid & self.arready):
            m.d.sync += [self.arvalid.eq(0), rd_burst.eq(1)]
        # read data -> pipeline
        m.d.comb += [self.in_data.eq(self.rdata), self.in_valid.eq(self.rvalid), self.rready.eq(self.in_ready)]
        with m.If(self.rvalid & self.rready & self.rlast):
            m.d.sync += rd_burst.eq(0)

        # write address, one burst at a time
        with m.If(running & ~w_open & ~self.awvalid & (wr_left != 0)):
            length = burst_len(wr_left)
            m.d.sync += [self.awaddr.eq(wr_addr), self.awlen.eq(length - 1), self.awvalid.eq(1),
                         wr_left.eq(wr_left - length), wr_addr.eq(wr_addr + length * self.beat_bytes),
                         w_beats.eq(length), w_open.eq(1)]
        with m.If(self.awvalid & self.awready):
            m.d.sync += self.awvalid.eq(0)
        # pipeline -> write data (only inside an announced burst)
        m.d.comb += [self.wdata.eq(self.out_data), self.wlast.eq(w_beats == 1),
                     self.wvalid.eq(self.out_valid & w_open), self.out_ready.eq(self.wready & w_open)]
        with m.If(self.wvalid & self.wready):
            m.d.sync += w_beats.eq(w_beats - 1)
            with m.If(w_beats == 1):
                m.d.sync += w_open.eq(0)
        m.d.comb += self.bready.eq(1)
        m.d.comb += self.done.eq(0)
        with m.If(running & self.bvalid):
            m.d.sync += b_left.eq(b_left - 1)
            with m.If(b_left == 1):
                m.d.sync += running.eq(0)
                m.d.comb += self.done.eq(1)
        with m.If(running & (self.n == 0) & ~self.start):
            m.d.sync += running.eq(0)
            m.d.comb += self.done.eq(1)
        return m
