"""Amaranth realization of a :class:`fpga_overlay.dataflow.Graph`: a stallable pipeline.

Every operation is registered (``mul`` twice: product, then rounding, so a
synthesis tool can put both in a DSP's pipeline registers); operands reaching a
node at different stages are delayed by shift registers so each node sees one
record's values. The whole pipeline advances on ``en = ~out_valid | out_ready``:
one record per clock in and out once full, and back-pressure freezes it without
losing a record. ROMs are synchronous memories (block RAM) whose read enable is
``en``.
"""

from __future__ import annotations

from amaranth.hdl import Const, Elaboratable, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from fpga_overlay.dataflow import LATENCY, DEFAULT_LATENCY, Graph, Node


def _shape(node: Node):
    return signed(node.width) if node.signed else unsigned(node.width)


class DataflowPipeline(Elaboratable):
    """The pipeline of ``graph``: ``i_<name>`` inputs, ``o_<name>`` outputs.

    Handshake: a record enters when ``in_valid & in_ready``; it leaves ``latency``
    enabled cycles later with ``out_valid``, held until ``out_ready``.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.latency = graph.latency
        self.in_valid = Signal()
        self.in_ready = Signal()
        self.out_valid = Signal()
        self.out_ready = Signal()
        self.inputs = {n.name: Signal(_shape(n), name=f"i_{n.name}") for n in graph.inputs}
        self.outputs = {k: Signal(_shape(n), name=f"o_{k}") for k, n in graph.outputs.items()}

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self.graph
        en = Signal()
        valid = [Signal(name=f"valid_{k}") for k in range(self.latency + 1)]
        m.d.comb += [
            en.eq(~valid[-1] | self.out_ready),
            self.in_ready.eq(en),
            valid[0].eq(self.in_valid),
            self.out_valid.eq(valid[-1]),
        ]
        with m.If(en):
            m.d.sync += [valid[k + 1].eq(valid[k]) for k in range(self.latency)]

        base: dict[int, object] = {}  # node -> its signal at its own stage
        delayed: dict[tuple[int, int], object] = {}
        stage = g.stage
        counter = [0]

        def at(node: Node, s: int):
            """``node``'s value as seen at stage ``s`` (delay registers as needed)."""
            if node.op == "const":
                return Const(node.params["value"], _shape(node))
            own = stage[id(node)]
            if s < own:
                raise AssertionError("operand used before it is valid")
            if s == own:
                return base[id(node)]
            key = (id(node), s)
            if key not in delayed:
                prev = at(node, s - 1)
                reg = Signal(_shape(node), name=f"d{counter[0]}_s{s}")
                counter[0] += 1
                with m.If(en):
                    m.d.sync += reg.eq(prev)
                delayed[key] = reg
            return delayed[key]

        for idx, n in enumerate(g.nodes):
            if n.op == "input":
                base[id(n)] = self.inputs[n.name]
                continue
            if n.op == "const":
                continue
            start = max(stage[id(a)] for a in n.args)
            a = [at(x, start) for x in n.args]
            out = Signal(_shape(n), name=f"n{idx}_{n.op}")
            p = n.params
            if n.op == "rom":
                mem = Memory(shape=_shape(n), depth=len(p["table"]), init=list(p["table"]))
                m.submodules[f"rom{idx}"] = mem
                port = mem.read_port(domain="sync")
                m.d.comb += [port.addr.eq(a[0]), port.en.eq(en)]
                m.d.comb += out.eq(port.data)
                base[id(n)] = out
                continue
            if n.op == "mul":
                prod = Signal(signed(n.args[0].width + n.args[1].width + 1), name=f"n{idx}_prod")
                with m.If(en):
                    m.d.sync += prod.eq(a[0] * a[1])
                k = p["shift"]
                expr = (prod + (1 << (k - 1))) >> k if k else prod
            elif n.op == "add":
                expr = a[0] + a[1]
            elif n.op == "sub":
                expr = a[0] - a[1]
            elif n.op == "shr":
                expr = (a[0] + (1 << (p["n"] - 1))) >> p["n"]
            elif n.op == "clamp":
                expr = Mux(a[0] < p["clo"], p["clo"], Mux(a[0] > p["chi"], p["chi"], a[0]))
            elif n.op == "msb":
                pos = Signal(_shape(n), name=f"n{idx}_pos")
                for i in range(n.args[0].width):
                    with m.If(a[0][i]):
                        m.d.comb += pos.eq(i)
                expr = pos
            elif n.op == "shl_var":
                expr = a[0] << a[1]
            elif n.op == "shr_var":
                expr = a[0] >> a[1]
            elif n.op == "bits":
                expr = a[0] >> p["blo"]  # the assignment keeps the low n bits
            elif n.op == "mux":
                expr = Mux(a[0], a[1], a[2])
            elif n.op == "abs":
                expr = Mux(a[0] < 0, -a[0], a[0])
            elif n.op == "ge":
                expr = a[0] >= a[1]
            elif n.op == "gt":
                expr = a[0] > a[1]
            elif n.op == "min":
                expr = Mux(a[0] < a[1], a[0], a[1])
            elif n.op == "max":
                expr = Mux(a[0] > a[1], a[0], a[1])
            elif n.op == "first":
                expr = Const(p["values"][-1], _shape(n))
                for cond, value in reversed(list(zip(a, p["values"]))):
                    expr = Mux(cond, Const(value, _shape(n)), expr)
            else:  # pragma: no cover
                raise ValueError(f"unknown op {n.op}")
            assert LATENCY.get(n.op, DEFAULT_LATENCY) >= 1
            with m.If(en):
                m.d.sync += out.eq(expr)
            base[id(n)] = out

        for name, node in g.outputs.items():
            m.d.comb += self.outputs[name].eq(at(node, self.latency))
        return m
