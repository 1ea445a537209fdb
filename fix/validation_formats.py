"""Per-field value checks for FIX 4.4 validation: one format check per FIX type,
and each dictionary field's (format, allowed values, multi-value) triple.

Built once at import from `fix.dictionary`; both passes of `fix.validation`
(the fast one in `fix.validation_fast`, the exact one in `fix.validation_exact`)
judge field values with these tables only, so they cannot disagree on a value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fix import dictionary as dd

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


def _count(value: bytes) -> int:
    """A NumInGroup value (already a valid integer) as an int; -1 when it is too
    long to be a count (int() refuses very long digit strings)."""
    return int(value) if len(value) < 19 else -1
