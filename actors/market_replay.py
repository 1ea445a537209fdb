"""Market-data replay: ticks from recorded CSV or Parquet files, and the writers
that record ticks into that format.

One job: the replay file format, read (:class:`ReplaySource`, paced at recorded
speed, accelerated or as fast as possible) and written (:func:`write_replay_csv`,
:func:`write_replay_parquet`).

Replay files (:class:`ReplaySource`): CSV (UTF-8, header row) or Parquet with columns

- ``time``: ISO 8601 timestamp (``2024-08-05T14:30:00.123456789Z``; no zone = UTC; up
  to 9 fractional digits kept exactly) or integer ns since 1970-01-01 UTC (Parquet:
  a timestamp column of any unit, an integer column in ns, or ISO strings);
- ``underlying``, ``price``: as in the tick;
- optional ``rate``, ``dividend_yield``, ``atm_vol``: as in the tick; an empty cell
  (CSV) or null (Parquet) means unchanged.

Column names are case-insensitive; an unknown column is an error when the file is
opened (a misspelt ``atmvol`` would otherwise be ignored in silence). Rows must be in
time order (equal times allowed).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import os
import re
import threading
import time as _time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from typing import Any

import msgspec
import numpy as np

from actors.ticks import Tick, _check_tick, _is_int, _is_real, _to_us

__all__ = ["REPLAY_COLUMNS", "ReplayError", "ReplayFileError", "ReplaySource", "write_replay_csv",
           "write_replay_parquet"]

# Same logger name as before the split (actors.market_data), so log routing is unchanged.
log = logging.getLogger("riskd.market_data")

REPLAY_COLUMNS = ("time", "underlying", "price", "rate", "dividend_yield", "atm_vol")
_REQUIRED = ("time", "underlying", "price")
_OPTIONAL_NUMERIC = ("rate", "dividend_yield", "atm_vol")
_FIELD_COLUMN = {"underlying": "underlying", "price": "price", "rate": "rate", "dividend_yield": "dividend_yield",
                 "atm_vol": "atm_vol", "event_time_ns": "time"}
_ISO_TS = re.compile(r"(?P<base>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)"
                     r"(?:\.(?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d{2}:?\d{2})?")
# Integer times below this (1973-03-03 in ns) are seconds, ms or us sent as ns: replayed
# as ns they would compress a day into microseconds without anyone noticing.
_MIN_INT_TIME_NS = 10 ** 17
_TS_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


class ReplayError(msgspec.Struct, frozen=True):
    """A replay row that was skipped: ``path``, ``line`` (CSV: 1-based physical line,
    header = 1; Parquet: 1-based data row), ``column`` (name, or None for the whole
    row), ``value`` (as read), ``reason``. ``str()`` gives ``path:line:column: reason``."""

    path: str
    line: int
    column: str | None
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column or '-'}: {self.reason} (value {self.value!r})"


class ReplayFileError(ValueError):
    """A replay file that cannot be replayed at all (raised when the source opens it,
    never in the middle of a replay): unreadable, no header, bad or missing columns."""


def _parse_time(value: Any) -> int:
    """ns since the epoch from an ISO string or an integer ns; ValueError with why."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing time")
    if isinstance(value, dt.datetime):
        return _to_us(value) * 1000
    if _is_int(value):
        ns = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        ns = int(value.strip())
    elif isinstance(value, str):
        match = _ISO_TS.fullmatch(value.strip())
        if match is None:
            raise ValueError("time must be an ISO 8601 timestamp or integer ns since 1970-01-01 UTC")
        tz = match["tz"] or ""
        try:
            base = dt.datetime.fromisoformat(match["base"] + ("+00:00" if tz == "Z" else tz))
        except ValueError as exc:
            raise ValueError(f"invalid timestamp: {exc}") from None
        frac = match["frac"] or ""
        return _to_us(base) * 1000 + (int(frac.ljust(9, "0")) if frac else 0)
    else:
        raise ValueError(f"time of type {type(value).__name__}")
    if ns < _MIN_INT_TIME_NS:
        raise ValueError("integer time must be ns since 1970-01-01 UTC; this looks like seconds, ms or us")
    return ns


def _parse_number(value: Any, column: str, optional: bool) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise ValueError(f"missing {column}")
    if isinstance(value, bool):
        raise ValueError(f"{column} is a boolean")
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"{column} is not a number") from None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise ValueError(f"{column} of type {type(value).__name__}")


def _is_parquet(path: str) -> bool:
    if path.lower().endswith((".parquet", ".pq")):
        return True
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


def _columns(names: Sequence[str], path: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, raw in enumerate(names):
        name = str(raw).strip().lower()
        if name not in REPLAY_COLUMNS:
            raise ReplayFileError(f"{path}: unknown column {raw!r} (columns are {', '.join(REPLAY_COLUMNS)})")
        if name in index:
            raise ReplayFileError(f"{path}: column {name!r} appears twice")
        index[name] = i
    missing = [c for c in _REQUIRED if c not in index]
    if missing:
        raise ReplayFileError(f"{path}: missing column(s) {', '.join(missing)}")
    return index


class ReplaySource:
    """Ticks from a recorded CSV or Parquet file (columns in the module docstring),
    paced at recorded speed, accelerated, or as fast as possible.

    ``speed``: 1.0 = recorded timing, 10.0 = ten times faster, 0 = no waiting.
    Pacing is against the start of the replay (tick i is due ``(t_i - t_0) / speed``
    seconds after the first), so a slow consumer does not accumulate lag.
    ``clock``: seconds, monotonic (default ``time.monotonic``); ``sleep``: waits
    seconds (default: an interruptible wait that :meth:`stop` cuts short); inject
    both to replay without waiting in tests. ``known_underlyings``: the configured
    ids (None accepts any). ``on_error``: called with each :class:`ReplayError`
    (default: a warning log line). ``seq_start``: ``seq`` of the first tick, +1 per
    tick yielded. Ticks carry the recorded time as ``event_time_ns``.

    A malformed row (bad or missing value, unknown underlying, value out of range
    per :func:`validate_tick`, time going backwards, wrong field count) is reported
    and skipped: ``skipped`` counts them, ``errors`` keeps the first
    ``max_errors_kept``. The iteration never raises for file contents; a file that
    cannot be replayed at all raises :class:`ReplayFileError` from the constructor.
    Each ``iter()`` replays the file from the start.
    """

    def __init__(self, path: str | os.PathLike[str], *, speed: float = 1.0,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], Any] | None = None,
                 known_underlyings: Container[str] | None = None,
                 on_error: Callable[[ReplayError], Any] | None = None,
                 seq_start: int = 1, max_errors_kept: int = 1000) -> None:
        if not _is_real(speed) or not math.isfinite(speed) or speed < 0.0:
            raise ValueError(f"speed: must be finite and >= 0 (0 = as fast as possible), got {speed!r}")
        self.path = os.fspath(path)
        self.speed = float(speed)
        self._stop_event = threading.Event()
        self._clock = clock if clock is not None else _time.monotonic
        self._sleep = sleep if sleep is not None else self._stop_event.wait
        self._known = known_underlyings
        self._on_error = on_error
        self._seq_start = int(seq_start)
        self._max_errors = int(max_errors_kept)
        self.errors: list[ReplayError] = []
        self.skipped = 0
        self.emitted = 0
        # Open once here so a missing file or a bad header fails before the stream starts.
        try:
            self._parquet = _is_parquet(self.path)
            if self._parquet:
                self._parquet_columns()
            else:
                self._csv_header()
        except OSError as exc:
            raise ReplayFileError(f"{self.path}: cannot open: {exc}") from exc

    def stop(self) -> None:
        """End the replay at the next tick (and cut a default ``sleep`` short)."""
        self._stop_event.set()

    # ---- reading

    def _csv_header(self) -> tuple[dict[str, int], int]:
        with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.reader(handle)
            for fields in reader:
                if fields and any(f.strip() for f in fields):
                    return _columns(fields, self.path), reader.line_num
        raise ReplayFileError(f"{self.path}: empty file (no header)")

    def _csv_rows(self) -> Iterator[tuple[int, dict[str, Any] | ReplayError]]:
        index, header_line = self._csv_header()
        width = max(index.values()) + 1
        # errors="replace": a bad byte becomes U+FFFD inside its field, so it fails that
        # row's parsing instead of aborting the whole replay with UnicodeDecodeError.
        with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.reader(handle)
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield reader.line_num, ReplayError(self.path, reader.line_num, None, None, f"CSV error: {exc}")
                    continue
                line = reader.line_num
                if line <= header_line or not fields or not any(f.strip() for f in fields):
                    continue
                if len(fields) != width:
                    yield line, ReplayError(self.path, line, None, ",".join(fields),
                                            f"expected {width} fields, got {len(fields)}")
                    continue
                yield line, {name: fields[i] for name, i in index.items()}

    def _parquet_columns(self) -> tuple[Any, dict[str, int]]:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError(f"replaying the Parquet file {self.path!r} needs pyarrow: "
                              "pip install 'riskd[parquet]'") from exc
        try:
            pf = pq.ParquetFile(self.path)
        except OSError:
            raise
        except Exception as exc:  # pyarrow's ArrowInvalid family
            raise ReplayFileError(f"{self.path}: cannot read Parquet file: {exc}") from exc
        index = _columns(pf.schema_arrow.names, self.path)
        return pf, index

    def _parquet_rows(self) -> Iterator[tuple[int, dict[str, Any] | ReplayError]]:
        import pyarrow as pa

        pf, index = self._parquet_columns()
        row = 0
        batches = pf.iter_batches(batch_size=8192)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:  # a corrupt row group: report it and end, never raise mid-stream
                yield row + 1, ReplayError(self.path, row + 1, None, None, f"cannot read Parquet data: {exc}")
                return
            columns: dict[str, list[Any]] = {}
            for name, i in index.items():
                col = batch.column(i)
                if pa.types.is_timestamp(col.type):
                    # Integers in the column's unit times the unit: exact, cannot overflow.
                    scale = _TS_UNIT_NS[col.type.unit]
                    columns[name] = [None if v is None else v * scale for v in col.cast(pa.int64()).to_pylist()]
                else:
                    columns[name] = col.to_pylist()
            for k in range(batch.num_rows):
                row += 1
                yield row, {name: values[k] for name, values in columns.items()}

    def _to_tick(self, line: int, values: dict[str, Any], seq: int) -> Tick | ReplayError:
        def err(column: str, reason: str) -> ReplayError:
            return ReplayError(self.path, line, column, values.get(column), reason)

        try:
            time_ns = _parse_time(values["time"])
        except ValueError as exc:
            return err("time", str(exc))
        und = values["underlying"]
        if not isinstance(und, str) or not und.strip():
            return err("underlying", "missing underlying")
        und = und.strip()
        if "\ufffd" in und:
            return err("underlying", "not valid UTF-8")
        numbers: dict[str, float | None] = {}
        for column in ("price",) + _OPTIONAL_NUMERIC:
            if column == "price" or column in values:
                try:
                    numbers[column] = _parse_number(values.get(column), column, optional=column != "price")
                except ValueError as exc:
                    return err(column, str(exc))
        tick = Tick(underlying=und, price=numbers["price"], rate=numbers.get("rate"),
                    dividend_yield=numbers.get("dividend_yield"), atm_vol=numbers.get("atm_vol"),
                    event_time_ns=time_ns, seq=seq)
        problem = _check_tick(tick, self._known, None)
        if problem is not None:
            field, reason, value = problem
            return ReplayError(self.path, line, _FIELD_COLUMN.get(field, field), values.get(_FIELD_COLUMN.get(field)),
                               f"{field}: {reason}")
        return tick

    def _report(self, error: ReplayError) -> None:
        self.skipped += 1
        if len(self.errors) < self._max_errors:
            self.errors.append(error)
        if self._on_error is not None:
            self._on_error(error)
        else:
            log.warning("replay row skipped: %s", error)

    # ---- pacing

    def __iter__(self) -> Iterator[Tick]:
        self._stop_event.clear()
        rows = self._parquet_rows() if self._parquet else self._csv_rows()
        seq = self._seq_start
        first_ns: int | None = None
        last_ns: int | None = None
        start_clock = 0.0
        for line, values in rows:
            if self._stop_event.is_set():
                return
            item = values if isinstance(values, ReplayError) else self._to_tick(line, values, seq)
            if isinstance(item, ReplayError):
                self._report(item)
                continue
            if last_ns is not None and item.event_time_ns < last_ns:
                self._report(ReplayError(self.path, line, "time", values["time"],
                                         f"time goes backwards (previous row at {last_ns} ns)"))
                continue
            if first_ns is None:
                first_ns, start_clock = item.event_time_ns, self._clock()
            elif self.speed > 0.0:
                due = start_clock + (item.event_time_ns - first_ns) / 1e9 / self.speed
                delay = due - self._clock()
                if delay > 0.0:
                    self._sleep(delay)
                if self._stop_event.is_set():
                    return
            last_ns = item.event_time_ns
            seq += 1
            self.emitted += 1
            yield item


def _replay_rows(ticks: Iterable[Tick]) -> Iterator[tuple[int, str, float, float | None, float | None, float | None]]:
    for tick in ticks:
        yield tick.event_time_ns, tick.underlying, tick.price, tick.rate, tick.dividend_yield, tick.atm_vol


def write_replay_csv(path: str | os.PathLike[str], ticks: Iterable[Tick]) -> int:
    """Record ``ticks`` as a replay CSV (time as integer ns, floats in repr so they
    read back bit-exact, None as an empty cell); return the number of rows.

    Only the replay columns are written: vol surfaces, futures prices and option
    vols are not part of the replay format and are dropped.
    """
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REPLAY_COLUMNS)
        for row in _replay_rows(ticks):
            writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
            count += 1
    return count


def write_replay_parquet(path: str | os.PathLike[str], ticks: Iterable[Tick]) -> int:
    """Record ``ticks`` as a replay Parquet file (``time`` a UTC ns timestamp column);
    return the number of rows. Same columns and drops as :func:`write_replay_csv`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(_replay_rows(ticks))
    cols = list(zip(*rows)) if rows else [[] for _ in REPLAY_COLUMNS]
    table = pa.table({
        "time": pa.array(cols[0], type=pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "underlying": pa.array(cols[1], type=pa.string()),
        "price": pa.array(cols[2], type=pa.float64()),
        "rate": pa.array(cols[3], type=pa.float64()),
        "dividend_yield": pa.array(cols[4], type=pa.float64()),
        "atm_vol": pa.array(cols[5], type=pa.float64()),
    })
    pq.write_table(table, path)
    return len(rows)
