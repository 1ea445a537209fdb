"""Precomputed FIX 4.4 field maps for validation: which tags each message type,
group, header and trailer allows and requires, where QuickFIX files each tag
(header, body, trailer), and the fast pass's lookup tables.

Built once at import from `fix.dictionary` (and the value checks of
`fix.validation_formats`), so validating a message does no dictionary walking.
"""

from __future__ import annotations

from typing import Any

from fix import dictionary as dd
from fix.validation_formats import _fast_check


class _Layout:
    """A field map (message body, group instance, header, trailer), precomputed:
    tags allowed in it, required tags in tag order, layouts of the groups whose
    counters it holds, and the fast pass's table tag -> (section, code, arg, group)."""

    __slots__ = ("allowed", "required", "required_set", "groups", "delimiter", "fast")

    def __init__(self, items: tuple[dd.Item, ...], delimiter: int = 0) -> None:
        allowed: set[int] = set()
        required: set[int] = set()
        self.groups: dict[int, _Layout] = {}
        for it in items:
            tag = it.tag if isinstance(it, dd.FieldRef) else it.counter
            if isinstance(it, dd.GroupDef):
                self.groups[tag] = _Layout(it.items, it.delimiter)
            allowed.add(tag)
            if it.required:
                required.add(tag)
        self.allowed = frozenset(allowed)
        self.required = tuple(sorted(required))
        self.required_set = frozenset(required)
        self.delimiter = delimiter
        self.fast = {tag: (1, *_fast_check(tag), self.groups.get(tag)) for tag in allowed}


_HEADER = _Layout(dd.HEADER)
_TRAILER = _Layout(dd.TRAILER)
_MESSAGES: dict[bytes, _Layout] = {mt.encode(): _Layout(md.items) for mt, md in dd.MESSAGES.items()}
_FIX44_MSG_TYPES = frozenset(mt.encode() for mt in dd.MSG_TYPES)
_NO_GROUPS: dict[int, _Layout] = {}

# QuickFIX classifies these tags as header fields by number, whatever the dictionary
# (NoHops members and some FIX 5 header tags too): that decides the structure check.
_HEADER_CLASS = frozenset(_HEADER.allowed | _HEADER.groups[627].allowed | {370, 1128, 1129, 1156})
_TRAILER_CLASS = _TRAILER.allowed
_HEADER_ORDER = {8: -3, 9: -2, 35: -1}  # then every other header field by tag
_TRAILER_ORDER = {93: 0, 89: 1, 10: 2}

# Fast-pass table and required tags per message type: the body's fields plus the
# header-class and trailer fields the exact pass accepts at top level.
_TOP = {tag: (0, *_fast_check(tag), _HEADER.groups.get(tag)) for tag in _HEADER_CLASS if tag in dd.FIELDS}
_TOP.update({tag: (2, *_fast_check(tag), None) for tag in _TRAILER_CLASS})
_FAST: dict[bytes, tuple[dict[int, tuple[int, int, Any, _Layout | None]], frozenset[int]]] = {
    mt: ({**layout.fast, **_TOP}, layout.required_set | _HEADER.required_set | _TRAILER.required_set)
    for mt, layout in _MESSAGES.items()
}
_BEGIN_STRING = dd.BEGIN_STRING.encode()
