"""A fixed-point dataflow graph: one description, two executions.

The Greeks core is written once as a graph of integer operations (this module's
:class:`Graph`). :func:`evaluate` runs the graph on NumPy arrays of Python ints (the
bit-exact model); :mod:`fpga_overlay.hdl_dataflow` turns the same graph into an
Amaranth pipeline. Both follow the semantics stated here, so "identical bits"
between the simulation and the model checks the hardware realization (registers,
pipeline alignment, ROMs, widths, stalls), not the algorithm, which is checked
against float64 separately.

Every node carries the exact integer range ``[lo, hi]`` of its value (interval
arithmetic from its inputs), from which its signal width follows: no node can
overflow, so Python ints and the hardware agree by construction of the widths.

Semantics (all values are integers; fixed-point scaling is the caller's concern):

- ``mul(a, b, shift)``: ``(a * b + 2**(shift-1)) >> shift`` (round half up; ``>>``
  is an arithmetic, flooring shift); ``shift = 0`` is the exact product.
- ``shr(a, n)``: ``(a + 2**(n-1)) >> n``.
- ``clamp(a, lo, hi)``: saturation.
- ``msb(a)``: the position of the leading one of ``a >= 0`` (0 for ``a == 0``).
- ``shl_var(a, n)``: ``a << n`` for ``n >= 0``; ``shr_var(a, n)``: ``a >> n`` (floor).
- ``bits(a, lo, n)``: ``(a >> lo) & (2**n - 1)`` for ``a >= 0``.
- ``rom(index, table)``: ``table[index]`` (a synchronous ROM in hardware).
- ``abs(a)``: ``|a|``; ``mux(sel, a, b)``: ``a if sel else b``; ``ge(a, b)``: ``1 if a >= b else 0``;
  ``gt(a, b)``: ``1 if a > b else 0``; ``min(a, b)``, ``max(a, b)``.
- ``first(c1, v1, ..., cn, vn, default)``: the value of the first true condition (a
  priority encoder), else ``default``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: Pipeline registers an operation adds (its latency in cycles).
LATENCY = {"input": 0, "const": 0, "mul": 2, "rom": 1}
DEFAULT_LATENCY = 1


@dataclass(eq=False)
class Node:
    """One value of the graph: an operation on earlier nodes, with its integer range."""

    op: str
    args: tuple["Node", ...]
    lo: int
    hi: int
    params: dict = field(default_factory=dict)
    name: str = ""

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def width(self) -> int:
        """Bits of the two's-complement (signed) or unsigned signal holding [lo, hi]."""
        if self.signed:
            return max((-self.lo - 1).bit_length(), self.hi.bit_length()) + 1
        return max(self.hi.bit_length(), 1)

    # operators, for readable algorithm code
    def __add__(self, other: "Node | int") -> "Node":
        return add(self, _lift(other))

    def __sub__(self, other: "Node | int") -> "Node":
        return sub(self, _lift(other))

    def __neg__(self) -> "Node":
        return sub(const(0), self)


def _lift(x: "Node | int") -> Node:
    return x if isinstance(x, Node) else const(int(x))


def _mk(op: str, args: Sequence[Node], lo: int, hi: int, **params) -> Node:
    if lo > hi:
        raise ValueError(f"{op}: empty range [{lo}, {hi}]")
    return Node(op, tuple(args), int(lo), int(hi), params)


def input_(name: str, lo: int, hi: int) -> Node:
    """A field of the input record, an integer in [lo, hi]."""
    node = _mk("input", (), lo, hi)
    node.name = name
    return node


def const(value: int) -> Node:
    return _mk("const", (), value, value, value=int(value))


def add(a: Node, b: Node) -> Node:
    return _mk("add", (a, b), a.lo + b.lo, a.hi + b.hi)


def sub(a: Node, b: Node) -> Node:
    return _mk("sub", (a, b), a.lo - b.hi, a.hi - b.lo)


def _round_shift(v: int, n: int) -> int:
    return (v + (1 << (n - 1))) >> n if n > 0 else v


def mul(a: Node, b: Node, shift: int) -> Node:
    corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    return _mk("mul", (a, b), _round_shift(min(corners), shift), _round_shift(max(corners), shift), shift=shift)


def shr(a: Node, n: int) -> Node:
    return _mk("shr", (a,), _round_shift(a.lo, n), _round_shift(a.hi, n), n=n)


def clamp(a: Node, lo: int, hi: int) -> Node:
    return _mk("clamp", (a,), max(a.lo, lo), min(a.hi, hi), clo=int(lo), chi=int(hi))


def msb(a: Node) -> Node:
    if a.lo < 0:
        raise ValueError("msb: operand must be >= 0")
    return _mk("msb", (a,), 0, max(a.hi.bit_length() - 1, 0))


def shl_var(a: Node, n: Node, below: int | None = None) -> Node:
    """``a << n``; ``below``: a bound the caller guarantees (result < below), e.g. a
    normalization, which :func:`evaluate` checks on every value."""
    if n.lo < 0:
        raise ValueError("shl_var: shift must be >= 0")
    hi = max(a.hi << n.hi, a.hi)
    return _mk("shl_var", (a, n), min(a.lo << n.hi, a.lo), hi if below is None else min(hi, below - 1))


def shr_var(a: Node, n: Node) -> Node:
    if n.lo < 0:
        raise ValueError("shr_var: shift must be >= 0")
    return _mk("shr_var", (a, n), min(a.lo, a.lo >> n.hi), max(a.hi, a.hi >> n.hi))


def bits(a: Node, lo: int, n: int) -> Node:
    if a.lo < 0:
        raise ValueError("bits: operand must be >= 0")
    return _mk("bits", (a,), 0, (1 << n) - 1, blo=lo, n=n)


def rom(index: Node, table: Sequence[int]) -> Node:
    table = tuple(int(v) for v in table)
    if index.lo < 0 or index.hi >= len(table):
        raise ValueError(f"rom: index range [{index.lo}, {index.hi}] outside a table of {len(table)}")
    return _mk("rom", (index,), min(table), max(table), table=table)


def mux(sel: Node, a: Node, b: Node) -> Node:
    return _mk("mux", (sel, a, b), min(a.lo, b.lo), max(a.hi, b.hi))


def abs_(a: Node) -> Node:
    return _mk("abs", (a,), 0 if a.lo <= 0 <= a.hi else min(abs(a.lo), abs(a.hi)), max(abs(a.lo), abs(a.hi)))


def ge(a: Node, b: Node) -> Node:
    return _mk("ge", (a, b), 0, 1)


def gt(a: Node, b: Node) -> Node:
    return _mk("gt", (a, b), 0, 1)


def min_(a: Node, b: Node) -> Node:
    return _mk("min", (a, b), min(a.lo, b.lo), min(a.hi, b.hi))


def max_(a: Node, b: Node) -> Node:
    return _mk("max", (a, b), max(a.lo, b.lo), max(a.hi, b.hi))


def first(pairs: Sequence[tuple[Node, int]], default: int) -> Node:
    """Priority select: the constant of the first condition node that is 1, else ``default``."""
    values = [int(v) for _, v in pairs] + [int(default)]
    return _mk("first", tuple(c for c, _ in pairs), min(values), max(values), values=tuple(values))


class Graph:
    """Named inputs and outputs of a dataflow graph, nodes in topological order."""

    def __init__(self, inputs: Sequence[Node], outputs: dict[str, Node]) -> None:
        self.inputs = list(inputs)
        self.outputs = dict(outputs)
        order: list[Node] = []
        seen: set[int] = set()

        def visit(node: Node) -> None:
            stack = [(node, False)]
            while stack:
                n, done = stack.pop()
                if done:
                    if id(n) not in seen:
                        seen.add(id(n))
                        order.append(n)
                    continue
                if id(n) in seen:
                    continue
                stack.append((n, True))
                stack.extend((a, False) for a in reversed(n.args) if id(a) not in seen)

        for out in self.outputs.values():
            visit(out)
        for n in order:
            if n.op == "input" and all(n is not i for i in self.inputs):
                raise ValueError(f"graph uses input {n.name!r} that is not declared")
        self.nodes = order
        self.stage = self._schedule()

    def _schedule(self) -> dict[int, int]:
        """Stage (cycle after the input is accepted) at which each node's value is valid."""
        stage: dict[int, int] = {}
        for n in self.nodes:
            start = max((stage[id(a)] for a in n.args), default=0)
            stage[id(n)] = start + LATENCY.get(n.op, DEFAULT_LATENCY)
        return stage

    @property
    def latency(self) -> int:
        """Cycles from an input accepted to its outputs valid (all outputs aligned)."""
        return max(self.stage[id(o)] for o in self.outputs.values())

    def rom_bits(self) -> int:
        """Total ROM contents, bits."""
        return sum(len(n.params["table"]) * n.width for n in self.nodes if n.op == "rom")


_bitlen = np.frompyfunc(lambda v: max(int(v).bit_length() - 1, 0), 1, 1)


def evaluate(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bit-exact model: run ``graph`` on arrays of integers (object arrays of Python ints).

    ``inputs``: name -> integer array (any int dtype); values outside the declared
    range raise ValueError (the hardware would not see them: callers clamp first).
    """
    values: dict[int, np.ndarray] = {}
    n_rows = None
    for node in graph.inputs:
        arr = np.asarray(inputs[node.name]).astype(object)
        if arr.size and (min(arr) < node.lo or max(arr) > node.hi):
            raise ValueError(f"input {node.name}: values outside [{node.lo}, {node.hi}]")
        values[id(node)] = arr
        n_rows = arr.shape
    for n in graph.nodes:
        if id(n) in values:
            continue
        a = [values[id(x)] for x in n.args]
        op, p = n.op, n.params
        if op == "const":
            v = np.full(n_rows, p["value"], dtype=object)
        elif op == "add":
            v = a[0] + a[1]
        elif op == "sub":
            v = a[0] - a[1]
        elif op == "mul":
            v = a[0] * a[1]
            if p["shift"]:
                v = (v + (1 << (p["shift"] - 1))) >> p["shift"]
        elif op == "shr":
            v = (a[0] + (1 << (p["n"] - 1))) >> p["n"]
        elif op == "clamp":
            v = np.minimum(np.maximum(a[0], p["clo"]), p["chi"])
        elif op == "msb":
            v = _bitlen(a[0])
        elif op == "shl_var":
            v = a[0] << a[1]
        elif op == "shr_var":
            v = a[0] >> a[1]
        elif op == "bits":
            v = (a[0] >> p["blo"]) & ((1 << p["n"]) - 1)
        elif op == "rom":
            v = np.asarray(p["table"], dtype=object)[a[0].astype(np.int64)]
        elif op == "mux":
            v = np.where(a[0].astype(bool), a[1], a[2])
        elif op == "abs":
            v = np.abs(a[0])
        elif op == "ge":
            v = (a[0] >= a[1]).astype(np.int64).astype(object)
        elif op == "gt":
            v = (a[0] > a[1]).astype(np.int64).astype(object)
        elif op == "min":
            v = np.minimum(a[0], a[1])
        elif op == "max":
            v = np.maximum(a[0], a[1])
        elif op == "first":
            v = np.full(n_rows, p["values"][-1], dtype=object)
            for cond, value in reversed(list(zip(a, p["values"]))):
                v = np.where(cond.astype(bool), value, v)
        else:  # pragma: no cover - the builders make no other op
            raise ValueError(f"unknown op {op}")
        v = np.asarray(v, dtype=object)
        if v.size and (min(v) < n.lo or max(v) > n.hi):  # the widths rest on these ranges
            raise AssertionError(f"node {n.op} left its range [{n.lo}, {n.hi}]")
        values[id(n)] = v
    return {name: values[id(node)] for name, node in graph.outputs.items()}
