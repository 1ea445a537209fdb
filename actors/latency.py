"""Latency recording per pipeline stage: HDR histograms, percentiles and merging.

One job: :class:`StageRecorder`. The stage names, :class:`LatencyBudgets` and
:class:`StageStats` live in :mod:`actors.latency_stages`; :class:`BudgetMonitor` and
:class:`BudgetBreach` in :mod:`actors.latency_budget`. All are re-exported here, so
``from actors.latency import ...`` works for every name in ``__all__``.

Units, everywhere in this module: timestamps and recorded values are integer
nanoseconds from a monotonic clock (``time.monotonic_ns`` / ``perf_counter_ns``);
every reported figure (percentiles, maxima, budgets) is in microseconds (us) as a
float; wall-clock times are float seconds since the Unix epoch.

Three pieces:

- :class:`LatencyBudgets`: the p99 budget of each stage (config, defaults from
  ARCHITECTURE.md "Latency budget per stage") and how breaches are evaluated.
- :class:`StageRecorder`: one per process or actor. The hot path calls
  :meth:`StageRecorder.record` (~0.5 us on the 2-core reference VM, one short lock,
  no buffer allocated); a reader thread calls :meth:`~StageRecorder.snapshot` for
  percentiles (~0.5 ms for 8 stages, GIL time the hot path waits for: call it at
  ``check_interval_s`` rate, not per message), and
  :meth:`~StageRecorder.encode` / :meth:`~StageRecorder.merge_encoded` ship the
  HDR histograms from actors to the daemon (Ray or ZeroMQ, any bytes transport).
- :class:`BudgetMonitor`: compares a snapshot with the budgets and raises one alert
  and one log line per transition (breach starts, breach clears).

Histograms are HdrHistogram-compatible (1 ns .. 60 s, 3 significant digits): the
wire format is ``HdrHistogram.encode()`` so any HDR tool can read it. The hot path
does not call ``HdrHistogram.record_value`` (about 1.5 us in pure Python); it
increments the same bucket index in a flat counts array, and the reader folds those
counts into the histograms. Percentiles follow HdrHistogram's definition exactly
(nearest rank, reported as the highest value equivalent to the bucket).
"""

from __future__ import annotations

import array
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import msgspec
import numpy as np
from hdrh.histogram import HdrHistogram

from actors.latency_budget import BudgetBreach, BudgetMonitor
from actors.latency_stages import (END_TO_END, FIX_PARSE, LIQUIDATION_DECISION, POSITION_UPDATE, PRETRADE,
                                   REPRICE, RISK_PUBLISH, ROUTE, STAGES, LatencyBudgets, StageStats)

__all__ = [
    "FIX_PARSE", "ROUTE", "POSITION_UPDATE", "RISK_PUBLISH", "PRETRADE", "REPRICE",
    "LIQUIDATION_DECISION", "END_TO_END", "STAGES",
    "LOWEST_NS", "HIGHEST_NS", "SIGNIFICANT_DIGITS",
    "LatencyBudgets", "StageStats", "BudgetBreach", "StageRecorder", "BudgetMonitor",
]

#: Histogram range (ns) and precision. 60 s covers any sane stage; a longer value is
#: a clock or bookkeeping bug and is counted as an anomaly rather than recorded.
LOWEST_NS = 1
HIGHEST_NS = 60_000_000_000
SIGNIFICANT_DIGITS = 3

# The HDR layout for (1, 60 s, 3 digits), taken from hdrh itself so that our flat
# counts arrays are bucket-for-bucket the histogram's counts (encode/add need that).
_TEMPLATE = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
_COUNTS_LEN: int = _TEMPLATE.counts_len
_UNIT_MAG: int = _TEMPLATE.unit_magnitude
_HALF_MAG: int = _TEMPLATE.sub_bucket_half_count_magnitude
_SUB_MASK: int = _TEMPLATE.sub_bucket_mask
_SHIFT: int = _UNIT_MAG + _HALF_MAG + 1
# The fast index formula below is hdrh's _counts_index_for with unit_magnitude 0
# folded in: index = bucket << half_mag + (value >> bucket). Guard the assumption.
assert _UNIT_MAG == 0, "fast index path assumes lowest trackable value 1 ns"
_ZERO_BYTES = bytes(8 * _COUNTS_LEN)
# The window is a ring of at most about this many time slots per stage.
_RING_SLOTS = 60


def _index_ns(ns: int) -> int:
    """HDR counts index of a value in ns (0 <= ns <= HIGHEST_NS); same as hdrh's."""
    bucket = (ns | _SUB_MASK).bit_length() - _SHIFT
    return (bucket << _HALF_MAG) + (ns >> bucket)


def _value_us_at(index: int) -> float:
    """Highest ns value equivalent to a counts index, in us (hdrh's reported value)."""
    return _TEMPLATE.get_highest_equivalent_value(_TEMPLATE.get_value_from_index(index)) / 1000.0


def _new_counts() -> array.array:
    # array('q'): the cheapest buffer to increment from Python that numpy can view
    # without a copy (list is faster to bump but costs ~1 ms to convert per harvest,
    # all of it holding the GIL the hot path needs).
    return array.array("q", _ZERO_BYTES)


class _EncodedRecorder(msgspec.Struct, array_like=True, frozen=True):
    """Wire form of :meth:`StageRecorder.encode`: per stage either a standard HDR
    histoblob (``histograms``, version 1, or ``hdr=True``) or the non-empty buckets of
    this module's layout (``sparse``: int32 indices and int64 counts, little-endian
    bytes; version 2), and anomaly counts."""

    version: int
    histograms: dict[str, bytes]
    anomalies: dict[str, int]
    sparse: dict[str, tuple[bytes, bytes]] = {}


#: 2: sparse buckets; version-1 payloads (HDR histoblobs only) are still merged.
_WIRE_VERSION = 2
_WIRE_VERSIONS = (1, 2)
_wire_encoder = msgspec.msgpack.Encoder()
_wire_decoder = msgspec.msgpack.Decoder(_EncodedRecorder)


# --------------------------------------------------------------------------- recorder

class _StageState:
    """Reader-side accumulators of one stage (dense int64 counts in HDR layout)."""

    __slots__ = ("total", "count", "window", "window_ring", "unshipped", "anomalies", "unshipped_anomalies")

    def __init__(self, windowed: bool) -> None:
        self.total = np.zeros(_COUNTS_LEN, np.int64)
        self.count = 0  # == total.sum(), kept to avoid a dense pass per snapshot
        # The window is kept as a running sum: each harvest adds its sparse delta and
        # expired deltas are subtracted, so memory stays one dense array per stage.
        self.window = np.zeros(_COUNTS_LEN, np.int64) if windowed else None
        # (first add time, last add time, bucket indices, counts) per slot, oldest first.
        self.window_ring: deque[tuple[float, float, np.ndarray, np.ndarray]] = deque()
        self.unshipped: np.ndarray | None = None  # allocated on the first encode()
        self.anomalies = 0
        self.unshipped_anomalies = 0


class StageRecorder:
    """Per-stage HDR latency histograms for one process or actor.

    Threading: any number of writer threads may call :meth:`record` /
    :meth:`record_value_ns` (they share one short lock, held for a single counter
    increment); reader methods (:meth:`snapshot`, :meth:`encode`,
    :meth:`merge_encoded`, :meth:`reset`) may be called from other threads and
    serialize among themselves. Readers swap the writers' counts buffer out under
    the lock (a pointer swap) and do all the numerical work outside it, so a
    scrape never stalls the hot path for more than the swap.

    ``budgets``: the budgets, ``min_samples`` and ``window_s`` used in snapshots
    (defaults if None). Percentiles cover roughly the last ``budgets.window_s``
    seconds (at the granularity of one snapshot), or with ``cumulative=True``
    every sample since start or reset (for benches). ``clock``: monotonic
    seconds, for the window (injectable for tests).
    """

    def __init__(self, budgets: LatencyBudgets | None = None, *, cumulative: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budgets = budgets if budgets is not None else LatencyBudgets()
        #: Window length in seconds, or None when percentiles are cumulative.
        self.window_s: float | None = None if cumulative else self.budgets.window_s
        self._slot_s = (self.window_s or 0.0) / _RING_SLOTS
        self._clock = clock
        # Writer side, guarded by _lock: stage -> flat counts since the last harvest.
        self._lock = threading.Lock()
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._active: dict[str, array.array] = {}
        self._pending_anomalies: dict[str, int] = {}
        # Reader side, guarded by _read_lock (readers never take it while a writer
        # could need it: the order is always _read_lock, then _lock).
        self._read_lock = threading.RLock()
        self._spare: dict[str, array.array] = {}
        self._states: dict[str, _StageState] = {}

    # ----------------------------------------------------------------- hot path
    def record(self, stage: str, start_ns: int, end_ns: int) -> None:
        """Record ``end_ns - start_ns`` (monotonic ns) for ``stage``.

        Negative or over-60-s differences are counted in :attr:`anomalies` instead.
        """
        # Same body as record_value_ns, inlined: a Python call costs ~60-80 ns here.
        ns = end_ns - start_ns
        if 0 <= ns <= HIGHEST_NS:
            bucket = (ns | _SUB_MASK).bit_length() - _SHIFT
            index = (bucket << _HALF_MAG) + (ns >> bucket)
            self._acquire()
            try:
                counts = self._active.get(stage)
                if counts is not None:
                    counts[index] += 1
                    return
            finally:
                self._release()
            self._record_first(stage, index)
        else:
            self._record_anomaly(stage)

    def record_value_ns(self, stage: str, ns: int) -> None:
        """Record one latency of ``ns`` nanoseconds (int) for ``stage``."""
        if 0 <= ns <= HIGHEST_NS:
            # Index computed before taking the lock: keeps the critical section to
            # one dict lookup and one increment.
            bucket = (ns | _SUB_MASK).bit_length() - _SHIFT
            index = (bucket << _HALF_MAG) + (ns >> bucket)
            # Pre-bound acquire/release with try/finally: ~100 ns cheaper than
            # `with self._lock` here, and as safe.
            self._acquire()
            try:
                counts = self._active.get(stage)
                if counts is not None:
                    counts[index] += 1
                    return
            finally:
                self._release()
            self._record_first(stage, index)
        else:
            self._record_anomaly(stage)

    def _record_anomaly(self, stage: str) -> None:
        with self._lock:
            self._pending_anomalies[stage] = self._pending_anomalies.get(stage, 0) + 1

    def _record_first(self, stage: str, index: int) -> None:
        # Off the hot path: the first value of a stage allocates its buffer (221 KB),
        # so processes only pay for the stages they actually record.
        fresh = _new_counts()
        with self._lock:
            counts = self._active.setdefault(stage, fresh)
            counts[index] += 1

    # ----------------------------------------------------------------- reader side
    @property
    def anomalies(self) -> int:
        """Values not recorded (negative or over 60 s), all stages, since start or reset."""
        with self._read_lock:
            self._harvest()
            return sum(state.anomalies for state in self._states.values())

    def _state(self, stage: str) -> _StageState:
        state = self._states.get(stage)
        if state is None:
            state = self._states[stage] = _StageState(self.window_s is not None)
        return state

    def _harvest(self) -> None:
        """Fold the writers' counts since the last harvest into the accumulators.

        Caller holds _read_lock.
        """
        spare = self._spare
        with self._lock:
            active = self._active
            for stage in active.keys() - spare.keys():
                # A stage a writer started since the last harvest: rare, so the
                # allocation inside the lock does not matter.
                spare[stage] = _new_counts()
            self._active = spare
            anomalies, self._pending_anomalies = self._pending_anomalies, {}
        # From here on `active` is ours alone: writers only ever see the new dict.
        now = self._clock()
        for stage, counts in active.items():
            view = np.frombuffer(counts, dtype=np.int64)
            index = _nonzero(view)
            if index.size:
                values = view[index]
                self._add(stage, index, values, now)
                view[index] = 0  # zero only the touched buckets: O(distinct values)
        for stage, n in anomalies.items():
            state = self._state(stage)
            state.anomalies += n
            if state.unshipped is not None:
                state.unshipped_anomalies += n
        self._spare = active
        self._expire(now)

    def _add(self, stage: str, index: np.ndarray, values: np.ndarray, now: float) -> None:
        """Add a sparse delta (bucket indices, counts) to a stage. Caller holds _read_lock."""
        state = self._state(stage)
        state.total[index] += values
        state.count += int(values.sum())
        if state.window is not None:
            state.window[index] += values
            ring = state.window_ring
            if ring and now - ring[-1][0] < self._slot_s:
                # Coalesce into the current slot: however often readers harvest, the
                # ring holds at most ~_RING_SLOTS entries per stage.
                first, _, slot_index, slot_values = ring.pop()
                ring.append((first, now, *_sparse_sum(slot_index, slot_values, index, values)))
            else:
                ring.append((now, now, index, values))
        if state.unshipped is not None:
            state.unshipped[index] += values

    def _expire(self, now: float) -> None:
        if self.window_s is None:
            return
        horizon = now - self.window_s
        for state in self._states.values():
            ring = state.window_ring
            # A slot leaves when its newest sample is older than the window, so a
            # sample stays at least window_s and at most window_s + one slot.
            while ring and ring[0][1] <= horizon:
                _, _, index, values = ring.popleft()
                state.window[index] -= values

    def snapshot(self) -> dict[str, StageStats]:
        """Per-stage statistics now: every stage of :data:`STAGES`, then any other
        stage recorded, in that order. Latencies in us (see :class:`StageStats`).
        """
        with self._read_lock:
            self._harvest()
            names = list(STAGES) + sorted(set(self._states) - set(STAGES))
            return {stage: self._stats(stage) for stage in names}

    def _stats(self, stage: str) -> StageStats:
        budget = self.budgets.budget_us(stage)
        state = self._states.get(stage)
        if state is None:
            nan = math.nan
            return StageStats(count=0, window_count=0, p50_us=nan, p99_us=nan, p999_us=nan, max_us=nan,
                              budget_us=budget, breached=False)
        counts = state.window if state.window is not None else state.total
        # Work on the occupied buckets only: latencies occupy a few hundred of the
        # 27,648, and a dense cumsum would cost ~5x more reader time (GIL time the
        # hot path then waits for).
        index = _nonzero(counts)
        cumulative = np.cumsum(counts[index])
        n = int(cumulative[-1]) if index.size else 0
        if n:
            p50, p99, p999 = (_value_us_at(int(index[_percentile_rank(cumulative, n, p)]))
                              for p in (50.0, 99.0, 99.9))
            max_us = _value_us_at(int(index[-1]))
        else:
            p50 = p99 = p999 = max_us = math.nan
        breached = budget is not None and n >= self.budgets.min_samples and p99 > budget
        return StageStats(count=state.count, window_count=n, p50_us=p50, p99_us=p99, p999_us=p999,
                          max_us=max_us, budget_us=budget, breached=breached, anomalies=state.anomalies)

    def encode(self, *, cumulative: bool = False, hdr: bool = False) -> bytes:
        """The histograms as bytes for :meth:`merge_encoded` on another recorder.

        By default each call returns only what was recorded (or merged) since the
        previous ``encode()``, so a receiver that merges every message counts each
        sample once; the first call returns everything since start. With
        ``cumulative=True``: everything since start or reset, without moving that
        mark. The payload is msgpack of each stage's non-empty buckets (sparse:
        actors ship it every second, and building and deflating HDR histoblobs held
        their GIL ~1 ms per stage, a stall their hot path waited behind) or, with
        ``hdr=True``, of ``{stage: HdrHistogram.encode()}`` (standard base64 HDR
        histoblobs, for other tools), plus anomaly counts.
        """
        with self._read_lock:
            self._harvest()
            blobs: dict[str, bytes] = {}
            sparse: dict[str, tuple[bytes, bytes]] = {}
            anomalies: dict[str, int] = {}
            for stage, state in self._states.items():
                if cumulative:
                    counts, n_anomalies = state.total, state.anomalies
                elif state.unshipped is None:
                    # First incremental encode: everything so far, then track deltas.
                    counts, n_anomalies = state.total.copy(), state.anomalies
                    state.unshipped = np.zeros(_COUNTS_LEN, np.int64)
                    state.unshipped_anomalies = 0
                else:
                    # Hand the delta over and start a fresh one (calloc'd: cheap).
                    counts, n_anomalies = state.unshipped, state.unshipped_anomalies
                    state.unshipped = np.zeros(_COUNTS_LEN, np.int64)
                    state.unshipped_anomalies = 0
                index = _nonzero(counts)
                if index.size:
                    if hdr:
                        blobs[stage] = _to_hdr(counts, index).encode()
                    else:
                        sparse[stage] = (index.astype("<i4").tobytes(), counts[index].astype("<i8").tobytes())
                if n_anomalies:
                    anomalies[stage] = n_anomalies
            return _wire_encoder.encode(_EncodedRecorder(_WIRE_VERSION, blobs, anomalies, sparse))

    def merge_encoded(self, data: bytes) -> None:
        """Add another recorder's :meth:`encode` output to this one's histograms.

        Merged samples count as recorded now (they enter the current window).
        Raises ``ValueError`` on a payload that is not a recorder encoding.
        """
        try:
            message = _wire_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a StageRecorder encoding: {exc}") from exc
        if message.version not in _WIRE_VERSIONS:
            raise ValueError(f"StageRecorder encoding version {message.version}, expected one of {_WIRE_VERSIONS}")
        # Decode everything before touching state, so a bad blob merges nothing.
        deltas: list[tuple[str, np.ndarray, np.ndarray]] = []
        for stage, blob in message.histograms.items():
            try:
                index, values = _from_hdr(HdrHistogram.decode(blob))
            except Exception as exc:  # hdrh raises several unrelated types on bad input
                raise ValueError(f"stage {stage!r}: bad HDR histogram encoding: {exc}") from exc
            deltas.append((stage, index, values))
        for stage, (index_bytes, count_bytes) in message.sparse.items():
            index = np.frombuffer(index_bytes, "<i4").astype(np.int64)
            values = np.frombuffer(count_bytes, "<i8").astype(np.int64)
            if (index.size != values.size or not index.size or int(index.min()) < 0
                    or int(index.max()) >= _COUNTS_LEN or bool((np.diff(index) <= 0).any()) or bool((values <= 0).any())):
                raise ValueError(f"stage {stage!r}: bad sparse buckets ({index.size} indices, {values.size} counts)")
            deltas.append((stage, index, values))
        with self._read_lock:
            self._harvest()
            now = self._clock()
            for stage, index, values in deltas:
                if index.size:
                    self._add(stage, index, values, now)
            for stage, n in message.anomalies.items():
                state = self._state(stage)
                state.anomalies += n
                if state.unshipped is not None:
                    state.unshipped_anomalies += n

    def reset(self) -> None:
        """Forget every sample and anomaly (pending writes included)."""
        with self._read_lock:
            with self._lock:
                active, self._active = self._active, {}
                self._pending_anomalies = {}
            del active  # buffers are dropped, not reused: reset is rare
            self._spare = {}
            self._states = {}


def _sparse_sum(index_a: np.ndarray, values_a: np.ndarray, index_b: np.ndarray,
                values_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of two sparse count vectors, as (unique ascending indices, counts)."""
    index, inverse = np.unique(np.concatenate((index_a, index_b)), return_inverse=True)
    values = np.zeros(index.size, np.int64)
    np.add.at(values, inverse, np.concatenate((values_a, values_b)))
    return index, values


def _nonzero(counts: np.ndarray) -> np.ndarray:
    """Indices of the non-empty buckets (via a bool mask: ~4x faster than on int64)."""
    return np.flatnonzero(counts != 0)


def _percentile_rank(cumulative: np.ndarray, total: int, percentile: float) -> int:
    """Position in ``cumulative`` (running counts of the occupied buckets) of a
    percentile, by HdrHistogram's rule: nearest rank, at least the first sample."""
    target = max(int(percentile * total / 100 + 0.5), 1)
    return int(np.searchsorted(cumulative, target, side="left"))


def _to_hdr(counts: np.ndarray, index: np.ndarray) -> HdrHistogram:
    """A real HdrHistogram holding dense ``counts`` (our layout) whose non-empty
    buckets are ``index`` (non-empty, ascending), for hdrh's encoder."""
    histogram = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
    values = counts[index]
    np.ctypeslib.as_array(histogram.counts)[index] = values
    # hdrh's encoder reads total and max to size its payload: set them as add() would.
    histogram.set_internal_tacking_values(int(index[0]), int(index[-1]), int(values.sum()))
    return histogram


def _from_hdr(histogram: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Sparse (indices, counts) of a decoded histogram in our layout."""
    same_layout = (histogram.counts_len == _COUNTS_LEN and histogram.unit_magnitude == _UNIT_MAG
                   and histogram.sub_bucket_half_count_magnitude == _HALF_MAG)
    if same_layout:
        counts = np.ctypeslib.as_array(histogram.counts)[:_COUNTS_LEN].astype(np.int64)
        index = _nonzero(counts)
        return index, counts[index]
    # A histogram from another tool with another range or precision: re-bucket each
    # recorded value (its bucket's lowest value) into ours.
    dense = np.zeros(_COUNTS_LEN, np.int64)
    for item in histogram.get_recorded_iterator():
        value = min(int(item.value_iterated_to), HIGHEST_NS)
        dense[_index_ns(value)] += item.count_at_value_iterated_to
    index = _nonzero(dense)
    return index, dense[index]
