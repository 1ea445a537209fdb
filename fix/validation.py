"""Validation of inbound FIX 4.4 messages against `fix.dictionary`, the way QuickFIX does it.

`validate(msg)` returns None for a good message or raises:

* `FixValidationError` (reason, tag, text): answer with a session-level Reject (35=3):
  SessionRejectReason (373) = ``reason``, RefTagID (371) = ``tag`` unless None (the
  tag as QuickFIX prints it: ``"-1"``, ``"0"``, ``"5000"``), Text (58) = ``text``.
* `UnsupportedVersion`: BeginString is not FIX.4.4 (QuickFIX logs out).
* `GarbledMessage`: not readable as FIX (a field without ``=``, a tag such as ``abc``
  or ``+1``; BeginString, BodyLength, MsgType not the first three fields).  FIX says
  to ignore it; QuickFIX's parser throws InvalidMessage in these cases.

``msg`` is what `fix.parser.parse` returns: ``.fields``, the ``(tag, value)`` pairs in
wire order (8, 9 and 10 included); ``.errors``, the fields the parser found malformed
and left out; ``.raw``, the message bytes.  When ``.errors`` is not empty the message
is read again from ``.raw`` as QuickFIX reads it, because where those fields stand
decides the reject: a tag that is an optionally negative integer is a field
(``-1=HI`` and ``0=HI`` are invalid tag numbers, script 14a; ``56=`` is a header tag
without a value, script 14d); anything else makes the message garbled.

A FIX 4.4 MsgType that this dictionary does not define (`fix.dictionary.MESSAGES`)
passes when its header and trailer are valid and each body field is a FIX 4.4 tag
with a well-formed, allowed value (its layout is unknown, so repeats, membership and
groups are not judged): the application then refuses it with a BusinessMessageReject
(380=3, "Unsupported Message Type"), as QuickFIX applications do (script 2r).

When a message has several problems, the one reported is the one QuickFIX's
``DataDictionary::validate`` reports:

1. structure: the first header field after a body or trailer field, or the first
   body field after a trailer field: 14;
2. MsgType unknown to FIX 4.4: 11 (no tag);
3. required fields, header, then trailer, then the body in tag order, then each group
   instance (groups in counter-tag order): 1;
4. each field, header first in QuickFIX's header order (8, 9, 35, then by tag), then
   the trailer (93, 89, 10), then the body by tag, a group's instances (by tag) right
   after its counter: repeated tag 13, empty value 4, format 6, value 5, tag not in
   FIX 4.4 0, tag not in this message type 2, NumInGroup count 16.

Speed: a message is first checked in one pass in wire order (`_fast_ok`).  Only
when that pass has any doubt is it checked again in QuickFIX's order, to find the
problem QuickFIX would report (or, rarely, to accept it after all).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Protocol

from fix import dictionary as dd

__all__ = [
    "REJECT_TEXT", "FixMessageError", "FixValidationError", "UnsupportedVersion", "GarbledMessage",
    "ParsedMessage", "validate", "reverse_route_fields",
]

#: QuickFIX's Text (58) for each SessionRejectReason (373).
REJECT_TEXT: dict[int, str] = {
    0: "Invalid tag number", 1: "Required tag missing", 2: "Tag not defined for this message type",
    3: "Undefined Tag", 4: "Tag specified without a value",
    5: "Value is incorrect (out of range) for this tag", 6: "Incorrect data format for value",
    7: "Decryption problem", 8: "Signature problem", 9: "CompID problem",
    10: "SendingTime accuracy problem", 11: "Invalid MsgType", 13: "Tag appears more than once",
    14: "Tag specified out of required order", 15: "Repeating group fields out of order",
    16: "Incorrect NumInGroup count for repeating group",
    17: "Non Data value includes field delimiter (SOH character)", 99: "Other",
}


class FixMessageError(Exception):
    """Base of every reason `validate` refuses a message."""


class FixValidationError(FixMessageError):
    """A session-level Reject: SessionRejectReason, RefTagID as text (or None), Text."""

    def __init__(self, reason: int, tag: str | None, text: str | None = None) -> None:
        self.reason = reason
        self.tag = tag
        self.text = REJECT_TEXT.get(reason, "Other") if text is None else text
        super().__init__(reason, tag, self.text)

    def __str__(self) -> str:
        return f"{self.text} (SessionRejectReason {self.reason}, RefTagID {self.tag})"


class UnsupportedVersion(FixMessageError):
    """BeginString (8) is not FIX.4.4."""

    def __init__(self, begin_string: str) -> None:
        self.begin_string = begin_string
        super().__init__(f"unsupported BeginString {begin_string!r}")


class GarbledMessage(FixMessageError):
    """The message cannot be read as FIX; it is to be ignored."""


class ParsedMessage(Protocol):
    """What `validate` needs of a parsed message (fix.parser.FixMessage)."""

    raw: bytes
    fields: Sequence[tuple[int, bytes]]
    errors: Sequence[Any]


# ------------------------------------------------------------------- formats
# Format checks on the raw bytes, one per FIX type.  Numbers as QuickFIX's
# convertors read them: an optional leading '-' only, ASCII digits, at most one '.'
# ('+200.00', '1e5', ' 1' are wrong).  Times take 3, 6 or 9 fractional digits, as
# QuickFIX 1.15 does.  Dates, month-years and TZ times are checked as FIX defines
# them (QuickFIX leaves these types unchecked).  No check for STRING, DATA, XMLDATA,
# CURRENCY, COUNTRY, EXCHANGE, LANGUAGE; multiple-value strings are checked item by
# item against the field's values.
_FRAC = rb"(?:\.[0-9]{3}(?:[0-9]{3}){0,2})?"
_YMD = rb"[0-9]{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
_HMS = rb"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)"
_TZ = rb"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::(?:[0-5][0-9]|60))?(?:Z|[+-](?:[01][0-9]|2[0-3])(?::[0-5][0-9])?)?"
_INT = re.compile(rb"-?[0-9]+").fullmatch
_FLOAT = re.compile(rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)").fullmatch
_TIMESTAMP = re.compile(_YMD + b"-" + _HMS + _FRAC).fullmatch
_DATE = re.compile(_YMD).fullmatch


def _char(value: bytes) -> bool:
    return len(value) == 1


def _boolean(value: bytes) -> bool:
    return value == b"Y" or value == b"N"


_FORMAT: dict[str, Callable[[bytes], object]] = {
    "INT": _INT, "LENGTH": _INT, "SEQNUM": _INT, "NUMINGROUP": _INT, "TAGNUM": _INT,
    "FLOAT": _FLOAT, "QTY": _FLOAT, "PRICE": _FLOAT, "PRICEOFFSET": _FLOAT, "AMT": _FLOAT,
    "PERCENTAGE": _FLOAT, "CHAR": _char, "BOOLEAN": _boolean, "UTCTIMESTAMP": _TIMESTAMP,
    "UTCTIMEONLY": re.compile(_HMS + _FRAC).fullmatch, "UTCDATEONLY": _DATE, "LOCALMKTDATE": _DATE,
    "MONTHYEAR": re.compile(rb"[0-9]{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]|w[1-5])?").fullmatch,
    "DAYOFMONTH": re.compile(rb"0?[1-9]|[12][0-9]|3[01]").fullmatch,
    "TZTIMEONLY": re.compile(_TZ).fullmatch, "TZTIMESTAMP": re.compile(_YMD + b"-" + _TZ).fullmatch,
}
_MULTI = frozenset({"MULTIPLEVALUESTRING", "MULTIPLECHARVALUE"})

# tag -> (format check or None, allowed values as bytes or None, space-separated list?)
_CHECKS: dict[int, tuple[Callable[[bytes], object] | None, frozenset[bytes] | None, bool]] = {
    tag: (_FORMAT.get(fd.type), None if fd.values is None else frozenset(x.encode() for x in fd.values),
          fd.type in _MULTI)
    for tag, fd in dd.FIELDS.items()
}


def _fast_check(tag: int) -> tuple[int, Any]:
    """How the fast pass checks a field's value: (code, argument).

    0 no check; 1 value in a set (enum values are well formed, so this one test
    covers format and value); 2 integer and 5 decimal: a cheap test for the common
    unsigned forms, then the type's expression; 3 a format function; 4 each
    space-separated item in a set.
    """
    fmt, values, multi = _CHECKS[tag]
    if values is not None:
        if multi:
            return 4, values
        if fmt is not None and not all(fmt(x) for x in values):
            raise ValueError(f"field {tag}: an enumerated value is not a well-formed {dd.FIELDS[tag].type}")
        return 1, values
    if fmt is None:
        return 0, None
    return (2 if fmt is _INT else 5 if fmt is _FLOAT else 3), fmt


# ------------------------------------------------------------------- layouts
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
_SIGNED_INT = re.compile(rb"-?[0-9]+").fullmatch

# A parsed field: (tag, value, group instances when the tag is a group counter here).
_Entry = tuple[int, bytes, "list[list[_Entry]] | None"]
_tag_key = itemgetter(0)


# ------------------------------------------------------------------ fast pass
def _count(value: bytes) -> int:
    """A NumInGroup value (already a valid integer) as an int; -1 when it is too
    long to be a count (int() refuses very long digit strings)."""
    return int(value) if len(value) < 19 else -1


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


# ----------------------------------------------------------------- exact pass
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
    """The message's fields including those the parser set aside (see module doc)."""
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


def validate(msg: ParsedMessage) -> None:
    """Check a parsed inbound message; return None if it is valid FIX 4.4.

    Raises `FixValidationError`, `UnsupportedVersion` or `GarbledMessage` (see the
    module docstring for what the session does with each).
    """
    fields = _all_fields(msg)
    if len(fields) < 3 or fields[0][0] != 8 or fields[1][0] != 9 or fields[2][0] != 35:
        raise GarbledMessage("BeginString, BodyLength and MsgType must be the first three fields")
    if fields[0][1] != _BEGIN_STRING:
        raise UnsupportedVersion(fields[0][1].decode("latin-1"))
    msg_type = fields[2][1]
    fast = _FAST.get(msg_type)
    # The shape cache only for cleanly parsed messages: the parser keeps empty values
    # and odd tags out of ``fields`` (they are in ``errors``), which the cached plan relies on.
    clean = fields is msg.fields
    if fast is not None and ((clean and _shape_ok(fields, msg_type, fast)) or _fast_ok(fields, *fast)):
        return
    layout = _MESSAGES.get(msg_type)
    header, body, trailer, bad = _split(fields, layout.groups if layout is not None else _NO_GROUPS)
    if bad is not None:
        raise FixValidationError(14, str(bad))
    if msg_type not in _FIX44_MSG_TYPES:
        raise FixValidationError(11, None)
    _check_required(header, _HEADER)
    _check_required(trailer, _TRAILER)
    if layout is not None:
        _check_required(body, layout)
    _check_map(sorted(header, key=lambda e: _HEADER_ORDER.get(e[0], e[0])), _HEADER, False)
    _check_map(sorted(trailer, key=lambda e: _TRAILER_ORDER[e[0]]), _TRAILER, False)
    _check_map(sorted(body, key=_tag_key), layout, True)


# -------------------------------------------------------------- reverse route
_REVERSE_ROUTE = {115: 128, 128: 115, 116: 129, 129: 116, 144: 145, 145: 144}


def reverse_route_fields(msg: ParsedMessage) -> list[tuple[int, bytes]]:
    """Routing fields for a reply to ``msg`` (a Reject, say), sorted by tag.

    As QuickFIX's Message::reverseRoute: OnBehalfOf CompID/SubID/LocationID (115,
    116, 144) become DeliverTo (128, 129, 145) and the other way round; an empty
    field is not reversed; the first occurrence of a tag counts.
    """
    try:
        fields = _all_fields(msg)
    except GarbledMessage:
        fields = msg.fields
    out: dict[int, bytes] = {}
    done: set[int] = set()
    for tag, value in fields:
        to = _REVERSE_ROUTE.get(tag)
        if to is not None and tag not in done:
            done.add(tag)
            if value:
                out[to] = value
    return sorted(out.items())
