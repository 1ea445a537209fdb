"""The pre-trade hook's controls (issue 5): what-if checks, kill switches over the
control API (journal + broadcast to the shards), metrics and latency per reason
code, the bounded TTL sweep, and `riskd status` showing the switches.

Runs on real shards in this process (a PositionService with its ROUTER endpoint,
the client library, the HTTP server); the daemon-wide path under Ray is in
tests/test_pretrade_control_daemon.py.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from actors.bus import Bus, ipc_endpoint
from actors.kill_switch import KillSwitches
from actors.latency import LatencyBudgets, StageRecorder
from actors.position_service import PositionService
from actors.position_shard import PositionShard
from actors.pretrade import PreTradeChecker
from actors.pretrade_config import PretradeSettings
from actors.pretrade_endpoint import SWEEP_BATCH, PretradeEndpoint
from actors.pretrade_messages import CheckRequest, KillSwitchCommand, ReasonCode
from daemon.http_api import HttpApi
from daemon.http_control import HttpError, parse_kill_switch, parse_what_if
from daemon.pretrade_control import PretradeControl
from daemon.status_cmd import render_status
from risk.model import RiskModel
from tests.test_http_api import MemoryView
from tests.test_pretrade_checks import FakeClock, im_of, make, req

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post(url: str, body: dict | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with _OPENER.open(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(url: str) -> tuple[int, dict]:
    with _OPENER.open(url, timeout=10) as reply:
        return reply.status, json.loads(reply.read())


# --------------------------------------------------------------------------- what-if on the checker

@pytest.fixture
def model(book_parts) -> RiskModel:
    return RiskModel(*book_parts)


def test_what_if_decides_like_a_check_and_reserves_nothing(model) -> None:
    shard, checker, _ = make(model)
    account = shard.accounts["A"]
    before = account.initial_margin_with_orders()
    what_if = checker.check(req("W1", qty=3.0, model=model, what_if=True))
    assert what_if.accepted and account.orders == {} and checker.pending == {}
    assert account.initial_margin_with_orders() == pytest.approx(before, rel=1e-12)
    # The same order for real: the same figures (an independent fresh account agrees), and a reservation.
    real = checker.check(req("R1", qty=3.0, model=model))
    assert real.accepted and "R1" in account.orders
    assert (what_if.im_before, what_if.im_after, what_if.marginal_im) == pytest.approx(
        (real.im_before, real.im_after, real.marginal_im), rel=1e-12)
    assert real.im_after == pytest.approx(im_of(model, {}, {"ES": 3.0}), rel=1e-9)
    assert checker.what_if_counters == {"accepted": 1} and checker.counters["accepted"] == 1


def test_what_if_of_a_replace_restores_the_order_it_replaces(model) -> None:
    shard, checker, _ = make(model)
    account = shard.accounts["A"]
    assert checker.check(req("O1", qty=2.0, model=model)).accepted
    reserved = account.initial_margin_with_orders()
    decision = checker.check(req("O1", qty=5.0, model=model, replaces="O1", what_if=True))
    assert decision.accepted
    assert account.orders["O1"].quantity == 2.0  # the working order, untouched
    assert account.initial_margin_with_orders() == pytest.approx(reserved, rel=1e-12)
    assert decision.im_after == pytest.approx(im_of(model, {}, {"ES": 5.0}), rel=1e-9)


def test_what_if_does_not_count_toward_the_rate_throttle(model) -> None:
    settings = PretradeSettings(limits=PretradeSettings().limits.__class__(max_orders_per_s=2))
    _, checker, _ = make(model, settings)
    for n in range(5):
        assert checker.check(req(f"W{n}", model=model, what_if=True)).accepted
    assert checker.check(req("R1", model=model)).accepted
    assert checker.check(req("R2", model=model)).accepted
    assert checker.check(req("R3", model=model)).reason == ReasonCode.RATE_THROTTLE


# --------------------------------------------------------------------------- bounded sweep, per-reason latency

class _Socket:
    """Records messages as pyzmq would deliver them (frames joined until no SNDMORE)."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self._parts: list[bytes] = []

    def send(self, frame: bytes, flags: int = 0) -> None:
        self._parts.append(frame)
        if not flags & zmq.SNDMORE:
            self.sent.append(self._parts)
            self._parts = []


def test_sweep_releases_a_bounded_batch_per_call_and_comes_back_for_the_rest(model) -> None:
    clock = FakeClock()
    shard, checker, _ = make(model, PretradeSettings(reservation_ttl_s=1.0), cash=1e9, clock=clock)
    n = SWEEP_BATCH * 2 + 5
    for k in range(n):
        assert checker.check(req(f"O{k}", qty=1.0, model=model)).accepted
    changed: list[str] = []
    now_ns = [0]
    endpoint = PretradeEndpoint(checker, _Socket(), StageRecorder(), changed.append, timeout_us=1e6,
                                clock_ns=lambda: now_ns[0], sweep_interval_s=10.0)
    clock.t += 2.0  # every TTL has run out
    now_ns[0] = 1
    sizes = []
    for _ in range(4):
        before = len(checker.pending)
        endpoint.sweep()
        sizes.append(before - len(checker.pending))
    assert sizes == [SWEEP_BATCH, SWEEP_BATCH, 5, 0]  # the last call waits for the sweep interval
    assert shard.accounts["A"].orders == {} and len(changed) == n


def test_latency_and_decisions_per_reason_code_reach_metrics(model, tmp_path) -> None:
    switches = KillSwitches()
    shard, checker, _ = make(model, switches=switches)
    recorder = StageRecorder(LatencyBudgets())
    socket = _Socket()
    endpoint = PretradeEndpoint(checker, socket, recorder, lambda account: None, timeout_us=1e6)
    from actors.pretrade_messages import encode

    for k in range(3):
        endpoint.on_request([b"id", b"", encode(req(f"A{k}", model=model))])
    endpoint.on_request([b"id", b"", encode(req("Q", qty=10_000.0, model=model))])  # beyond the margin limit
    switches.apply(KillSwitchCommand("account", "A", True, "test", "me"))
    endpoint.on_request([b"id", b"", encode(req("K", model=model))])
    view = MemoryView()
    view.recorder = recorder
    with HttpApi(view) as api:
        text = _OPENER.open(api.url + "/metrics", timeout=10).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    decisions = {s.labels["reason"]: s.value for s in families["riskd_pretrade_decisions"].samples
                 if s.name.endswith("_total")}
    expected = {k: v for k, v in checker.counters.items() if v}
    assert decisions == expected
    assert expected == {"accepted": 3, "margin": 1, "kill_switch_account": 1}
    quantiles = {(s.labels["reason"], s.labels["quantile"]) for s in families["riskd_pretrade_latency_us"].samples}
    assert ("kill_switch_account", "0.99") in quantiles and ("accepted", "0.5") in quantiles
    # The stage table keeps only the pipeline stages: no "pretrade:*" stage label.
    assert not any(s.labels["stage"].startswith("pretrade:") for s in families["riskd_stage_latency_us"].samples)


# --------------------------------------------------------------------------- the control API

@pytest.fixture
def shards(book_parts, tmp_path):
    """Two real shards (PositionService + ROUTER) whose kill switches read the journal."""
    model = RiskModel(*book_parts)
    journal = tmp_path / "killswitches.jsonl"
    bus = Bus(zmq.Context())
    services, endpoints = [], []
    from actors.position_shard import shard_of

    # One account on each shard, as the client routes them (stable hash of the id).
    accounts = [next(a for a in ("A", "B", "C", "D", "E", "F") if shard_of(a, 2) == i) for i in range(2)]
    for index, account in enumerate(accounts):
        shard = PositionShard(index, 2, model)
        shard.add_account(account, model.params.profiles["span"], 1e6)
        checker = PreTradeChecker(shard, PretradeSettings(), KillSwitches(journal, read_only=True))
        names = {k: ipc_endpoint(f"{k}-{index}", tmp_path) for k in ("events", "risk", "pretrade")}
        services.append(PositionService(shard, bus, names["events"], names["risk"],
                                        pretrade=(names["pretrade"], checker, 1e6)).start())
        endpoints.append(names["pretrade"])
    yield services, endpoints, journal, model, accounts
    for service in services:
        service.stop()
    bus.close()


def _broadcast_to(services):
    def broadcast(command):
        for service in services:
            switches = service.pretrade.checker.kill_switches
            service.read(lambda _shard: switches.apply(command), timeout_s=5.0)
        return len(services), []
    return broadcast


def test_kill_switch_over_http_is_journaled_applied_on_every_shard_and_shown(shards, book_parts) -> None:
    services, endpoints, journal, model, accounts = shards
    control = PretradeControl(journal, _broadcast_to(services), endpoints, accounts=set(accounts),
                              underlyings={"SPX", "NDX"})
    view = MemoryView()
    price = float(model.valuation.mark[model.table.index["ES"]])
    account = accounts[1]
    try:
        with HttpApi(view, control=control) as api:
            order = {"account": account, "instrument": "ES", "side": "buy", "quantity": 1, "limit_price": price}
            status, decision = _post(api.url + "/what-if", order)
            assert status == 200 and decision["accepted"] and decision["reason"] == "accepted"
            assert decision["im_after"] == pytest.approx(im_of(model, {}, {"ES": 1.0}), rel=1e-9)
            status, answer = _post(api.url + "/killswitch", {"scope": "underlying", "key": "SPX", "engaged": True,
                                                              "reason": "fat finger", "by": "risk desk"})
            assert status == 200 and answer["changed"] and answer["shards"] == {"applied": 2, "failed": []}
            assert answer["kill_switches"]["underlyings"]["SPX"]["by"] == "risk desk"
            # Journaled before it took effect: a fresh reader of the file sees it.
            assert KillSwitches(journal, read_only=True).engaged_underlying("SPX").reason == "fat finger"
            for service in services:
                assert service.pretrade.checker.kill_switches.engaged_underlying("SPX") is not None
            status, decision = _post(api.url + "/what-if", order)
            assert not decision["accepted"] and decision["reason"] == "kill_switch_underlying"
            assert "fat finger" in decision["message"] and "risk desk" in decision["message"]
            status, document = _get(api.url + "/status")
            assert document["kill_switches"]["underlyings"]["SPX"]["reason"] == "fat finger"
            out = io.StringIO()
            render_status(document, out)
            assert "underlying SPX by risk desk" in out.getvalue()
            status, answer = _post(api.url + "/killswitch", {"scope": "underlying", "key": "SPX", "engaged": False,
                                                              "reason": "fixed", "by": "risk desk"})
            assert status == 200 and answer["changed"] and answer["kill_switches"]["underlyings"] == {}
            assert _post(api.url + "/what-if", order)[1]["accepted"]
            assert _get(api.url + "/killswitch") == (200, control.kill_switches())
            # Unknown ids and bad fields are refused before anything is journaled.
            lines = journal.read_text().count("\n")
            assert _post(api.url + "/killswitch", {"scope": "account", "key": "NOPE", "engaged": True,
                                                   "reason": "x", "by": "y"})[0] == 404
            status, error = _post(api.url + "/killswitch", {"scope": "desk", "engaged": True, "reason": "x",
                                                            "by": "y"})
            assert status == 400 and "'scope'" in error["error"]
            assert journal.read_text().count("\n") == lines
    finally:
        control.close()


def test_control_routes_answer_404_without_the_pretrade_hook() -> None:
    with HttpApi(MemoryView()) as api:
        assert _post(api.url + "/what-if", {"account": "A"})[0] == 404
        status, document = _get(api.url + "/status")
        assert document["kill_switches"] is None


@pytest.mark.parametrize("body, words", [
    ({"engaged": True, "reason": "r", "by": "b"}, ["'scope'", "required"]),
    ({"scope": "global", "engaged": True, "reason": "r"}, ["'by'", "required"]),
    ({"scope": "account", "engaged": True, "reason": "r", "by": "b"}, ["'key'", "required"]),
    ({"scope": "global", "key": "X", "engaged": True, "reason": "r", "by": "b"}, ["'key'", "global"]),
    ({"scope": "global", "engaged": "yes", "reason": "r", "by": "b"}, ["'engaged'", "true or false"]),
    ({"scope": "global", "engaged": True, "reason": "", "by": "b"}, ["'reason'", "non-empty"]),
    ({"scope": "global", "engaged": True, "reason": "r", "by": "b", "when": 1}, ["'when'", "unknown"]),
])
def test_kill_switch_body_errors_name_the_field(body, words) -> None:
    with pytest.raises(HttpError) as caught:
        parse_kill_switch(json.dumps(body).encode())
    assert caught.value.status == 400 and all(w in str(caught.value) for w in words), str(caught.value)


@pytest.mark.parametrize("change, words", [
    ({"side": "long"}, ["'side'", "buy"]),
    ({"quantity": 0}, ["'quantity'", "> 0"]),
    ({"quantity": "1"}, ["'quantity'", "number"]),
    ({"limit_price": -5}, ["'limit_price'", "> 0"]),
    ({"account": ""}, ["'account'", "non-empty"]),
    ({"liquidation": 1}, ["'liquidation'", "true or false"]),
    ({"price": 1}, ["'price'", "unknown"]),
])
def test_what_if_body_errors_name_the_field(change, words) -> None:
    body = {"account": "A", "instrument": "ES", "side": "buy", "quantity": 1, "limit_price": 100.0, **change}
    with pytest.raises(HttpError) as caught:
        parse_what_if(json.dumps(body).encode())
    assert caught.value.status == 400 and all(w in str(caught.value) for w in words), str(caught.value)


def test_what_if_body_builds_a_what_if_request() -> None:
    request = parse_what_if(b'{"account": "A", "instrument": "ES", "side": "sell", "quantity": 2,'
                            b' "limit_price": 10.5, "replaces": "O9"}')
    assert (request.account, request.instrument, request.side, request.quantity, request.limit_price) == (
        "A", "ES", -1, 2.0, 10.5)
    assert request.what_if and request.replaces == "O9" and request.order_id.startswith("what-if-")


def test_a_read_only_copy_replays_but_never_writes_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "k.jsonl"
    writer = KillSwitches(journal)
    writer.apply(KillSwitchCommand("global", "", True, "halt", "ops"))
    copy = KillSwitches(journal, read_only=True)
    assert copy.engaged_global() is not None and copy.engaged_global().by == "ops"
    size = journal.stat().st_size
    copy.apply(KillSwitchCommand("global", "", False, "resume", "ops"))
    assert copy.engaged_global() is None and journal.stat().st_size == size
    # A torn last line (the writer mid-append) is skipped by the copy, not cut off.
    with open(journal, "a") as f:
        f.write('{"ts": 1, "scope": "acc')
    torn = journal.stat().st_size
    assert KillSwitches(journal, read_only=True).engaged_global() is not None
    assert journal.stat().st_size == torn
