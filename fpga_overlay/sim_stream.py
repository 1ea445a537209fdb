"""Drive a pipeline's valid/ready stream in the Amaranth simulator (tests and the bench).

One Python step per clock cycle; for the big runs (the risk filter's 10,000
orders) the filter has its own feeder in hardware (:mod:`fpga_overlay.filter_sim`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from amaranth.sim import Simulator


class StreamResult:
    """Outputs (field -> list of ints, in order), cycles run, and the measured latency
    (cycles from the first record accepted to its result valid)."""

    def __init__(self, outputs: dict[str, list[int]], cycles: int, latency: int) -> None:
        self.outputs, self.cycles, self.latency = outputs, cycles, latency


def run_stream(dut, fields: dict[str, Sequence[int]], *, stall_seed: int | None = None,
               max_cycles: int | None = None) -> StreamResult:
    """Feed every record of ``fields`` into ``dut`` (``in_valid/in_ready/inputs``,
    ``out_valid/out_ready/outputs``) and collect the outputs.

    ``stall_seed``: randomize both the input gaps and the output back-pressure (each
    cycle with probability 1/4), to check that stalls lose nothing.
    """
    names = list(dut.inputs)
    n = len(next(iter(fields.values())))
    rows = [[int(v) for v in fields[name]] for name in names]
    rng = np.random.default_rng(stall_seed) if stall_seed is not None else None
    out: dict[str, list[int]] = {k: [] for k in dut.outputs}
    state = {"cycles": 0, "first_in": None, "first_out": None}
    limit = max_cycles or (4 * n + 400)

    async def bench(ctx) -> None:
        i = 0
        while len(out[next(iter(out))]) < n:
            if state["cycles"] > limit:
                raise TimeoutError(f"stream stalled: {len(out[next(iter(out))])} of {n} results after {limit} cycles")
            offer = i < n and (rng is None or rng.random() >= 0.25)
            ctx.set(dut.in_valid, int(offer))
            if offer:
                for name, col in zip(names, rows):
                    ctx.set(dut.inputs[name], col[i])
            ready = int(rng is None or rng.random() >= 0.25)
            ctx.set(dut.out_ready, ready)
            taken = offer and ctx.get(dut.in_ready)
            emitted = ready and ctx.get(dut.out_valid)
            if emitted:
                for k, sig in dut.outputs.items():
                    out[k].append(ctx.get(sig))
                if state["first_out"] is None:
                    state["first_out"] = state["cycles"]
            if taken:
                if state["first_in"] is None:
                    state["first_in"] = state["cycles"]
                i += 1
            await ctx.tick()
            state["cycles"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    latency = state["first_out"] - state["first_in"] if state["first_in"] is not None else 0
    return StreamResult(out, state["cycles"], latency)
