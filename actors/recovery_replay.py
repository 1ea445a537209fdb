"""Bulk replay of the drop-copy journal into one position shard, at start-up, after its snapshot.

Why: a restart with a snapshot 10 s old has ~100,000 journaled messages to catch
up on. Through the live path each one costs the ingest a read, a decode and a
send per frame, and the shard a receive, a decode and a margin computation with
an AccountRisk per burst. Here the shard, before its sockets exist, reads the
journal itself from its ``applied_seq`` on and applies its own accounts' frames
in drop-copy order, publishing nothing: the actor publishes every account's
AccountRisk once afterwards (as after a snapshot restore or a Ray-restart
replay).

Margin: a fill updates the account's exposure (positions' scenario P&L summed
incrementally, as live) but not its per-underlying margin terms, which the live
path refreshes after every fill (``Account._refresh_terms``: 20-30 % of the
replay's apply CPU measured on the recovery bench's journal); every account the
replay touched is rebound once at the end (``Account.rebind``: every sum
recomputed from its positions and orders, as after a snapshot restore or a new
risk model).

The state transitions are the live path's (actors.position_service.PositionService
._apply with ``live`` False), frame by frame: fill and order events below the
shard's ``applied_seq`` are skipped as already held, same-seq ones re-applied
idempotently (ExecID dedup, reservations set), ``applied_seq`` follows the frames,
order events hand a pre-trade reservation over to the drop copy
(``PreTradeChecker.drop_copy_seen``), collateral notes set cash, events for an
unknown account or instrument are held and reported (once: an event of the
snapshot's own seq that the snapshot holds already is not held twice, where the
live catch-up would). The ingest's catch-up then starts from the new
``applied_seq``; what it sends again is skipped or re-applied idempotently, so the
replay only moves work, never changes the result.

Reading while a writer appends (a Ray restart of this actor alone): a record being
written looks like a torn tail and ends the read; the ingest's replay sends the
rest. A damaged journal stops the bulk replay with an error in the log and leaves
the shard at the last good seq: the ingest reads the same journal and refuses to
start with the precise error (fix.journal.JournalCorruptError).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator

import msgspec

from actors.messages import CollateralMsg, DataPlaneMessage, FillMsg, HeldEvent, OrderMsg, Stamps
from actors.position_shard import PositionShard, shard_of
from fix.journal import JournalError, read_journal

log = logging.getLogger("riskd.position")

_FRAMES_DECODER = msgspec.msgpack.Decoder(list[bytes])
#: actors.messages.decode's decoder (the data-plane union), called without the wrapper.
_MESSAGE_DECODER = msgspec.msgpack.Decoder(DataPlaneMessage)
#: Order statuses that do not hand an order over to the drop copy (PositionService._apply).
_NOT_A_HANDOVER = ("pending_cancel", "pending_replace")


class ReplayStats(msgspec.Struct, kw_only=True):
    """What a bulk replay did. ``from_seq``: the shard's ``applied_seq`` before it;
    ``records``/``frames``: journal records read (``seq >= from_seq``) and the frames
    they carried (every shard's); ``applied``: this shard's frames applied (fills,
    orders, collateral), ``stale``: skipped as older than ``applied_seq``, ``held``:
    events held for unknown names, ``malformed``: undecodable frames; ``last_seq``:
    the highest drop-copy seq among this shard's frames (0: none); ``read_s``,
    ``apply_s``: CPU seconds (this thread) reading/decoding and applying; ``error``:
    why it stopped early ("" if it did not)."""

    from_seq: int
    records: int = 0
    frames: int = 0
    applied: int = 0
    fills: int = 0
    orders: int = 0
    collateral: int = 0
    stale: int = 0
    held: int = 0
    malformed: int = 0
    last_seq: int = 0
    read_s: float = 0.0
    apply_s: float = 0.0
    error: str = ""


def bulk_replay(shard: PositionShard, journal_dir: str | Path, checker: object | None = None
                ) -> tuple[ReplayStats, list[HeldEvent]]:
    """Apply to ``shard`` its journaled frames from its ``applied_seq`` on (see the module
    docstring); ``checker``: its actors.pretrade.PreTradeChecker, if any. Returns the
    counters and the HeldEvents to publish (in order)."""
    stats = ReplayStats(from_seq=shard.applied_seq)
    clock = time.thread_time
    t0 = clock()
    apply_s = 0.0
    held: list[HeldEvent] = []
    touched: dict[str, object] = {}
    try:
        # Read and applied a chunk at a time: memory stays bounded, and the CPU of each
        # part is measured with two clock reads per chunk, not per frame.
        for chunk in _read_frames(shard, journal_dir, stats):
            t1 = clock()
            for message in chunk:
                if message.account not in touched:
                    _defer_margin(shard, message.account, touched)
                _apply(shard, message, checker, stats, held)
            apply_s += clock() - t1
    finally:
        t1 = clock()
        _rebind(touched)
        apply_s += clock() - t1
    stats.apply_s = round(apply_s, 3)
    stats.read_s = round(clock() - t0 - apply_s, 3)
    stats.held = len(held)
    return stats, held


def _read_frames(shard: PositionShard, journal_dir: str | Path, stats: ReplayStats, chunk: int = 8192
                 ) -> Iterator[list[FillMsg | OrderMsg | CollateralMsg]]:
    """This shard's journaled frames from its ``applied_seq`` on, in journal order, ``chunk``
    at a time (up to a damaged record, if any: ``stats.error``)."""
    out: list[FillMsg | OrderMsg | CollateralMsg] = []
    mine: dict[str, bool] = {}
    n, index = shard.n_shards, shard.shard
    # Every shard reads every record (~200,000 frames here): the loop keeps to locals
    # (the counters go to ``stats`` at each chunk) and calls the decoders directly.
    decode_frames, decode_message = _FRAMES_DECODER.decode, _MESSAGE_DECODER.decode
    records = frames = 0
    try:
        for record in read_journal(journal_dir, shard.applied_seq, raw=False):
            records += 1
            if not record.extra:
                continue
            for frame in decode_frames(record.extra):
                frames += 1
                try:
                    message = decode_message(frame)
                except ValueError:
                    stats.malformed += 1
                    log.warning("shard %d: malformed journaled frame at seq %d dropped: %r", index, record.seq,
                                frame[:200])
                    continue
                kind = type(message)
                if kind is not FillMsg and kind is not OrderMsg and kind is not CollateralMsg:
                    log.warning("shard %d: unexpected journaled %s at seq %d ignored", index, kind.__name__,
                                record.seq)
                    continue
                is_mine = mine.get(message.account)  # type: ignore[union-attr]
                if is_mine is None:
                    is_mine = mine[message.account] = shard_of(message.account, n) == index  # type: ignore[union-attr]
                if is_mine:
                    out.append(message)  # type: ignore[arg-type]
            if len(out) >= chunk:
                stats.records, stats.frames = records, frames
                yield out
                out = []
    except JournalError as exc:
        stats.error = str(exc)
        log.error("shard %d: bulk replay of %s stops before the damaged record: %s", index, journal_dir, exc)
    stats.records, stats.frames = records, frames
    if out:
        yield out


def _skip_terms(_underlying: int, held: bool = True) -> None:
    """Stands in for Account._refresh_terms during the replay (see the module docstring)."""


def _defer_margin(shard: PositionShard, account_id: str, touched: dict[str, object]) -> None:
    account = shard.accounts.get(account_id)
    touched[account_id] = account
    if account is not None and callable(getattr(type(account), "_refresh_terms", None)):
        account._refresh_terms = _skip_terms  # type: ignore[method-assign]


def _rebind(touched: dict[str, object]) -> None:
    """Put every touched account's own margin-term refresh back and recompute its sums."""
    for account in touched.values():
        if account is None:
            continue
        if vars(account).pop("_refresh_terms", None) is not None:
            account.rebind(account.model)  # type: ignore[attr-defined]


def _apply(shard: PositionShard, message: FillMsg | OrderMsg | CollateralMsg, checker: object | None,
           stats: ReplayStats, held: list[HeldEvent]) -> None:
    """One frame, as PositionService._apply applies a replayed (not live) frame."""
    kind = type(message)
    if kind is CollateralMsg:
        if message.seq < shard.applied_seq:
            stats.stale += 1
            return
        account = shard.accounts.get(message.account)
        if account is None:
            log.warning("collateral for unknown account %r ignored", message.account)
            return
        # PositionShard.on_collateral without its AccountRisk: published once at the end.
        account.cash = float(message.cash)
        stats.applied += 1
        stats.collateral += 1
        return
    seq = message.seq
    if seq > stats.last_seq:
        stats.last_seq = seq
    if seq < shard.applied_seq:
        stats.stale += 1
        return
    shard.applied_seq = seq
    if kind is FillMsg:
        result = shard.apply_fill(message)  # type: ignore[arg-type]
        stats.fills += 1
    else:
        result = shard.apply_order(message)
        stats.orders += 1
        if checker is not None and not isinstance(result, HeldEvent) and message.status not in _NOT_A_HANDOVER:
            checker.drop_copy_seen(message.order_id)  # type: ignore[attr-defined]
    stats.applied += 1
    if isinstance(result, HeldEvent):
        if seq == stats.from_seq and _held_already(shard, message):
            # A frame of the snapshot's own seq, held before the snapshot: the live path
            # holds it again (the catch-up re-applies same-seq frames); one is enough.
            shard.held.pop()
            return
        held.append(result)


def _held_already(shard: PositionShard, message: FillMsg | OrderMsg) -> bool:
    """``message`` (just appended to ``shard.held``) was held before, stamps aside."""
    bare = msgspec.structs.replace(message, stamps=Stamps())
    return any(type(m) is type(message) and msgspec.structs.replace(m, stamps=Stamps()) == bare
               for m in shard.held[:-1])
