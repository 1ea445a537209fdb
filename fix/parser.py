"""Hot-path FIX tag=value parser.

`parse` turns one framed message (as returned by `fix.framing.FixFramer`) into a
`FixMessage`: its fields in wire order as ``(int tag, bytes value)`` pairs, plus an
index of the first occurrence of every tag.  It never raises on malformed field
syntax; problems are recorded in `FixMessage.errors` so the session can answer with
the right session-level Reject (or treat the message as garbled).

How it is fast: a well-formed message (every field ``<tag>=<value><SOH>`` with one
``=``, a canonical tag, a non-empty value) is recognised with two C-level checks
(``bytes.translate`` keeps only the ``=`` and SOH bytes, which must read
``=<SOH>=<SOH>...``; no ``=<SOH>`` pair).  It is then split in one
``replace``/``split`` pass into alternating tags and values, and tags are mapped to
ints through a cache dict.  No per-byte Python code runs.  Anything else (a value
containing ``=``, an unknown or malformed tag, an empty value...) takes a slower
per-field path with the same result and full error reporting.

Limitation, by design: raw data fields (a length field followed by a data field,
e.g. 95/96 RawData, 212/213 XmlData, 354/355 EncodedText) are not interpreted: their
value is split at SOH like any other.  The drop copy does not carry them; a data
value containing SOH shows up as extra fields or errors rather than being misread
as one field.
"""

from __future__ import annotations

import re
from typing import Iterator, NamedTuple

__all__ = [
    "FieldError",
    "FixMessage",
    "parse",
    "EMPTY_TAG",
    "EMPTY_VALUE",
    "INVALID_TAG",
    "MISSING_EQUALS",
    "NON_NUMERIC_TAG",
    "UNTERMINATED_FIELD",
]

# Error reasons (FieldError.reason).  The mapping to SessionRejectReason (373) is in
# _REJECT_REASON.  As in QuickFIX: a tag written as an integer ("-1", "0", "035") is
# a field with an invalid tag number (reject 0, RefTagID = that integer); a field that
# cannot be read as <integer>=<value> at all ("abc=1", "+1=x", "=x", no '=') makes
# the message garbled (None: ignore it), because QuickFIX's parser throws
# InvalidMessage there.
MISSING_EQUALS = "field without '='"
EMPTY_TAG = "empty tag"
NON_NUMERIC_TAG = "non-numeric tag"
INVALID_TAG = "invalid tag number (zero, negative or leading zero)"
EMPTY_VALUE = "tag specified without a value"
UNTERMINATED_FIELD = "last field not terminated by SOH"

_REJECT_REASON: dict[str, int | None] = {
    MISSING_EQUALS: None,
    UNTERMINATED_FIELD: None,
    EMPTY_TAG: None,
    NON_NUMERIC_TAG: None,
    INVALID_TAG: 0,       # 0 = Invalid tag number
    EMPTY_VALUE: 4,       # 4 = Tag specified without a value
}


class FieldError(NamedTuple):
    """One malformed field: where it starts, its tag if readable, and why.

    ``position`` is the byte offset of the field in ``FixMessage.raw``.  ``tag`` is
    the tag as an int when it is written as an optionally negative decimal integer
    (so "-1=x" reports -1 and "035=x" reports 35, for RefTagID 371), else None.
    """

    position: int
    tag: int | None
    reason: str

    @property
    def session_reject_reason(self) -> int | None:
        """SessionRejectReason (tag 373) for a session Reject, or None if garbled."""
        return _REJECT_REASON.get(self.reason)


# Canonical tag text -> int.  Pre-filled for the standard range; other valid tags
# are added on first sight (bounded, so hostile input cannot grow it without limit).
_TAG_CACHE: dict[bytes, int] = {str(i).encode(): i for i in range(1, 2000)}
_TAG_CACHE_MAX = 20000
_MAX_TAG_DIGITS = 10  # FIX tags are positive 32-bit ints; longer is invalid, not parsed
_tag_of = _TAG_CACHE.__getitem__

# translate() table deleting every byte except '=' and SOH.
_KEEP_DELIMS = bytes(b for b in range(256) if b not in (0x01, 0x3D))
_DELIM_PATTERN = b"=\x01" * 4096  # the skeleton of a well-formed message, <= 4096 fields
_SIGNED_INT = re.compile(rb"-?[0-9]+")
_FIX_FLOAT = re.compile(rb"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class FixMessage:
    """A parsed FIX message.

    ``raw``: the bytes parsed.  ``fields``: every well-formed field in wire order as
    ``(tag, value)``; repeating groups keep every occurrence.  ``errors``: the
    malformed fields (they are not in ``fields``).  Lookups by tag return the first
    occurrence in O(1).
    """

    __slots__ = ("raw", "fields", "errors", "_index", "get")

    def __init__(self, raw: bytes, fields: list[tuple[int, bytes]], index: dict[int, bytes],
                 errors: list[FieldError]) -> None:
        self.raw = raw
        self.fields = fields
        self.errors = errors
        self._index = index
        #: ``get(tag, default=None)``: value of the first occurrence of ``tag``, or
        #: ``default``. The dict's own bound method: called ~20 times per message on
        #: the hot path, where a Python-level wrapper cost a third of the lookups' time.
        self.get = index.get

    def get_str(self, tag: int, default: str | None = None) -> str | None:
        """Value of ``tag`` decoded as UTF-8 (undecodable bytes replaced), or ``default``."""
        value = self._index.get(tag)
        if value is None:
            return default
        return value.decode("utf-8", "replace")

    def get_int(self, tag: int, default: int | None = None) -> int | None:
        """Value of ``tag`` as a FIX int (optional '-', ASCII digits), or ``default``.

        Raises ValueError when the value is present but not a FIX int (Python's own
        int() would also take '+', spaces and '_'), so the caller can reject it
        (SessionRejectReason 6, Incorrect data format for value).
        """
        value = self._index.get(tag)
        if value is None:
            return default
        if value.isdigit() or _SIGNED_INT.fullmatch(value):
            return int(value)
        raise ValueError(f"tag {tag}: {value!r} is not a FIX int")

    def get_float(self, tag: int, default: float | None = None) -> float | None:
        """Value of ``tag`` as a FIX float (optional '-', digits, optional '.'), or ``default``.

        Raises ValueError for anything else, including '+1', '1e5', 'nan' and 'inf'
        that Python's float() would accept: a misread price is a wrong margin.
        """
        value = self._index.get(tag)
        if value is None:
            return default
        if _FIX_FLOAT.fullmatch(value):
            return float(value)
        raise ValueError(f"tag {tag}: {value!r} is not a FIX float")

    def get_all(self, tag: int) -> list[bytes]:
        """Values of every occurrence of ``tag``, in wire order (repeating groups)."""
        return [v for t, v in self.fields if t == tag]

    def count(self, tag: int) -> int:
        """Number of occurrences of ``tag``."""
        n = 0
        for t, _ in self.fields:
            if t == tag:
                n += 1
        return n

    @property
    def msg_type(self) -> bytes | None:
        """MsgType (tag 35) value, e.g. b"8" for an ExecutionReport, or None."""
        return self._index.get(35)

    def __contains__(self, tag: object) -> bool:
        return tag in self._index

    def __len__(self) -> int:
        return len(self.fields)

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return iter(self.fields)

    def __repr__(self) -> str:
        body = "|".join(f"{t}={v.decode('latin-1')}" for t, v in self.fields)
        err = f", errors={self.errors!r}" if self.errors else ""
        return f"FixMessage({body}{err})"


def parse(raw: bytes) -> FixMessage:
    """Parse one FIX message (bytes, fields separated by SOH) into a `FixMessage`.

    Never raises for malformed content; see `FixMessage.errors`.  Cost: about
    7 us for a 29-field ExecutionReport on the quiet 2-core reference machine
    (``python -m daemon.bench_fix_parse``); the careful path is ~2x that.
    """
    if type(raw) is not bytes:
        raw = bytes(raw)
    skeleton = raw.translate(None, _KEEP_DELIMS)
    # Fast path: every field has exactly one '=' and ends in SOH, no empty value.
    if (len(skeleton) & 1) == 0 and _DELIM_PATTERN.startswith(skeleton) and b"=\x01" not in raw:
        # Alternating tag, value, tag, value, ..., b"" (after the last SOH).
        parts = raw.replace(b"=", b"\x01").split(b"\x01")
        try:
            fields = list(zip(map(_tag_of, parts[0:-1:2]), parts[1::2]))
        except KeyError:  # a tag not in the cache: unusual or malformed
            return _parse_careful(raw)
        index = dict(fields)
        if len(index) != len(fields):  # repeated tags: the first occurrence must win
            index = dict(reversed(fields))
        return FixMessage(raw, fields, index, [])
    return _parse_careful(raw)


def _parse_careful(raw: bytes) -> FixMessage:
    """Per-field parse with validation: the path for anything unusual."""
    fields: list[tuple[int, bytes]] = []
    errors: list[FieldError] = []
    parts = raw.split(b"\x01")
    tail = parts.pop()  # bytes after the last SOH: b"" when well terminated
    pos = 0
    for part in parts:
        _parse_field(part, pos, fields, errors)
        pos += len(part) + 1
    if tail:
        _parse_field(tail, pos, fields, errors)
        errors.append(FieldError(pos, _loose_tag(tail.partition(b"=")[0]), UNTERMINATED_FIELD))
    index: dict[int, bytes] = dict(reversed(fields))
    return FixMessage(raw, fields, index, errors)


def _parse_field(part: bytes, pos: int, fields: list[tuple[int, bytes]], errors: list[FieldError]) -> None:
    """Append ``part`` (one field, SOH removed) to ``fields``, or its problem to ``errors``."""
    eq = part.find(b"=")
    if eq < 0:
        errors.append(FieldError(pos, None, MISSING_EQUALS))
        return
    tag_text = part[:eq]
    value = part[eq + 1:]
    tag = _TAG_CACHE.get(tag_text)
    if tag is None:
        if not tag_text:
            errors.append(FieldError(pos, None, EMPTY_TAG))
            return
        if len(tag_text) > _MAX_TAG_DIGITS:  # also keeps int() under its 4300-digit limit
            errors.append(FieldError(pos, None, INVALID_TAG if _SIGNED_INT.fullmatch(tag_text) else NON_NUMERIC_TAG))
            return
        if not tag_text.isdigit():  # ASCII digits only
            signed = _SIGNED_INT.fullmatch(tag_text) is not None
            errors.append(FieldError(pos, int(tag_text) if signed else None,
                                     INVALID_TAG if signed else NON_NUMERIC_TAG))
            return
        if tag_text[0] == 0x30:  # "0" or a leading zero
            errors.append(FieldError(pos, int(tag_text), INVALID_TAG))
            return
        tag = int(tag_text)
        if len(_TAG_CACHE) < _TAG_CACHE_MAX:
            _TAG_CACHE[tag_text] = tag
    if not value:
        errors.append(FieldError(pos, tag, EMPTY_VALUE))
        return
    fields.append((tag, value))


def _loose_tag(tag_text: bytes) -> int | None:
    """The tag as an int when written as an optionally negative integer (for RefTagID)."""
    if len(tag_text) <= _MAX_TAG_DIGITS and _SIGNED_INT.fullmatch(tag_text):
        return int(tag_text)
    return None
