"""Daily closing-price history: read a file, turn prices into horizon returns.

This is the one module in risk/ that does I/O: :func:`read_history` opens and
reads a file (nothing else in risk/ touches the file system). :func:`returns` is
pure array math like the rest of the package (NumPy or CuPy).

File formats (chosen by content: a file starting with the Parquet magic ``PAR1``
or named ``*.parquet`` / ``*.pq`` is Parquet, anything else is CSV, UTF-8 with an
optional BOM):

- Wide CSV: header ``date,<UNDERLYING_1>,<UNDERLYING_2>,...``; one row per date;
  every cell a closing price. Example::

      date,ES,NQ
      2024-01-02,4742.83,16543.94
      2024-01-03,4704.81,16368.49

- Long CSV: header ``date,underlying,price`` (these three names, any order, case
  insensitive); one row per (date, underlying). Every underlying must have a price
  on every date that appears in the file (the grid must be complete).
- Parquet: the same two layouts as columns. ``date`` may be a date, a timestamp at
  midnight, or an ISO string; prices any numeric type. Reading it needs pyarrow
  (the ``parquet`` extra), imported only when a Parquet file is read.

Rules: dates are ISO ``YYYY-MM-DD``; prices are currency per unit of underlying,
finite and > 0; underlying names are stripped and must be unique and non-empty;
blank CSV lines are skipped. Rows may come in any date order: the result is sorted
ascending. A duplicate date (or duplicate (date, underlying)), a missing, non-
numeric, non-finite or non-positive price, a bad date or a short/long row raises
:class:`HistoryError` naming the file, the CSV line (1-based, header = line 1) or
the Parquet row (1-based data row), the column and the offending value.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import re
from typing import Any

import msgspec
import numpy as np

from risk.xp import array_module

__all__ = ["HistoryError", "PriceHistory", "read_history", "returns"]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_LONG_COLUMNS = ("date", "underlying", "price")
_PARQUET_MAGIC = b"PAR1"


class HistoryError(ValueError):
    """A price-history file or array that cannot be used, with where it went wrong.

    Attributes (None where not applicable): ``path``; ``line`` (CSV, 1-based,
    header = 1); ``row`` (Parquet, 1-based data row); ``column`` (header name);
    ``value`` (the offending cell as read).
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
    ) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        self.row = row
        self.column = column
        self.value = value
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        if value is not None:
            where.append(f"value {value!r}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


class PriceHistory(msgspec.Struct, frozen=True):
    """Closing prices on a complete date x underlying grid.

    ``dates``: (T,) ``numpy.datetime64[D]``, strictly ascending.
    ``underlyings``: the U names, in header order (wide) or first appearance (long).
    ``prices``: (T, U) float64, currency per unit of underlying, all > 0.
    """

    dates: Any
    underlyings: tuple[str, ...]
    prices: Any


# --------------------------------------------------------------------------- cell parsing


class _Where(msgspec.Struct, frozen=True):
    path: str
    line: int | None = None
    row: int | None = None

    def error(self, reason: str, column: str | None = None, value: Any = None) -> HistoryError:
        return HistoryError(reason, path=self.path, line=self.line, row=self.row, column=column, value=value)


def _parse_date(value: Any, where: _Where, column: str) -> _dt.date:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise where.error("missing date", column, value)
    if isinstance(value, _dt.datetime):
        if value.time() != _dt.time(0):
            # A time of day (or a time zone shift) means this is not a daily close.
            raise where.error("timestamp has a time of day; expected a date", column, value)
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _ISO_DATE.fullmatch(text):
            try:
                return _dt.date.fromisoformat(text)
            except ValueError:
                pass
        raise where.error("invalid date; expected ISO YYYY-MM-DD", column, value)
    raise where.error(f"invalid date of type {type(value).__name__}", column, value)


def _parse_price(value: Any, where: _Where, column: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise where.error("missing price", column, value)
    if isinstance(value, bool):
        raise where.error("price is a boolean", column, value)
    if isinstance(value, str):
        try:
            price = float(value.strip())
        except ValueError:
            raise where.error("price is not a number", column, value) from None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        price = float(value)
    else:
        raise where.error(f"price of type {type(value).__name__}", column, value)
    if not math.isfinite(price):
        raise where.error("price is not finite", column, value)
    if price <= 0.0:
        raise where.error("price must be > 0", column, value)
    return price


def _names(header: list[str], where: _Where) -> list[str]:
    names = [str(h).strip() for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            raise where.error(f"empty column name at position {i + 1}", None, header[i])
        if name.lower() in seen:
            raise where.error("duplicate column name", name, name)
        seen[name.lower()] = i
    return names


def _is_long(names: list[str]) -> bool:
    return sorted(n.lower() for n in names) == sorted(_LONG_COLUMNS)


# --------------------------------------------------------------------------- assembling


_WideRecord = tuple[_Where, _dt.date, list[float]]
_LongRecord = tuple[_Where, _dt.date, str, float]


def _assemble_wide(underlyings: list[str], records: list[_WideRecord]) -> PriceHistory:
    first_seen: dict[_dt.date, _Where] = {}
    for where, date, _ in records:
        if date in first_seen:
            before = first_seen[date]
            at = f"line {before.line}" if before.line is not None else f"row {before.row}"
            raise where.error(f"duplicate date (first at {at})", "date", date.isoformat())
        first_seen[date] = where
    records.sort(key=lambda rec: rec[1])
    dates = np.array([rec[1] for rec in records], dtype="datetime64[D]")
    prices = np.array([rec[2] for rec in records], dtype=np.float64).reshape(len(records), len(underlyings))
    return PriceHistory(dates=dates, underlyings=tuple(underlyings), prices=prices)


def _assemble_long(path: str, records: list[_LongRecord]) -> PriceHistory:
    cells: dict[tuple[_dt.date, str], tuple[float, _Where]] = {}
    order: dict[str, int] = {}
    for where, date, name, price in records:
        key = (date, name)
        if key in cells:
            before = cells[key][1]
            at = f"line {before.line}" if before.line is not None else f"row {before.row}"
            reason = f"duplicate price for {name!r} on {date.isoformat()} (first at {at})"
            raise where.error(reason, "date", date.isoformat())
        cells[key] = (price, where)
        order.setdefault(name, len(order))
    underlyings = list(order)
    dates = sorted({date for date, _ in cells})
    prices = np.empty((len(dates), len(underlyings)), dtype=np.float64)
    for t, date in enumerate(dates):
        for u, name in enumerate(underlyings):
            cell = cells.get((date, name))
            if cell is None:
                raise HistoryError(
                    f"missing price for underlying {name!r} on {date.isoformat()} "
                    "(long format needs every underlying on every date)",
                    path=path,
                    column="price",
                )
            prices[t, u] = cell[0]
    return PriceHistory(dates=np.array(dates, dtype="datetime64[D]"), underlyings=tuple(underlyings), prices=prices)


# --------------------------------------------------------------------------- readers


def _read_csv(path: str) -> PriceHistory:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                header = fields
                break
        if header is None:
            raise HistoryError("empty file: no header", path=path)
        header_where = _Where(path, line=reader.line_num)
        names = _names(header, header_where)
        long = _is_long(names)
        if not long and names[0].lower() != "date":
            reason = "first column must be 'date' (or the header must be date,underlying,price)"
            raise header_where.error(reason, None, header[0])
        if not long and len(names) < 2:
            raise header_where.error("no underlying columns after 'date'", None, ",".join(header))
        index = {n.lower(): i for i, n in enumerate(names)}
        wide_records: list[_WideRecord] = []
        long_records: list[_LongRecord] = []
        for fields in reader:
            if not fields or not any(f.strip() for f in fields):
                continue
            where = _Where(path, line=reader.line_num)
            if len(fields) != len(names):
                raise where.error(f"expected {len(names)} fields, got {len(fields)}", None, ",".join(fields))
            if long:
                date = _parse_date(fields[index["date"]], where, "date")
                name = fields[index["underlying"]].strip()
                if not name:
                    raise where.error("missing underlying name", "underlying", fields[index["underlying"]])
                long_records.append((where, date, name, _parse_price(fields[index["price"]], where, "price")))
            else:
                date = _parse_date(fields[0], where, names[0])
                prices = [_parse_price(fields[j], where, names[j]) for j in range(1, len(names))]
                wide_records.append((where, date, prices))
    if long:
        if not long_records:
            raise HistoryError("no data rows", path=path)
        return _assemble_long(path, long_records)
    if not wide_records:
        raise HistoryError("no data rows", path=path)
    return _assemble_wide(names[1:], wide_records)


def _read_parquet(path: str) -> PriceHistory:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            f"reading the Parquet price history {path!r} needs pyarrow: "
            "install the 'parquet' extra (pip install 'riskd[parquet]')"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
        raise HistoryError(f"cannot read Parquet file: {exc}", path=path) from exc
    header_where = _Where(path)
    names = _names(list(table.column_names), header_where)
    columns = {name: table.column(i).to_pylist() for i, name in enumerate(names)}
    n_rows = table.num_rows
    if n_rows == 0:
        raise HistoryError("no data rows", path=path)
    if _is_long(names):
        by_lower = {n.lower(): n for n in names}
        dates_col = columns[by_lower["date"]]
        names_col = columns[by_lower["underlying"]]
        prices_col = columns[by_lower["price"]]
        records: list[_LongRecord] = []
        for i in range(n_rows):
            where = _Where(path, row=i + 1)
            name = names_col[i]
            if not isinstance(name, str) or not name.strip():
                raise where.error("missing or non-string underlying name", "underlying", name)
            date = _parse_date(dates_col[i], where, "date")
            records.append((where, date, name.strip(), _parse_price(prices_col[i], where, "price")))
        return _assemble_long(path, records)
    if names[0].lower() != "date":
        reason = "first column must be 'date' (or the columns must be date,underlying,price)"
        raise header_where.error(reason, None, names[0])
    if len(names) < 2:
        raise header_where.error("no underlying columns after 'date'")
    wide_records: list[_WideRecord] = []
    for i in range(n_rows):
        where = _Where(path, row=i + 1)
        date = _parse_date(columns[names[0]][i], where, names[0])
        wide_records.append((where, date, [_parse_price(columns[n][i], where, n) for n in names[1:]]))
    return _assemble_wide(names[1:], wide_records)


def _is_parquet(path: str) -> bool:
    if path.lower().endswith((".parquet", ".pq")):
        return True
    with open(path, "rb") as handle:
        return handle.read(4) == _PARQUET_MAGIC


def read_history(path: str | os.PathLike[str]) -> PriceHistory:
    """Read a price-history file (wide/long CSV or Parquet; see the module docstring).

    Returns a :class:`PriceHistory` with dates ascending and a complete grid of
    positive prices. Raises :class:`HistoryError` (a ValueError) naming file,
    line/row, column and value for any bad cell, duplicate or missing price;
    OSError if the file cannot be opened; ImportError for Parquet without pyarrow.
    """
    name = os.fspath(path)
    if _is_parquet(name):
        return _read_parquet(name)
    return _read_csv(name)


# --------------------------------------------------------------------------- returns


def returns(prices: Any, horizon_days: int = 1, window: int | None = 252) -> Any:
    """Relative returns over overlapping horizons from the most recent prices.

    ``prices``: (T, U) closing prices, oldest row first (``PriceHistory.prices``),
    NumPy or CuPy. ``horizon_days``: h >= 1, in rows (trading days). ``window``:
    number of returns wanted (None: as many as the history allows).

    Returns a (window, U) matrix (same array module) of fractions
    ``P[t+h] / P[t] - 1`` for the last ``window`` start days t, oldest first; the
    last row ends on the last price. With h > 1 consecutive rows overlap by h-1
    days: their sample covariance estimates the h-day covariance directly, but
    with only about window/h independent observations.

    Raises :class:`HistoryError` if fewer than ``window + h`` prices are given, or
    if a price is not finite and > 0.
    """
    h = int(horizon_days)
    if h < 1 or h != horizon_days:
        raise ValueError(f"horizon_days must be an integer >= 1; got {horizon_days!r}")
    xp = array_module(prices)
    p = xp.asarray(prices, dtype=xp.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"prices must be a (T, U) matrix; got shape {p.shape}")
    t_count = p.shape[0]
    if window is None:
        w = t_count - h
    else:
        w = int(window)
        if w < 1 or w != window:
            raise ValueError(f"window must be an integer >= 1 or None; got {window!r}")
    if w < 1 or t_count < w + h:
        raise HistoryError(
            f"not enough history: {w if w >= 1 else 1} returns over {h} day(s) need "
            f"{(w if w >= 1 else 1) + h} prices, got {t_count}"
        )
    recent = p[t_count - w - h :]
    bad = ~(xp.isfinite(recent) & (recent > 0))
    if bool(xp.any(bad)):
        row, col = (int(x) for x in xp.argwhere(bad)[0])
        raise HistoryError(
            f"price at row {t_count - w - h + row}, column {col} is not finite and > 0",
            value=float(recent[row, col]),
        )
    return recent[h:] / recent[:-h] - 1.0
