"""`riskd bench pipeline` at tiny sizes: every key present, nothing lost, positions equal the OMS's record.

Fills go through a real FIX session (the bench OMS process) into the daemon's Ray
actors. No timing target is asserted: this 2-core machine is shared and noisy.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

pytest.importorskip("ray")

from daemon import bench_pipeline  # noqa: E402
from daemon.bench_oms import FastSendSession, OmsClient, OmsSpec  # noqa: E402
from daemon.bench_pipeline import QUICK, _compare_positions, pipeline_bench  # noqa: E402
from daemon.bench_universe import build_universe  # noqa: E402
from fix.application import NullApplication  # noqa: E402
from fix.parser import parse  # noqa: E402
from fix.store import MemoryStore  # noqa: E402
from tests.fix_sim import settings  # noqa: E402

KEYS = ("e2e_p50_us", "e2e_p99_us", "e2e_p999_us", "stages", "sustained_fills_per_s", "lost_fills", "rss_mb",
        "pss_mb", "zmq_floor_p50_us", "ratio_e2e_p50_to_floor", "ladder", "position_mismatches", "load")


def test_pipeline_bench_tiny_run_loses_nothing(monkeypatch) -> None:
    options = msgspec.structs.replace(QUICK, accounts=20, positions=5, e2e_rate=200.0, e2e_seconds=2.0,
                                      hold_seconds=2.0, rates=(500.0,))
    checked: list[int] = []
    compare = bench_pipeline._compare_positions

    def spy(universe, truth, held):  # the honest part: every account's positions vs the OMS's record
        assert set(held) == set(universe.accounts)
        for a, account in enumerate(universe.accounts):
            expected = {s: float(q) for s, q in zip(universe.holdings[a], truth[a].tolist()) if q != 0}
            assert {s: q for s, q in held[account].items() if q != 0.0} == expected, account
        checked.append(len(held))
        return compare(universe, truth, held)

    monkeypatch.setattr(bench_pipeline, "_compare_positions", spy)
    result = pipeline_bench(options)
    assert checked == [20]
    for key in KEYS:
        assert key in result, key
    assert result["lost_fills"] == 0 and result["position_mismatches"] == 0 and result["positions_equal_oms"]
    assert result["load"]["positions_loaded"] == 100
    assert result["e2e_fills"] == 400 and result["e2e_measured"] == 400
    assert result["fills_sent"] == 100 + 400 + 1000
    assert 0 < result["e2e_p50_us"] <= result["e2e_p99_us"] <= result["e2e_p999_us"]
    assert 0 < result["zmq_floor_p50_us"] <= result["zmq_floor_p99_us"]
    for stage in ("fix_parse", "route", "position_update", "risk_publish", "end_to_end", "e2e"):
        stats = result["stages"][stage]
        assert stats["count"] > 0 and 0 < stats["p50_us"] <= stats["p99_us"] <= stats["p999_us"], stage
    assert result["stages"]["position_update"]["budget_us"] == 25.0
    assert [step["rate"] for step in result["ladder"]] == [500.0]
    assert result["ladder"][0]["sent"] == 1000
    assert result["rss_mb"] > 0 and result["pss_mb"] > 0
    assert result["health"]["shard_handler_errors"] == 0 and result["health"]["shard_held"] == 0


def test_fast_send_frames_valid_fix_numbered_from_the_session_store() -> None:
    universe = build_universe(3, 2, seed=1)
    assert len({i.id for i in universe.config.instruments}) == len(universe.config.instruments)
    assert all(len(set(h)) == 2 for h in universe.holdings)
    # Framing, numbering and storing only: not connected, so nothing is written.
    session = FastSendSession(settings("OMS", "RISKD", "acceptor", SocketAcceptPort=0), MemoryStore(),
                              NullApplication())
    first = session.send_bodies(b"8", [b"37=O1\x0117=E1\x01", b"37=O2\x0117=E2\x01"])
    assert first == 1 and session.store.next_sender_seq == 3
    stored = session.store.sent_range(1, 2)
    assert [seq for seq, _ in stored] == [1, 2]
    for seq, raw in stored:
        message = parse(raw)
        assert message.msg_type == b"8" and message.get(34) == str(seq).encode()
        assert message.get(49) == b"OMS" and message.get(56) == b"RISKD" and not message.errors
        assert int(message.get(10)) == sum(raw[:raw.rindex(b"10=")]) % 256


def test_compare_positions_counts_every_difference() -> None:
    universe = build_universe(2, 2, seed=3)
    truth = np.array([[1, -2], [0, 3]], np.int64)
    held = {universe.accounts[0]: {universe.holdings[0][0]: 1.0, universe.holdings[0][1]: -2.0},
            universe.accounts[1]: {universe.holdings[1][1]: 3.0}}
    assert _compare_positions(universe, truth, held) == 0
    held[universe.accounts[1]] = {universe.holdings[1][1]: 2.0, universe.holdings[1][0]: 1.0}
    assert _compare_positions(universe, truth, held) == 2


def test_oms_client_reports_what_it_sent_without_a_counterparty() -> None:
    universe = build_universe(4, 3, seed=5)
    oms = OmsClient(OmsSpec(accounts=universe.accounts, holdings=universe.holdings, marks=universe.marks))
    try:
        assert oms.port > 0 and not oms.status()["logged_on"]
        phase = oms.run_phase("load", 1000.0, 12, 1, 0.5)  # nobody logged on: nothing can be written
        assert phase.sent == 0 and phase.stalls > 0
        assert not oms.truth().any()
    finally:
        oms.stop()


def test_a_fill_coalesced_into_a_later_account_risk_counts_as_published_by_it() -> None:
    """A shard publishes one AccountRisk per account per burst: fill 1 of account A has
    none of its own, it is published by the first AccountRisk whose last_seq reaches it."""
    import numpy as np

    from actors.messages import AccountRisk, Stamps, encode
    from daemon.bench_measure import RiskCollector

    collector = RiskCollector(("A", "B"), 100)

    def risk(account: str, last_seq: int) -> bytes:
        return encode(AccountRisk(account, 1.0, 0.0, 0.0, 0.0, 0.0, "normal", "", "", "", last_seq, 0, Stamps()))
    times = []
    for account, seq in (("A", 2), ("B", 3), ("A", 2), ("A", 5)):  # the repeat of A/2 raises nothing
        collector(risk(account, seq))
        times.append(collector._rise_ns[-1])
    got = collector.published_ns(np.array([0, 0, 1, 0, 0, 1]), np.array([1, 2, 3, 4, 5, 6]))
    assert got.tolist() == [times[0], times[0], times[1], times[3], times[3], 0]
