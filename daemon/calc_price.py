"""``riskd price FILE.csv [--json]``: European option values and Greeks for a CSV file.

Input columns (header names matched case-insensitively, surrounding blanks ignored,
other columns passed through untouched):

- ``type``: ``call`` or ``put`` (any case).
- ``spot``: underlying price (> 0); for ``model=black76`` the futures price.
- ``strike``: strike (> 0), same currency as ``spot``.
- ``rate``: continuously compounded risk-free rate, fraction per year (0.05 = 5 %).
- ``dividend``: continuous dividend yield, fraction per year; ignored (and may be
  left empty) for ``black76`` rows.
- ``time``: time to expiry in years (>= 0).
- ``vol``: volatility, fraction per year (>= 0; 0.2 = 20 %).
- ``model`` (optional column): ``bsm`` (default, also when the value is empty) or
  ``black76``.

Output: every good row with all its original fields, in order, followed by ``price,
delta, gamma, vega, theta, rho`` per unit of underlying in the units of
:mod:`risk.pricing` (vega per 1.00 vol, theta per year, rho per 1.00 rate), as CSV
(floats written with ``repr``, i.e. shortest round-tripping form) or, with
``--json``, as one JSON object per line. Bad rows are reported on ``err`` as
``FILE:LINE: column 'NAME': expected ..., found '...'`` (LINE is the physical line
in the file) and left out; the other rows are still priced, all in one vectorized
call.

Exit codes: 0 every row priced, 1 some rows were bad, 2 the file could not be used
(unreadable, no header, missing or clashing columns).
"""

from __future__ import annotations

import csv
import json
import math
from typing import Callable, TextIO

import numpy as np

from risk.pricing import greeks

REQUIRED_COLUMNS = ("type", "spot", "strike", "rate", "dividend", "time", "vol")
MODEL_COLUMN = "model"
RESULT_COLUMNS = ("price", "delta", "gamma", "vega", "theta", "rho")


class _Bad(ValueError):
    """A cell that does not parse; ``expected`` completes the error message."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _number(expected: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _Bad(expected) from None
        # NaN and inf are not prices; NaN would also slip through the range checks.
        if not (math.isfinite(value) and ok(value)):
            raise _Bad(expected)
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    expected = " or ".join(f"'{a}'" for a in allowed)

    def parse(text: str) -> str:
        if text.lower() not in allowed:
            raise _Bad(expected)
        return text.lower()

    return parse


_PARSERS: dict[str, Callable[[str], object]] = {
    "type": _choice("call", "put"),
    "spot": _number("a number > 0", lambda v: v > 0),
    "strike": _number("a number > 0", lambda v: v > 0),
    "rate": _number("a number (fraction per year)", lambda v: True),
    "dividend": _number("a number (fraction per year)", lambda v: True),
    "time": _number("a number >= 0 (years)", lambda v: v >= 0),
    "vol": _number("a number >= 0 (fraction per year)", lambda v: v >= 0),
    MODEL_COLUMN: _choice("bsm", "black76"),
}


def run_price(path: str, as_json: bool, out: TextIO, err: TextIO) -> int:
    """Price every row of the CSV file ``path``; write results to ``out``, problems to ``err``.

    Returns the exit code: 0 all rows priced, 1 some rows bad (left out, reported),
    2 the file could not be read or lacks required columns. Units and formats: see
    the module docstring.
    """
    try:
        # utf-8-sig: spreadsheets often start the file with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as f:
            records = _read_records(f)
    except (OSError, UnicodeDecodeError) as exc:
        err.write(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}\n")
        return 2
    except csv.Error as exc:
        err.write(f"{path}: cannot read: malformed CSV: {exc}\n")
        return 2
    if not records:
        err.write(f"{path}: cannot read: the file is empty (a header row is required)\n")
        return 2

    header_line, header = records[0]
    keys = [name.strip().lower() for name in header]
    problem = _check_header(keys)
    if problem:
        err.write(f"{path}:{header_line}: {problem}; the header is: {','.join(header)}\n")
        return 2
    col = {key: i for i, key in enumerate(keys) if key in _PARSERS}

    good: list[tuple[int, list[str]]] = []
    parsed: list[dict[str, object]] = []
    status = 0
    for line, fields in records[1:]:
        if len(fields) > len(header) and any(f.strip() for f in fields[len(header):]):
            err.write(f"{path}:{line}: expected {len(header)} fields as in the header, found {len(fields)}\n")
            status = 1
            continue
        # Short rows: the missing trailing cells are reported as empty values.
        fields = (fields + [""] * len(header))[: len(header)]
        values, errors = _parse_row(fields, col)
        for i, expected in errors:
            err.write(f"{path}:{line}: column '{header[i].strip()}': expected {expected}, found '{fields[i]}'\n")
        if errors:
            status = 1
        else:
            good.append((line, fields))
            parsed.append(values)

    writer = None if as_json else csv.writer(out, lineterminator="\n")
    if writer is not None:
        writer.writerow([*header, *RESULT_COLUMNS])
    for (line, fields), row in zip(good, _price_rows(parsed)):
        if not all(math.isfinite(x) for x in row):
            # Finite inputs that overflow (e.g. a spot of 1e308) have no usable Greeks.
            err.write(f"{path}:{line}: result not finite (inputs out of range): {', '.join(map(repr, row))}\n")
            status = 1
        elif writer is not None:
            writer.writerow([*fields, *(repr(x) for x in row)])
        else:
            obj: dict[str, object] = dict(zip((name.strip() for name in header), fields))
            obj.update(zip(RESULT_COLUMNS, row))
            out.write(json.dumps(obj) + "\n")
    return status


def _parse_row(fields: list[str], col: dict[str, int]) -> tuple[dict[str, object], list[tuple[int, str]]]:
    """The row's typed values, and (field index, what was expected) for each bad cell."""
    values: dict[str, object] = {}
    errors: list[tuple[int, str]] = []
    model = fields[col[MODEL_COLUMN]].strip() if MODEL_COLUMN in col else ""
    for key, i in col.items():
        text = fields[i].strip()
        if key == MODEL_COLUMN and not text:
            text = "bsm"
        if key == "dividend" and not text and model.lower() == "black76":
            text = "0"  # Black-76 ignores it: no need to make the user fill it in
        try:
            values[key] = _PARSERS[key](text)
        except _Bad as bad:
            errors.append((i, bad.expected))
    values.setdefault(MODEL_COLUMN, "bsm")
    return values, errors


def _read_records(f: TextIO) -> list[tuple[int, list[str]]]:
    """Non-blank CSV records, each with the physical line number where it starts."""
    reader = csv.reader(f)
    records = []
    next_line = 1
    for fields in reader:
        # A quoted field may span lines: the record starts where the last one ended.
        start, next_line = next_line, reader.line_num + 1
        if any(field.strip() for field in fields):
            records.append((start, fields))
    return records


def _check_header(keys: list[str]) -> str:
    missing = [c for c in REQUIRED_COLUMNS if c not in keys]
    if missing:
        return "missing required column(s) " + ", ".join(f"'{c}'" for c in missing)
    # Names are the JSON keys, and a repeated input column would be ambiguous anyway.
    dup = sorted({k for k in keys if k and keys.count(k) > 1})
    if dup:
        return "duplicate column(s) " + ", ".join(f"'{c}'" for c in dup)
    # The results are appended under these names: an input column of the same name
    # would make the CSV header and the JSON keys ambiguous.
    clash = [c for c in RESULT_COLUMNS if c in keys]
    if clash:
        return "the input already has result column(s) " + ", ".join(f"'{c}'" for c in clash)
    return ""


def _price_rows(rows: list[dict[str, object]]) -> list[tuple[float, ...]]:
    """All rows' price and Greeks from one vectorized :func:`risk.pricing.greeks` call."""
    if not rows:
        return []

    def column(key: str) -> np.ndarray:
        return np.array([row[key] for row in rows], dtype=float)

    g = greeks(
        np.array([row["type"] == "call" for row in rows]),
        column("spot"), column("strike"), column("rate"), column("dividend"),
        column("time"), column("vol"),
        np.array([row[MODEL_COLUMN] == "black76" for row in rows]),
    )
    table = np.stack([np.broadcast_to(np.asarray(x, dtype=float), (len(rows),)) for x in g], axis=1)
    return [tuple(float(x) for x in r) for r in table]
