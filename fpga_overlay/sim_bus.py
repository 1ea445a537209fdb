"""AXI transactions on the Amaranth simulation of one overlay IP.

:class:`AxiSim` keeps a simulator of a :class:`fpga_overlay.cores.FilterIP` or
:class:`~fpga_overlay.cores.GreeksIP` alive between calls: each register read or
write runs one AXI4-Lite transaction cycle by cycle, and (for the Greeks IP) a
background process answers the AXI4 master's bursts from host memory through
``mem_read(addr, nbytes) -> bytes`` / ``mem_write(addr, data)`` callbacks. Time
only advances during transactions, as a polling driver would see it.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from amaranth.sim import Simulator


class AxiSim:
    """One IP's simulation. ``cycles``: clock cycles simulated so far."""

    def __init__(self, ip, mem_read: Callable[[int, int], bytes] | None = None,
                 mem_write: Callable[[int, bytes], None] | None = None) -> None:
        self.ip = ip
        self.ctrl = ip.ctrl
        self.cycles = 0
        self.sim = Simulator(ip)
        self.sim.add_clock(1e-8)
        self._queue: deque = deque()
        self._finished = 0
        self.sim.add_testbench(self._driver)
        if ip.gmem is not None:
            if mem_read is None or mem_write is None:
                raise ValueError("the Greeks IP's AXI master needs mem_read and mem_write")
            self._mem_read, self._mem_write = mem_read, mem_write
            self.sim.add_testbench(self._memory, background=True)

    # ----- AXI4-Lite -----------------------------------------------------------
    def write(self, addr: int, value: int) -> None:
        """One AXI4-Lite write of a 32-bit word at byte ``addr``."""
        c = self.ctrl

        async def txn(ctx) -> None:
            ctx.set(c.awaddr, addr)
            ctx.set(c.wdata, value & 0xFFFFFFFF)
            ctx.set(c.wstrb, 0xF)
            ctx.set(c.awvalid, 1)
            ctx.set(c.wvalid, 1)
            while not ctx.get(c.awready):
                await self._tick(ctx)
            await self._tick(ctx)
            ctx.set(c.awvalid, 0)
            ctx.set(c.wvalid, 0)
            ctx.set(c.bready, 1)
            while not ctx.get(c.bvalid):
                await self._tick(ctx)
            await self._tick(ctx)
            ctx.set(c.bready, 0)

        self._run(txn)

    def read(self, addr: int) -> int:
        """One AXI4-Lite read of the 32-bit word at byte ``addr``."""
        c = self.ctrl
        out: list[int] = []

        async def txn(ctx) -> None:
            ctx.set(c.araddr, addr)
            ctx.set(c.arvalid, 1)
            while not ctx.get(c.arready):
                await self._tick(ctx)
            await self._tick(ctx)
            ctx.set(c.arvalid, 0)
            ctx.set(c.rready, 1)
            while not ctx.get(c.rvalid):
                await self._tick(ctx)
            out.append(ctx.get(c.rdata))
            await self._tick(ctx)
            ctx.set(c.rready, 0)

        self._run(txn)
        return out[0]

    async def _tick(self, ctx) -> None:
        await ctx.tick()
        self.cycles += 1

    def _run(self, txn) -> None:
        # Amaranth takes no new testbench once a simulation ran: one driver coroutine
        # runs the queued transactions, and the simulation advances until it has.
        target = self._finished + 1
        self._queue.append(txn)
        while self._finished < target:
            self.sim.advance()

    async def _driver(self, ctx) -> None:
        while True:
            if self._queue:
                await self._queue.popleft()(ctx)
                self._finished += 1
            else:
                await self._tick(ctx)

    # ----- AXI4 memory slave for the Greeks IP's master ----------------------------
    async def _memory(self, ctx) -> None:
        g = self.ip.gmem
        beat = g.beat_bytes
        reads: deque[tuple[int, int]] = deque()   # (address, beats left)
        writes: deque[tuple[int, int]] = deque()
        bresp = 0
        ctx.set(g.arready, 1)
        ctx.set(g.awready, 1)
        ctx.set(g.wready, 1)
        while True:
            # sample the master's outputs before the edge (they are registered or settled)
            if ctx.get(g.arvalid):
                reads.append((ctx.get(g.araddr), ctx.get(g.arlen) + 1))
            if ctx.get(g.awvalid):
                writes.append((ctx.get(g.awaddr), ctx.get(g.awlen) + 1))
            r_taken = ctx.get(g.rvalid) and ctx.get(g.rready)
            if ctx.get(g.wvalid) and writes:
                addr, left = writes[0]
                data = ctx.get(g.wdata)
                self._mem_write(addr, data.to_bytes(beat, "little"))
                writes[0] = (addr + beat, left - 1)
                if left == 1:
                    writes.popleft()
                    bresp += 1
            b_taken = ctx.get(g.bvalid) and ctx.get(g.bready)
            await ctx.tick()
            if r_taken:
                addr, left = reads[0]
                reads[0] = (addr + beat, left - 1)
                if left == 1:
                    reads.popleft()
            if b_taken:
                bresp -= 1
            if reads:
                addr, left = reads[0]
                ctx.set(g.rdata, int.from_bytes(self._mem_read(addr, beat), "little"))
                ctx.set(g.rlast, left == 1)
                ctx.set(g.rvalid, 1)
            else:
                ctx.set(g.rvalid, 0)
                ctx.set(g.rlast, 0)
            ctx.set(g.bvalid, int(bresp > 0))
