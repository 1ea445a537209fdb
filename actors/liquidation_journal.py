"""The liquidation engine's journal: what it decided and sent, appended before it acts.

Length-prefixed msgpack records (4-byte big-endian length, then a msgspec Struct
tagged by ``kind``; msgpack keeps inf and NaN, which JSON cannot). An order record is
written (and flushed to the OS, optionally fsync'd) BEFORE its NewOrderSingle
is handed to the session, so after a restart every ClOrdID that may have gone
out is known and never sent again; an order journaled but never written to
the wire is simply never sent (at most once), and the next round re-plans from
the drop copy's positions. A torn last line (a crash mid-write) is ignored.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Union

import msgspec

from risk.margin_call import MarginCall, TierTransition

log = logging.getLogger("riskd.liquidation")


class OrderRecord(msgspec.Struct, tag="order", kw_only=True):
    """A liquidation order as sent: quantities unsigned contracts, price per unit."""

    cl_ord_id: str
    account: str
    symbol: str
    side: str
    quantity: float
    price: float
    round: int
    at_s: float
    dry_run: bool = False


class RoundRecord(msgspec.Struct, tag="round", kw_only=True):
    """A round's plan: ``before`` = the account's positions in the cut instruments
    (signed contracts) when planned, so its fills can be recognised in the drop copy."""

    account: str
    round: int
    tier: str
    ratio_before: float
    ratio_expected: float
    expected_cost: float
    before: dict[str, float]
    at_s: float


class ReportRecord(msgspec.Struct, tag="report", kw_only=True):
    """An execution report of a liquidation order: status and cumulative fill (contracts)."""

    cl_ord_id: str
    status: str
    cum_qty: float
    exec_id: str


class TransitionRecord(msgspec.Struct, tag="transition", kw_only=True):
    event: TierTransition


class MarginCallRecord(msgspec.Struct, tag="margin_call", kw_only=True):
    event: MarginCall


Record = Union[OrderRecord, RoundRecord, ReportRecord, TransitionRecord, MarginCallRecord]


class LiquidationJournal:
    """Append-only journal file and what reading it back tells (see the module docstring)."""

    def __init__(self, folder: str | Path, *, fsync: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "liquidation.journal"
        self.fsync = fsync
        self._encoder = msgspec.msgpack.Encoder()
        self.records: list[Record] = self._read()
        self._file = open(self.path, "ab")

    def _read(self) -> list[Record]:
        if not self.path.exists():
            return []
        decoder = msgspec.msgpack.Decoder(Record)
        data = self.path.read_bytes()
        out: list[Record] = []
        offset = 0
        while offset < len(data):
            if offset + 4 > len(data) or offset + 4 + int.from_bytes(data[offset:offset + 4], "big") > len(data):
                # a write torn by a crash: cut it off so the next record starts clean
                log.warning("%s: torn last record at byte %d ignored", self.path, offset)
                with open(self.path, "r+b") as f:
                    f.truncate(offset)
                break
            size = int.from_bytes(data[offset:offset + 4], "big")
            try:
                out.append(decoder.decode(data[offset + 4:offset + 4 + size]))
            except msgspec.DecodeError as exc:
                raise ValueError(f"{self.path}: record {len(out) + 1} at byte {offset}: {exc}") from None
            offset += 4 + size
        return out

    def append(self, record: Record, *, sync: bool = False) -> None:
        """Write one record; ``sync``: flush to the OS (and fsync if configured) now."""
        body = self._encoder.encode(record)
        self._file.write(len(body).to_bytes(4, "big") + body)
        if sync:
            self.sync()

    def flush(self) -> None:
        self._file.flush()

    def sync(self) -> None:
        """Flush to the OS (survives a daemon crash), and fsync when configured (a host crash)."""
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()
