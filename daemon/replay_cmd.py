"""``riskd replay JOURNAL``: rebuild positions and cash offline from a drop-copy journal.

For audit and tests: every journaled FIX message is run again through a fresh
fix.dropcopy.DropCopyApplication (ExecIDs, busts and corrections resolved from the
journal alone, nothing taken from the frames the daemon derived), its fills and
order events applied to one position shard holding every configured account;
collateral changes (journal notes) are applied in their place. The journal is
read only and verified record by record: a torn tail (a live or crashed writer)
ends the replay with a warning, corruption stops it with the file, offset and
sequence number. Prints cash (currency) and positions (contracts, average price
per unit) per account, or one JSON object with ``--json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from actors.messages import CollateralMsg, Stamps, decode, fill_message, order_message
from actors.ingest import journal_frames
from actors.position_shard import PositionShard
from fix.dropcopy import DropCopyApplication, DropCopyEvent, Fill
from fix.application import BusinessReject, UnsupportedMessageType
from fix.journal import MSG, JournalError, read_segment, segment_paths
from fix.parser import parse
from risk.instruments import InstrumentTable, MarketSnapshot
from risk.model import RiskModel


class _Stamp:
    def __init__(self, read_ns: int) -> None:
        self.read_ns = read_ns


def replay_journal(folder: Path, config: Any, market: MarketSnapshot, *, progress: Any = None) -> dict[str, Any]:
    """Positions, cash and counters rebuilt from the journal in ``folder`` (see the module docstring).

    ``progress``: called with (bytes read, total bytes) after each segment's records.
    """
    paths = segment_paths(folder)
    if not paths:
        raise JournalError(f"{folder}: no journal segments (*.jnl) here")
    table = InstrumentTable(config.underlyings, config.instruments)
    from daemon.book import load_history_returns

    shard = PositionShard(0, 1, RiskModel(table, market, config.margin, load_history_returns(config, table)))
    for account in config.accounts:
        shard.add_account(account.id, config.margin.profiles[account.profile], account.cash)

    def on_event(event: DropCopyEvent) -> None:
        if isinstance(event, Fill):
            shard.apply_fill(fill_message(event, Stamps()))
        else:
            shard.apply_order(order_message(event, Stamps()))
    application = DropCopyApplication(on_event)
    total = sum(p.stat().st_size for p in paths)
    done = messages = notes = rejected = 0
    last_seq = 0
    for i, path in enumerate(paths):
        for record in read_segment(path, last=i == len(paths) - 1, previous_seq=last_seq):
            if record.kind == MSG:
                messages += 1
                last_seq = record.seq
                try:
                    application.from_app(parse(record.raw), _Stamp(record.recv_ns))  # type: ignore[arg-type]
                except (BusinessReject, UnsupportedMessageType):
                    rejected += 1
            else:
                notes += 1
                for _, frame in journal_frames([record]):
                    message = decode(frame)
                    if isinstance(message, CollateralMsg):
                        shard.on_collateral(message)
            if progress is not None and messages % 4096 == 0:
                progress(done + record.end, total)
        done += path.stat().st_size
        if progress is not None:
            progress(done, total)
    accounts = {account_id: {"cash": account.cash,
                             "positions": {s: [p.quantity, p.average_price] for s, p in account.iter_positions()}}
                for account_id, account in sorted(shard.accounts.items())}
    return {"journal": str(folder), "segments": len(paths), "messages": messages, "notes": notes,
            "last_seq": last_seq, "fills": len(shard.applied_fills), "duplicates": application.duplicates,
            "rejected": rejected, "held": len(shard.held), "accounts": accounts}


def run_replay(journal: str, config_path: str, market_path: str, as_json: bool, out: TextIO,
               err: TextIO = sys.stderr) -> int:
    """The CLI: 0 on success (a JournalError or ConfigError is reported by daemon.cli, exit 2)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from daemon.book import load_book
    from daemon.config import load_config

    config = load_config(config_path)
    book, _ = load_book(market_path)
    console = Console(file=err)
    with Progress("replay", BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=console,
                  disable=not err.isatty()) as bar:
        task = bar.add_task("journal", total=None)
        result = replay_journal(Path(journal), config, book.market,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        out.write(json.dumps(result, sort_keys=True) + "\n")
        return 0
    out.write(f"{result['journal']}: {result['messages']} messages to seq {result['last_seq']}, {result['fills']}"
              f" fills, {result['duplicates']} duplicates, {result['rejected']} rejected, {result['held']} held\n")
    for account_id, state in result["accounts"].items():
        out.write(f"{account_id}  cash {state['cash']:,.2f}\n")
        for symbol, (quantity, average) in sorted(state["positions"].items()):
            out.write(f"    {symbol:<20} {quantity:>12g} @ {average:,.6g}\n")
    return 0
