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

This module is the entry point (`validate`, `reverse_route_fields`) and the one
place to import every public name from.  The work is split by job:
`fix.validation_errors` (exceptions, reject texts), `fix.validation_formats` (value
checks per FIX type), `fix.validation_layouts` (precomputed field maps),
`fix.validation_fast` (the fast pass and shape cache) and `fix.validation_exact`
(QuickFIX's order of checks).
"""

from __future__ import annotations

from fix import validation_formats as _formats
from fix.validation_errors import (REJECT_TEXT, FixMessageError, FixValidationError, GarbledMessage, ParsedMessage,
                                   UnsupportedVersion)
from fix.validation_exact import _all_fields, _check_map, _check_required, _split, _tag_key
from fix.validation_fast import _fast_ok, _shape_ok
from fix.validation_layouts import (_BEGIN_STRING, _FAST, _FIX44_MSG_TYPES, _HEADER, _HEADER_ORDER, _MESSAGES,
                                    _NO_GROUPS, _TRAILER, _TRAILER_ORDER)

__all__ = [
    "REJECT_TEXT", "FixMessageError", "FixValidationError", "UnsupportedVersion", "GarbledMessage",
    "ParsedMessage", "validate", "reverse_route_fields",
]

#: Still reachable as ``fix.validation._FORMAT``: tests/test_fix_validation.py checks
#: the per-type format checks through this module.
_FORMAT = _formats._FORMAT


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
