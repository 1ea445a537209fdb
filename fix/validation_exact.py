"""The exact pass of FIX 4.4 validation: reads a message as QuickFIX does (fields
sorted into header, body and trailer; groups split into instances) and raises
the one problem QuickFIX's ``DataDictionary::validate`` would report.

Only messages the fast pass (`fix.validation_fast`) is unsure of come here, so
this pass favours matching QuickFIX's order of checks over speed; the order
itself is described in `fix.validation`'s module docstring.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter

from fix import dictionary as dd
from fix.validation_errors import FixValidationError, GarbledMessage, ParsedMessage
from fix.validation_formats import _CHECKS, _count
from fix.validation_layouts import _HEADER, _HEADER_CLASS, _TRAILER_CLASS, _Layout

_SIGNED_INT = re.compile(rb"-?[0-9]+").fullmatch

# A parsed field: (tag, value, group instances when the tag is a group counter here).
_Entry = tuple[int, bytes, "list[list[_Entry]] | None"]
_tag_key = itemgetter(0)


def _fields_from_raw(raw: bytes) -> list[tuple[int, bytes]]:
    """Every field of ``raw`` read as QuickFIX reads them: ``<tag>=<value><SOH>``, the
    tag an optionally negative decimal integer ('-1', '0', '035' are tags; '+1',
    'abc', '' are not), the value possibly empty.  GarbledMessage otherwise."""
    pieces = raw.split(b"\x01")
    if pieces.pop() != b"":
        raise GarbledMessage("last field not terminated by SOH")
    out: list[tuple[int, bytes]] = []
    for piece in pieces:
        tag, sep, value = piece.partition(b"=")
        if not sep or not _SIGNED_INT(tag) or len(tag) > 18:
            raise GarbledMessage(f"unreadable field {piece[:40]!r}")
        out.append((int(tag), value))
    return out


def _all_fields(msg: ParsedMessage) -> Sequence[tuple[int, bytes]]:
    """The message's fields including those the parser set aside (see `fix.validation`)."""
    if not getattr(msg, "errors", None):
        return msg.fields
    raw = getattr(msg, "raw", None)
    if not isinstance(raw, (bytes, bytearray)):
        raise GarbledMessage(f"malformed fields: {list(msg.errors)[:3]!r}")
    return _fields_from_raw(bytes(raw))


def _entry(fields: Sequence[tuple[int, bytes]], i: int, tag: int, value: bytes,
           sub: _Layout | None) -> tuple[_Entry, int]:
    if sub is None:
        return (tag, value, None), i
    instances, i = _parse_group(fields, i, sub)
    return (tag, value, instances), i


def _parse_group(fields: Sequence[tuple[int, bytes]], i: int, layout: _Layout) -> tuple[list[list[_Entry]], int]:
    """The instances of a group whose counter was just read, from ``fields[i]``.

    As QuickFIX's Message::setGroup: an instance starts at the delimiter, or at any
    member when no instance is open or the open one has that tag already; the group
    ends at the first tag that is not a member.  The count is checked later.
    """
    instances: list[list[_Entry]] = []
    cur: list[_Entry] = []
    seen: set[int] = set()
    while i < len(fields):
        tag, value = fields[i]
        if tag == layout.delimiter or (tag in layout.allowed and (not instances or tag in seen)):
            cur, seen = [], set()
            instances.append(cur)
        elif tag not in layout.allowed:
            break
        seen.add(tag)
        entry, i = _entry(fields, i + 1, tag, value, layout.groups.get(tag))
        cur.append(entry)
    return instances, i


def _split(fields: Sequence[tuple[int, bytes]], groups: dict[int, _Layout]
           ) -> tuple[list[_Entry], list[_Entry], list[_Entry], int | None]:
    """Header, body and trailer entries, and the first out-of-place tag (or None),
    as QuickFIX's Message::setString sorts fields."""
    maps: tuple[list[_Entry], list[_Entry], list[_Entry]] = ([], [], [])
    bad: int | None = None
    section = 0  # 0 header, 1 body, 2 trailer
    i = 0
    while i < len(fields):
        tag, value = fields[i]
        if tag in _HEADER_CLASS:
            if section and bad is None:
                bad = tag
            entry, i = _entry(fields, i + 1, tag, value, _HEADER.groups.get(tag))
            maps[0].append(entry)
            continue
        if tag in _TRAILER_CLASS:
            section = 2
        else:
            if section == 2 and bad is None:
                bad = tag
            section = 1
        entry, i = _entry(fields, i + 1, tag, value, groups.get(tag) if section == 1 else None)
        maps[section].append(entry)
    return maps[0], maps[1], maps[2], bad


def _check_required(entries: list[_Entry], layout: _Layout) -> None:
    """Raise reason 1 for the first missing required tag (QuickFIX checkHasRequired)."""
    present = {e[0] for e in entries}
    for tag in layout.required:
        if tag not in present:
            raise FixValidationError(1, str(tag))
    for tag, _value, instances in sorted((e for e in entries if e[2] is not None), key=_tag_key):
        for inst in instances or ():
            _check_required(inst, layout.groups[tag])


def _check_map(entries: list[_Entry], layout: _Layout | None, members: bool) -> None:
    """Raise the first problem of a field map whose entries are in QuickFIX's order.

    ``members``: each tag must belong to ``layout`` (body and group instances; the
    header and trailer are not checked so).  ``layout`` None: a message type with no
    layout, whose repeats and membership cannot be judged.
    """
    last = None
    for tag, value, instances in entries:
        if layout is not None:
            if tag == last:
                raise FixValidationError(13, str(tag))
            last = tag
        if not value:
            raise FixValidationError(4, str(tag))
        chk = _CHECKS.get(tag)
        if chk is not None:
            fmt, values, multi = chk
            if fmt is not None and not fmt(value):
                raise FixValidationError(6, str(tag))
            if values is not None and not (all(x in values for x in value.split(b" ")) if multi
                                           else value in values):
                raise FixValidationError(5, str(tag))
        elif tag not in dd.FIX44_TAGS:
            raise FixValidationError(0, str(tag))
        if members and layout is not None and tag not in layout.allowed:
            raise FixValidationError(2, str(tag))
        if instances is not None:
            if _count(value) != len(instances):
                raise FixValidationError(16, str(tag))
            for inst in instances:
                _check_map(sorted(inst, key=_tag_key), layout.groups[tag], True)  # type: ignore[union-attr]
