"""The recovery bench's state folder: N journaled fills, the ExecID store, shard snapshots ``age`` seconds old.

Synthesized with the daemon's own formats and code, as a daemon that had taken
those fills would have left it: the journal (fix.journal.Journal: each record a
FIX 4.4 ExecutionReport and the FillMsg/OrderMsg frames the router derived from
it), the ingest's ExecID store (fix.dropcopy.ExecIdStore, one record per fill),
and one snapshot per shard (actors.snapshot, the shard's own capture) of the state
after the fills up to ``N - rate x age``: the journal's last ``rate x age`` fills
are what a restart must replay. 1,000 accounts of the pipeline bench's universe,
10 instruments each, scenario-margined.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from actors.ingest import _FRAMES_ENCODER
from actors.messages import FillMsg, OrderMsg, Stamps, encode
from actors.position_shard import PositionShard, shard_of
from actors.snapshot import capture_shard, encode_snapshot, snapshot_path, write_atomic
from daemon.bench_daemon import bench_config
from daemon.bench_universe import build_universe
from fix.dropcopy import ExecIdStore, _TradeRecord, scoped_exec_id
from fix.journal import Journal, JournalSettings
from risk.instruments import InstrumentTable
from risk.model import RiskModel

DAY = "20261120"
_RAW = (b"8=FIX.4.4\x019=%d\x01%b10=000\x01")
_BODY = (b"35=8\x0134=%d\x0149=OMS\x0152=20261120-21:00:00.000\x0156=RISKD\x0137=O%d\x0111=C%d\x0117=E%d\x01"
         b"150=F\x0139=2\x011=%b\x0155=%b\x0154=%b\x0138=%d\x0144=%b\x0132=%d\x0131=%b\x01151=0\x0114=%d\x01"
         b"6=%b\x0160=20261120-21:00:00.000\x01")


def synthesize_state(folder: Path, fills: int, rate_per_s: float, age_s: float, *, accounts: int = 1000,
                     positions: int = 10, shards: int = 2, seed: int = 7) -> dict[str, Any]:
    """Write the state folder under ``folder``; returns the daemon config and market to restart on,
    the OMS's next MsgSeqNum, and sizes."""
    universe = build_universe(accounts, positions, var_every=0)
    config = bench_config(universe, 1, str(folder), shards=shards)
    config = msgspec.structs.replace(config, durability=msgspec.structs.replace(
        config.durability, fsync="none", snapshot_interval_s=3600.0))
    state = folder / "run" / "state"
    journal = Journal(state / "journal" / "RISKD-OMS", JournalSettings(fsync="none"))
    exec_ids = ExecIdStore(state / "ingest" / "execids")
    rng = np.random.default_rng(seed)
    acct = rng.integers(0, accounts, fills)
    slot = rng.integers(0, positions, fills)
    qty = rng.integers(1, 6, fills) * rng.choice((-1, 1), fills)
    names = [a.encode() for a in universe.accounts]
    symbols = [[s.encode() for s in held] for held in universe.holdings]
    prices = [[b"%.2f" % universe.marks[s] for s in held] for held in universe.holdings]
    table = InstrumentTable(config.underlyings, config.instruments)
    model = RiskModel(table, universe.market, config.margin)
    shard_objects = [PositionShard(k, shards, model) for k in range(shards)]
    for spec in config.accounts:
        shard_objects[shard_of(spec.id, shards)].add_account(spec.id, config.margin.profiles[spec.profile], spec.cash)
    account_shard = [shard_of(a, shards) for a in universe.accounts]
    snapshot_seq = fills - int(rate_per_s * age_s)
    stamps = Stamps()
    for i in range(fills):
        seq = i + 1
        a, k, q = int(acct[i]), int(slot[i]), int(qty[i])
        account, symbol, price_text = universe.accounts[a], universe.holdings[a][k], prices[a][k]
        size = abs(q)
        body = _BODY % (seq, seq, seq, seq, names[a], symbols[a][k], b"1" if q > 0 else b"2", size, price_text, size,
                        price_text, size, price_text)
        price = float(price_text)
        fill = FillMsg(f"E{seq}", "trade", account, symbol, float(q), price, f"O{seq}", f"C{seq}", "", seq, stamps, DAY)
        order = OrderMsg(f"E{seq}", "filled", account, symbol, 1 if q > 0 else -1, float(size), 0.0, float(size),
                         price, f"O{seq}", f"C{seq}", "", seq, stamps)
        journal.append(seq, time.monotonic_ns(), _RAW % (len(body), body),
                       _FRAMES_ENCODER.encode([encode(fill), encode(order)]))
        exec_ids.record(scoped_exec_id(DAY, f"E{seq}"), "",
                        _TradeRecord(f"E{seq}", account, symbol, float(q), price, f"O{seq}", f"C{seq}"))
        if seq <= snapshot_seq:
            shard = shard_objects[account_shard[a]]
            shard.apply_fill(fill)
            shard.applied_seq = seq
        if seq % 4096 == 0:
            journal.commit()
            exec_ids.flush()
    journal.close()
    exec_ids.close()
    written = time.time_ns() - int(age_s * 1e9)
    for shard in shard_objects:
        snapshot = msgspec.structs.replace(capture_shard(shard, config.margin.profiles), written_unix_ns=written)
        write_atomic(snapshot_path(state, shard.shard), encode_snapshot(snapshot))
    journal_bytes = sum(p.stat().st_size for p in (state / "journal" / "RISKD-OMS").iterdir())
    return {"config": config, "market": universe.market, "oms_seq": fills + 1, "fills": fills,
            "snapshot_seq": snapshot_seq, "after_snapshot": fills - snapshot_seq, "journal_bytes": journal_bytes,
            "snapshot_bytes": [snapshot_path(state, k).stat().st_size for k in range(shards)]}
