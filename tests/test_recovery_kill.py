"""Kill -9 while the drop copy streams: the whole daemon, one position actor, the ingest actor.

Each test is one stream from the trial OMS (orders, fills, busts, corrections) with
several SIGKILLs at random moments (daemon.bench_recovery_kill.run_trial). After
the stream, every account's positions and cash must equal the ground truth exactly:
the OMS's own record of fills, and offline accounts applying those fills in order.
No fill lost (its ExecID key missing), none doubled (a position off the sum of the
fills applied). Sized for the CI (a few tens of thousands of reports in all); the
full-size trials (about 100,000 fills per stream, 10 kills each) are in
`riskd bench recovery`.
"""

from __future__ import annotations

import msgspec
import pytest

pytest.importorskip("ray")

from daemon.bench_recovery_kill import run_trial  # noqa: E402
from daemon.book import load_book  # noqa: E402
from daemon.config import AccountSpec, resolve_data_path  # noqa: E402

MARKS = {"ESZ6": (6900.0, 0.25), "NQZ6": (24570.0, 0.25), "SPX 261218C7000": (150.0, 0.05),
         "NQZ6 C25000": (900.0, 0.05)}


def _trial(kind: str, reports: int, kills: int, seed: int, tmp_path):
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    accounts = tuple(AccountSpec(id=f"T-{i:02d}", profile="span", cash=10_000_000.0) for i in range(8))
    config = msgspec.structs.replace(config, accounts=accounts)
    result = run_trial(kind, config, book.market, reports=reports, kills=kills, seed=seed, marks=MARKS,
                       folder=tmp_path, rate_per_s=600.0, pause_s=(0.5, 2.5))
    assert result.kills == kills and result.busts > 0 and result.corrections > 0
    assert (result.lost_fills, result.doubled_fills, result.unexpected_fills) == (0, 0, 0), result
    assert (result.position_mismatches, result.cash_mismatches) == (0, 0), result
    return result


def test_the_whole_daemon_killed_three_times_ends_with_the_oms_positions_and_cash(tmp_path) -> None:
    result = _trial("daemon", 9000, 3, 11, tmp_path)
    # Recovery ran through its parts: snapshots restored, the journal caught the shards up.
    assert any(seq is not None for r in result.recovery for seq in r["restored_seq"]), result.recovery
    assert any(sum(r["caught_up"]) > 0 for r in result.recovery), result.recovery
    # The shards read what came after their snapshots from the journal themselves (actors/recovery_replay.py).
    assert any(sum(r["bulk_applied"]) > 0 for r in result.recovery), result.recovery


def test_a_position_actor_killed_three_times_is_restored_and_replayed(tmp_path) -> None:
    result = _trial("position", 6000, 3, 12, tmp_path)
    assert any(sum(r["replayed"]) > 0 for r in result.recovery), result.recovery
    # The restarted shard read its events from the journal while the ingest kept appending to it.
    assert any(sum(r["bulk_applied"]) > 0 for r in result.recovery), result.recovery


def test_the_ingest_actor_killed_three_times_resumes_from_its_journal(tmp_path) -> None:
    result = _trial("ingest", 6000, 3, 13, tmp_path)
    # Each new ingest sent the shards what they had not applied (at least the frames of
    # their last applied seq again, skipped or re-applied idempotently).
    assert all(sum(r["caught_up"]) > 0 for r in result.recovery), result.recovery
