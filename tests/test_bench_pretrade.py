"""`riskd bench pretrade` at tiny sizes: every key present, decisions add up, the bad requests
mixed in at a known rate are rejected with exactly their reason.

Checks go through the real client library to the running daemon's shards (Ray
actors) after a load through a real FIX session. No timing target is asserted:
this 2-core machine is shared and noisy.
"""

from __future__ import annotations

import json

import msgspec
import pytest

pytest.importorskip("ray")

from daemon.bench_pretrade import QUICK, pretrade_bench  # noqa: E402
from daemon.cli import build_parser  # noqa: E402

KEYS = ("p50_us", "p99_us", "p999_us", "checks_per_s", "floor_p50_us", "ratio_p50_to_floor", "server_p50_us",
        "decisions", "deliberately_bad", "throughput", "load", "latency_by", "settings", "meets_targets")


def test_pretrade_bench_tiny_run_counts_every_decision() -> None:
    options = msgspec.structs.replace(QUICK, accounts=20, positions=5, checks=600, warmup=100, seconds=1.0,
                                      bad_every=10, floor_block=200)
    result = pretrade_bench(options)
    json.dumps(result)  # JSON-ready as it is
    for key in KEYS:
        assert key in result, key
    assert result["load"]["positions_loaded"] == 100
    assert result["grid"] == "pm" and result["grid_scenarios"] == 27
    assert result["risk_array_rows_per_underlying"] == [35, 35]  # 27 + the 8 extended moves

    # Latency phase: one decision per check, every bad request rejected for exactly its reason.
    decisions = result["decisions"]
    assert sum(decisions.values()) == result["checks"] == 600
    assert result["deliberately_bad"] == {"unknown_instrument": 30, "max_order_qty": 30}
    assert decisions.get("unknown_instrument") == 30 and decisions.get("max_order_qty") == 30
    assert decisions.get("accepted", 0) > 0
    assert result["client_timeouts"] == 0
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["p999_us"]
    assert 0 < result["floor_p50_us"] <= result["floor_p99_us"]
    assert result["floor_round_trips"] == 600
    assert result["ratio_p50_to_floor"] > 0 and result["server_p50_us"] > 0
    assert result["server_count"] >= 700  # warm-up and latency checks, all seen by the shards' stage
    assert result["latency_by"]["accepted"]["count"] + result["latency_by"]["rejected"]["count"] == 600

    # Throughput phase (shard 0): every request answered, the bad ones exactly as sent.
    throughput = result["throughput"]
    assert result["checks_per_s"] > 0 and throughput["checks"] == throughput["sent"] > 0
    assert sum(throughput["decisions"].values()) == throughput["checks"]
    for reason, sent in throughput["deliberately_bad"].items():
        assert throughput["decisions"].get(reason) == sent, reason

    # The shards counted every decision the client got (warm-up, latency, throughput).
    assert sum(result["shard_counters"].values()) == options.warmup + 600 + throughput["checks"]


def test_cli_parses_the_pretrade_bench() -> None:
    args = build_parser().parse_args(["bench", "pretrade", "--json", "--quick", "--checks", "50", "--seconds",
                                      "0.5", "--accounts", "10", "--positions", "3"])
    from daemon.bench_pretrade import options_from_args

    options = options_from_args(args)
    assert (options.checks, options.seconds, options.accounts, options.positions) == (50, 0.5, 10, 3)
    assert options.warmup == QUICK.warmup
