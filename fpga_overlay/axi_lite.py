"""AXI4-Lite control slave in the Vitis HLS register layout, and a register map.

Layout (byte addresses, 32-bit words), as a Vitis HLS ``s_axi_control`` port:

- 0x00 CTRL: bit 0 ap_start (write 1 to start; reads 1 while running), bit 1
  ap_done (set when the run ends, cleared by the read that returns it), bit 2
  ap_idle, bit 3 ap_ready;
- 0x04 GIE, 0x08 IER, 0x0C ISR: interrupt enables and status (bit 0 = done),
  ISR toggle-on-write as in HLS;
- from 0x10: the arguments, each in ceil(width / 32) consecutive words, least
  significant word first, then the results (read-only) in the same way.

One write and one read transaction at a time (AW and W taken together), OKAY
responses only, as the HLS slave does.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal

ARGS_BASE = 0x10


class RegisterMap:
    """Byte offsets of named argument and result registers, from :data:`ARGS_BASE`."""

    def __init__(self, args: list[tuple[str, int]], results: list[tuple[str, int]]) -> None:
        self.offsets: dict[str, tuple[int, int, int]] = {}  # name -> (offset, words, width)
        offset = ARGS_BASE
        for name, width in args + results:
            words = -(-width // 32)
            self.offsets[name] = (offset, words, width)
            offset += 4 * words
        self.args = [n for n, _ in args]
        self.results = [n for n, _ in results]
        self.size = offset

    def words(self, name: str, value: int) -> list[tuple[int, int]]:
        """(byte offset, 32-bit word) writes that set argument ``name`` to ``value``."""
        offset, words, width = self.offsets[name]
        value &= (1 << width) - 1
        return [(offset + 4 * i, (value >> (32 * i)) & 0xFFFFFFFF) for i in range(words)]


class AxiLiteSlave(Elaboratable):
    """The control slave: ``regs`` (a :class:`RegisterMap`) argument registers
    (``self.args[name]``), result inputs (``self.results[name]``, driven by the core),
    and the HLS handshake: ``start`` pulses when ap_start is written; the core pulses
    ``done`` when it finishes."""

    def __init__(self, regs: RegisterMap, addr_width: int = 12) -> None:
        self.regs = regs
        self.awaddr = Signal(addr_width)
        self.awvalid = Signal()
        self.awready = Signal()
        self.wdata = Signal(32)
        self.wstrb = Signal(4)
        self.wvalid = Signal()
        self.wready = Signal()
        self.bresp = Signal(2)
        self.bvalid = Signal()
        self.bready = Signal()
        self.araddr = Signal(addr_width)
        self.arvalid = Signal()
        self.arready = Signal()
        self.rdata = Signal(32)
        self.rresp = Signal(2)
        self.rvalid = Signal()
        self.rready = Signal()
        self.args = {n: Signal(regs.offsets[n][2], name=f"arg_{n}") for n in regs.args}
        self.results = {n: Signal(regs.offsets[n][2], name=f"res_{n}") for n in regs.results}
        self.start = Signal()
        self.done = Signal()
        self.busy = Signal()
        self.interrupt = Signal()

    def ports(self) -> list[Signal]:
        return [self.awaddr, self.awvalid, self.awready, self.wdata, self.wstrb, self.wvalid, self.wready,
                self.bresp, self.bvalid, self.bready, self.araddr, self.arvalid, self.arready, self.rdata,
                self.rresp, self.rvalid, self.rready, self.interrupt]

    def elaborate(self, platform) -> Module:
        m = Module()
        ap_done = Signal()
        gie = Signal()
        ier = Signal(2)
        isr = Signal(2)
        m.d.comb += [self.start.eq(0), self.interrupt.eq(gie & (isr != 0))]

        # write channel: AW and W together
        take_w = Signal()
        m.d.comb += [take_w.eq(self.awvalid & self.wvalid & ~self.bvalid),
                     self.awready.eq(take_w), self.wready.eq(take_w), self.bresp.eq(0)]
        with m.If(self.bvalid & self.bready):
            m.d.sync += self.bvalid.eq(0)
        word_addr = self.awaddr >> 2
        with m.If(take_w):
            m.d.sync += self.bvalid.eq(1)
            with m.Switch(word_addr):
                with m.Case(0):
                    with m.If(self.wdata[0] & self.wstrb[0] & ~self.busy):
                        m.d.comb += self.start.eq(1)
                with m.Case(1):
                    m.d.sync += gie.eq(self.wdata[0])
                with m.Case(2):
                    m.d.sync += ier.eq(self.wdata[0:2])
                with m.Case(3):
                    m.d.sync += isr.eq(isr ^ self.wdata[0:2])
                for name in self.regs.args:
                    offset, words, width = self.regs.offsets[name]
                    for i in range(words):
                        with m.Case((offset >> 2) + i):
                            hi = min(32 * (i + 1), width)
                            m.d.sync += self.args[name][32 * i:hi].eq(self.wdata[:hi - 32 * i])

        # read channel
        m.d.comb += [self.arready.eq(~self.rvalid), self.rresp.eq(0)]
        with m.If(self.rvalid & self.rready):
            m.d.sync += self.rvalid.eq(0)
        with m.If(self.arvalid & ~self.rvalid):
            m.d.sync += [self.rvalid.eq(1), self.rdata.eq(0)]
            with m.Switch(self.araddr >> 2):
                with m.Case(0):
                    m.d.sync += self.rdata.eq(Cat(self.busy, ap_done, ~self.busy, ~self.busy))
                    m.d.sync += ap_done.eq(0)  # clear on read
                with m.Case(1):
                    m.d.sync += self.rdata.eq(gie)
                with m.Case(2):
                    m.d.sync += self.rdata.eq(ier)
                with m.Case(3):
                    m.d.sync += self.rdata.eq(isr)
                regs = {**self.args, **self.results}
                for name, sig in regs.items():
                    offset, words, width = self.regs.offsets[name]
                    for i in range(words):
                        with m.Case((offset >> 2) + i):
                            m.d.sync += self.rdata.eq(sig[32 * i:min(32 * (i + 1), width)])
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), ap_done.eq(0)]
        with m.If(self.done):
            m.d.sync += [self.busy.eq(0), ap_done.eq(1)]
            with m.If(ier[0]):
                m.d.sync += isr[0].eq(1)
        return m
