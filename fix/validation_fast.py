"""The fast pass of FIX 4.4 validation: one walk over a message in wire order
that can only say "valid" or "not sure", plus a cache of message shapes already
proven valid.

Nearly every inbound message is valid, so `fix.validation.validate` tries this
first; any doubt sends the message to the exact pass (`fix.validation_exact`),
which finds the problem QuickFIX would report. A wrong "valid" here would let a
bad message through, so each check is at least as strict as the exact pass's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fix.validation_formats import _count
from fix.validation_layouts import _Layout


def _value_ok(code: int, arg: Any, value: bytes) -> bool:
    if code == 1:
        return value in arg
    if code == 5:
        return value.replace(b".", b"", 1).isdigit() or bool(arg(value))
    if code == 2:
        return value.isdigit() or bool(arg(value))
    if code == 3:
        return bool(arg(value))
    return all(x in arg for x in value.split(b" "))


#: Message shapes (MsgType and tag sequence) already found valid, with the positions
#: whose values still need checking: an OMS sends the same few shapes all day.
_SHAPES: dict[tuple[bytes, tuple[int, ...]], tuple[tuple[int, int, Any], ...]] = {}
_MAX_SHAPES = 4096


def _shape_ok(fields: Sequence[tuple[int, bytes]], msg_type: bytes,
              fast: tuple[dict[int, tuple[int, int, Any, _Layout | None]], frozenset[int]]) -> bool:
    """True only if the message is valid, from a cached check of its shape: the
    structure (tags allowed, order, no repeats, required present) was proven for
    this exact tag sequence, so only the values with a format or enum are checked.
    False means "not known": the other passes decide."""
    key = (msg_type, tuple([f[0] for f in fields]))
    plan = _SHAPES.get(key)
    if plan is None:
        table, required = fast
        if not _fast_ok(fields, table, required):
            return False
        if any(table[tag][3] is not None for tag in key[1]):
            return True  # valid, but group shapes vary with their counts: not cached
        if len(_SHAPES) >= _MAX_SHAPES:
            _SHAPES.clear()
        _SHAPES[key] = tuple((i, table[tag][1], table[tag][2]) for i, tag in enumerate(key[1]) if table[tag][1])
        return True
    for i, code, arg in plan:
        value = fields[i][1]
        if code == 1:
            if value not in arg:
                return False
        elif code == 5:
            if not value.replace(b".", b"", 1).isdigit() and not arg(value):
                return False
        elif not _value_ok(code, arg, value):
            return False
    return True


def _fast_ok(fields: Sequence[tuple[int, bytes]], table: dict[int, tuple[int, int, Any, _Layout | None]],
             required: frozenset[int]) -> bool:
    """True only if the message is valid: one pass in wire order.  Any doubt (an
    unknown tag, a repeat, a bad value...) answers False: the exact pass decides.
    Group instances are checked by `_fast_group`."""
    seen: set[int] = set()
    add = seen.add
    section = skip = in_groups = 0
    for i, (tag, value) in enumerate(fields):
        if i < skip:  # read by _fast_group
            continue
        e = table.get(tag)
        if e is None or not value:
            return False
        sec, code, arg, sub = e
        if sec < section:  # header after body or trailer, body after trailer
            return False
        section = sec
        add(tag)
        # The common checks inline (this loop runs for every inbound field).
        if code == 1:
            if value not in arg:
                return False
        elif code == 5:
            if not value.replace(b".", b"", 1).isdigit() and not arg(value):
                return False
        elif code and not _value_ok(code, arg, value):
            return False
        if sub is not None:
            skip = _fast_group(fields, i + 1, sub, _count(value))
            if skip < 0:
                return False
            in_groups += skip - i - 1
    # A repeated top-level tag leaves fewer distinct tags than top-level fields.
    return len(seen) == len(fields) - in_groups and required <= seen


def _fast_group(fields: Sequence[tuple[int, bytes]], i: int, layout: _Layout, count: int) -> int:
    """Fast pass over a group's instances from ``fields[i]``, split as `_parse_group`
    does; the index after the group, or -1 for any doubt."""
    table, delim, req = layout.fast, layout.delimiter, layout.required_set
    seen: set[int] | None = None
    instances = 0
    n = len(fields)
    while i < n:
        tag, value = fields[i]
        e = table.get(tag)
        if e is None:
            break
        if tag == delim or seen is None or tag in seen:
            if seen is not None and not req <= seen:
                return -1
            seen = set()
            instances += 1
        seen.add(tag)
        i += 1
        _sec, code, arg, sub = e
        if not value or (code and not _value_ok(code, arg, value)):
            return -1
        if sub is not None:
            i = _fast_group(fields, i, sub, _count(value))
            if i < 0:
                return -1
    if seen is not None and not req <= seen:
        return -1
    return i if instances == count else -1
