"""Position-shard snapshots: the shard's state and the drop-copy sequence number it reflects.

A snapshot holds every account's cash, tier, positions (contracts and average
price per unit) and open orders (the drop copy's and the pre-trade hook's
reservations, the latter with the seconds left of their TTL), the ExecID keys of
the fills applied, the events held for unknown reference data, and
``applied_seq``: the highest drop-copy MsgSeqNum the shard applied. Recovery =
:func:`restore_shard` from the latest snapshot, then the journal's frames from
``applied_seq`` on (same-seq frames are re-applied idempotently: ExecID dedup for
fills, reservations set, not added), then the OMS's resend.

Files: ``RSKDSNP1`` | CRC-32 of the body (u32) | msgspec msgpack body; written
atomically (temporary file, fsync, rename, fsync of the folder), so a crash leaves
the previous snapshot or the new one, never half of one. A damaged file raises
:class:`SnapshotError` naming it: recovery never guesses.
"""

from __future__ import annotations

import heapq
import logging
import os
import struct
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Annotated, Callable

import msgspec
from msgspec import Meta

from actors.fork_call import ForkCallError, ForkedCall, fork_available, fork_call
from actors.messages import FillMsg, OrderMsg, decode, encode
from actors.position_shard import PositionShard
from fix.journal import FsyncPolicy, JournalSettings
from risk.account import OpenOrder
from risk.params import MarginProfile
from risk.tiers import Tier

log = logging.getLogger("riskd.snapshot")

MAGIC = b"RSKDSNP1"
_CRC = struct.Struct("<I")
_SEQ = struct.Struct("<q")
VERSION = 1


class DurabilitySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Journal and snapshots (``[durability]`` in the daemon's TOML).

    ``state_dir``: folder of the drop-copy journal, the ExecID store, the shard
    snapshots and the liquidation actor's state ("" = ``<run_dir>/state``); a
    daemon started on an existing state folder recovers from it. ``journal``:
    false runs without a journal (no crash recovery: tests and benches only).
    ``snapshot_interval_s``: seconds between two snapshots of a shard (one is also
    written at shutdown). ``fsync``, ``fsync_interval_ms``, ``segment_mb``: the
    journal's (fix.journal.JournalSettings: ``batch`` fsyncs once per TCP read before
    anything is published, +0.1-0.5 ms per read; ``interval``, the default, fsyncs in
    the background: a power loss can lose up to that many ms of journal, which the
    OMS then resends, as the session's next expected seq comes from the journal; a
    killed process loses nothing under any policy).
    """

    state_dir: str = ""
    journal: bool = True
    snapshot_interval_s: Annotated[float, Meta(gt=0.0, le=86_400.0)] = 10.0
    fsync: FsyncPolicy = "interval"
    fsync_interval_ms: Annotated[float, Meta(gt=0.0, le=60_000.0)] = 10.0
    segment_mb: Annotated[int, Meta(ge=1, le=4096)] = 64

    def journal_settings(self) -> JournalSettings:
        return JournalSettings(fsync=self.fsync, fsync_interval_ms=self.fsync_interval_ms, segment_mb=self.segment_mb)


class SnapshotError(RuntimeError):
    """A snapshot that cannot be used (damaged, another shard's, unknown names)."""


class PositionState(msgspec.Struct, frozen=True, array_like=True):
    """Signed contracts and average price (per unit) of one instrument."""

    symbol: str
    quantity: float
    average_price: float


class OrderState(msgspec.Struct, frozen=True, array_like=True):
    """An open order's reservation: signed open contracts and limit price (per unit)."""

    order_id: str
    symbol: str
    quantity: float
    limit_price: float


class AccountState(msgspec.Struct, frozen=True, array_like=True):
    """One account: profile name, cash (currency), tier (risk.tiers.Tier value), the
    drop-copy seq of its last fill, positions and open orders."""

    id: str
    profile: str
    cash: float
    tier: int
    last_seq: int
    positions: tuple[PositionState, ...]
    orders: tuple[OrderState, ...]


class PendingState(msgspec.Struct, frozen=True, array_like=True):
    """A pre-trade reservation the drop copy has not reported yet: seconds of TTL left
    (inf: none), the reservation, and the drop copy's order it replaced (if any)."""

    order_id: str
    account: str
    ttl_left_s: float
    order: OrderState
    previous: OrderState | None = None


class ShardSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A shard's state at drop-copy seq ``applied_seq``; ``written_unix_ns``: wall clock."""

    version: int = VERSION
    shard: int
    n_shards: int
    applied_seq: int
    written_unix_ns: int
    accounts: tuple[AccountState, ...]
    applied_fills: list[tuple[str, str, str]]
    held: list[bytes]
    pending: list[PendingState] = []


_DECODER = msgspec.msgpack.Decoder(ShardSnapshot)
_ENCODER = msgspec.msgpack.Encoder()


def snapshot_path(state_dir: str | Path, shard: int) -> Path:
    """``<state_dir>/shards/shard-<k>.snap``."""
    return Path(state_dir) / "shards" / f"shard-{shard}.snap"


# ----- capture and restore (on the shard's thread) ----------------------------------------
def _order_state(order: OpenOrder, ids: list[str]) -> OrderState:
    return OrderState(order.order_id, ids[order.row], order.quantity, order.limit_price)


def capture_shard(shard: PositionShard, profiles: dict[str, MarginProfile], checker: object | None = None, *,
                  clock: Callable[[], float] = time.monotonic) -> ShardSnapshot:
    """The shard's state now (``checker``: its actors.pretrade.PreTradeChecker, if any)."""
    names = {id(p): name for name, p in profiles.items()}
    ids = shard.model.table.ids
    accounts = []
    for account_id, account in shard.accounts.items():
        profile = names.get(id(account.profile)) or next(n for n, p in profiles.items() if p == account.profile)
        accounts.append(AccountState(
            account_id, profile, account.cash, int(account.tier), shard.last_seq.get(account_id, 0),
            tuple(PositionState(s, p.quantity, p.average_price) for s, p in account.iter_positions()),
            tuple(_order_state(o, ids) for o in account.orders.values())))
    pending = []
    if checker is not None:
        now = clock()
        for order_id, entry in checker.pending.items():  # type: ignore[attr-defined]
            pending.append(PendingState(order_id, entry.account, entry.expiry - now, _order_state(entry.order, ids),
                                        _order_state(entry.previous, ids) if entry.previous is not None else None))
    return ShardSnapshot(shard=shard.shard, n_shards=shard.n_shards, applied_seq=shard.applied_seq,
                         written_unix_ns=time.time_ns(), accounts=tuple(accounts),
                         applied_fills=list(shard.applied_fills), held=[encode(m) for m in shard.held],
                         pending=pending)


def _row(shard: PositionShard, symbol: str, where: str) -> int:
    row = shard.model.table.index.get(symbol)
    if row is None:
        raise SnapshotError(f"{where}: instrument {symbol!r} is not in the reference data any more")
    return row


def restore_shard(shard: PositionShard, snapshot: ShardSnapshot, profiles: dict[str, MarginProfile],
                  checker: object | None = None, *, clock: Callable[[], float] = time.monotonic,
                  source: str = "snapshot") -> None:
    """Put ``snapshot``'s state into ``shard`` (its accounts replaced); SnapshotError if it
    does not fit (another shard, an unknown profile or instrument)."""
    if (snapshot.shard, snapshot.n_shards) != (shard.shard, shard.n_shards):
        raise SnapshotError(f"{source}: shard {snapshot.shard} of {snapshot.n_shards}, expected {shard.shard} of"
                            f" {shard.n_shards} (re-sharding is not supported)")
    for state in snapshot.accounts:
        where = f"{source}: account {state.id!r}"
        profile = profiles.get(state.profile)
        if profile is None:
            raise SnapshotError(f"{where}: unknown margin profile {state.profile!r}")
        shard.accounts.pop(state.id, None)
        shard.add_account(state.id, profile, 0.0)
        account = shard.accounts[state.id]
        for p in state.positions:
            row = _row(shard, p.symbol, where)
            account.apply_fill(row, p.quantity, p.average_price)
            # Exact, not re-derived: later realized P&L must be bit-for-bit what it was.
            account.positions[row].average_price = p.average_price
        for o in state.orders:
            account.reserve(o.order_id, _row(shard, o.symbol, where), o.quantity, o.limit_price)
        account.cash = state.cash
        account.tier = Tier(state.tier)
        account.rebind(account.model)  # every cached sum from the restored positions and orders
        if state.last_seq:
            shard.last_seq[state.id] = state.last_seq
    shard.applied_fills = {tuple(k) for k in snapshot.applied_fills}  # type: ignore[misc]
    shard.held = [m for m in (decode(f) for f in snapshot.held) if isinstance(m, (FillMsg, OrderMsg))]
    shard.applied_seq = snapshot.applied_seq
    if checker is not None and snapshot.pending:
        _restore_pending(shard, snapshot, checker, clock())


def _restore_pending(shard: PositionShard, snapshot: ShardSnapshot, checker: object, now: float) -> None:
    from actors.pretrade import PendingReservation

    ids_index = shard.model.table.index
    for p in snapshot.pending:
        account = shard.accounts.get(p.account)
        if account is None or p.order_id not in account.orders:
            continue
        previous = None
        if p.previous is not None:
            o = p.previous
            previous = OpenOrder(o.order_id, ids_index[o.symbol], o.quantity, o.limit_price)
        expiry = now + p.ttl_left_s
        checker.pending[p.order_id] = PendingReservation(p.account, expiry, account.orders[p.order_id],  # type: ignore[attr-defined]
                                                         previous)
        if expiry != float("inf"):
            heapq.heappush(checker._expiries, (expiry, p.order_id))  # type: ignore[attr-defined]


# ----- files ------------------------------------------------------------------------------
def encode_snapshot(snapshot: ShardSnapshot) -> bytes:
    body = _ENCODER.encode(snapshot)
    return MAGIC + _CRC.pack(zlib.crc32(body)) + body


def write_atomic(path: Path, data: bytes, tmp_suffix: str = "") -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one.
    ``tmp_suffix``: makes the temporary file's name unique to one writer (the last
    rename wins; each file renamed is whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + tmp_suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        written = 0
        while written < len(data):
            written += os.write(fd, view[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_snapshot(path: Path) -> ShardSnapshot | None:
    """The snapshot in ``path``; None if there is none; SnapshotError if it is damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < len(MAGIC) + _CRC.size or data[:len(MAGIC)] != MAGIC:
        raise SnapshotError(f"{path}: not a riskd shard snapshot")
    (crc,) = _CRC.unpack_from(data, len(MAGIC))
    body = memoryview(data)[len(MAGIC) + _CRC.size:]
    if zlib.crc32(body) != crc:
        raise SnapshotError(f"{path}: checksum mismatch ({len(data)} bytes): the snapshot is damaged")
    try:
        snapshot = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"{path}: undecodable snapshot: {exc}") from None
    if snapshot.version != VERSION:
        raise SnapshotError(f"{path}: snapshot version {snapshot.version}, expected {VERSION}")
    return snapshot


class Snapshotter:
    """Periodic snapshots of one shard: :meth:`maybe` (cheap; call it from the shard's
    thread at each batch end and idle tick) and :meth:`take` (now, synchronously:
    shutdown and the ``snapshot`` control call).

    ``fork`` (default: where :func:`actors.fork_call.fork_available`): a periodic
    snapshot is captured, encoded and written by a forked child from the memory as
    it was at the fork, so the shard's thread pays the fork (a few ms) instead of
    the capture and encoding (tens to hundreds of ms with 1,000 accounts); else it
    captures and encodes on the shard's thread and writes on a background one.
    ``child_timeout_s``: a child still running after it is killed and counted as a
    failure (the next snapshot is tried at the next interval).
    """

    def __init__(self, path: Path, interval_s: float, capture: Callable[[], ShardSnapshot], *,
                 clock: Callable[[], float] = time.monotonic, fork: bool | None = None,
                 child_timeout_s: float = 120.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self._capture = capture
        self._clock = clock
        self._last = clock()
        self._writer: threading.Thread | None = None
        self.fork = fork_available() if fork is None else fork
        self.child_timeout_s = child_timeout_s
        self.written = 0
        self.failures = 0
        #: applied_seq of the last snapshot written.
        self.last_seq = 0
        #: Milliseconds the shard's thread spent in the last periodic snapshot (fork, or
        #: capture and encoding), and the whole write's (to the file renamed).
        self.last_pause_ms = 0.0
        self.last_write_ms = 0.0

    def maybe(self) -> None:
        if self._clock() - self._last < self.interval_s:
            return
        if self._writer is not None and self._writer.is_alive():
            return  # the previous one is still being written: next tick
        self._last = self._clock()
        started = time.perf_counter()
        if self.fork:
            call = fork_call(self._write_in_child)
            target, args = self._reap, (call,)
        else:
            snapshot = self._capture()
            target, args = self._write, (encode_snapshot(snapshot), snapshot.applied_seq, started)
        self.last_pause_ms = (time.perf_counter() - started) * 1e3
        self._writer = threading.Thread(target=target, args=args, name=f"snapshot-{self.path.stem}", daemon=True)
        self._writer.start()

    def take(self) -> ShardSnapshot:
        """Capture and write now (the caller owns the shard: its thread is stopped or this is it)."""
        if self._writer is not None:
            self._writer.join()  # a child's rename must not land after this one
        snapshot = self._capture()
        self._write(encode_snapshot(snapshot), snapshot.applied_seq, time.perf_counter())
        return snapshot

    def _write_in_child(self) -> bytes:
        # What ps and the benches' memory tables show for this short-lived child: in a
        # Ray worker it would otherwise carry the actor's title. Ray's own setproctitle,
        # if Ray is loaded (never imported here).
        raylet = sys.modules.get("ray._raylet")
        if raylet is not None and hasattr(raylet, "setproctitle"):
            try:
                raylet.setproctitle(f"riskd snapshot writer ({self.path.name})")
            except Exception:  # the title is cosmetic
                pass
        snapshot = self._capture()
        write_atomic(self.path, encode_snapshot(snapshot), tmp_suffix=f".{os.getpid()}")
        return _SEQ.pack(snapshot.applied_seq)

    def _reap(self, call: ForkedCall) -> None:
        try:
            (seq,) = _SEQ.unpack(call.result(self.child_timeout_s))
        except (ForkCallError, struct.error) as exc:
            self.failures += 1
            log.error("snapshot %s not written by child %d: %s", self.path, call.pid, exc)
            return
        self.last_write_ms = (time.monotonic() - call.started) * 1e3
        self.written += 1
        self.last_seq = seq

    def _write(self, data: bytes, seq: int, started: float) -> None:
        try:
            write_atomic(self.path, data)
            self.last_write_ms = (time.perf_counter() - started) * 1e3
            self.written += 1
            self.last_seq = seq
        except OSError:
            self.failures += 1
            log.exception("snapshot %s not written", self.path)
