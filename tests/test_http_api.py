"""The daemon's HTTP port: /metrics, /status and POST /collateral over a real server."""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.latency import FIX_PARSE, ROUTE, STAGES, BudgetBreach, LatencyBudgets, StageRecorder, StageStats
from actors.messages import AccountRisk, Stamps
from daemon.http_api import URL_FILE, HttpApi, to_json_value
from daemon.metrics import Metrics

# No proxy: an http_proxy in the environment must not see loopback requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def risk(account: str, equity: float, mm: float, tier: str, **kw: Any) -> AccountRisk:
    ratio = kw.pop("margin_ratio", mm / equity if equity > 0 else math.inf)
    return AccountRisk(account=account, equity=equity, initial_margin=mm / 0.8, maintenance_margin=mm,
                       initial_margin_with_orders=mm / 0.8 + 1000.0, margin_ratio=ratio, tier=tier,
                       binding_underlying=kw.get("und", "SPX"), binding_scenario=kw.get("scen", "down 3/3 vol up"),
                       top_driver=kw.get("driver", "C7000"), last_seq=kw.get("seq", 17), model_version=3,
                       stamps=Stamps(read_ns=1, published_ns=2))


class MemoryView:
    """A real in-memory DaemonView: a StageRecorder, latest AccountRisk per account,
    an alert list and health counters; set_collateral records and checks accounts."""

    def __init__(self) -> None:
        self.recorder = StageRecorder(LatencyBudgets(min_samples=10))
        self.latest: dict[str, AccountRisk] = {}
        self.alert_log: list[BudgetBreach] = []
        self.health_doc: dict[str, Any] = {}
        self.collateral: list[tuple[str, float]] = []
        self.fail_health = False

    def stage_snapshot(self) -> Mapping[str, StageStats]:
        return self.recorder.snapshot()

    def accounts(self) -> Sequence[AccountRisk]:
        return list(self.latest.values())

    def alerts(self) -> Sequence[BudgetBreach]:
        return list(self.alert_log)

    def health(self) -> Mapping[str, Any]:
        if self.fail_health:
            raise RuntimeError("shard 1 is gone")
        return self.health_doc

    def set_collateral(self, account: str, cash: float) -> None:
        if account not in self.latest:
            raise KeyError(account)
        self.collateral.append((account, cash))


def _feed(recorder: StageRecorder, stage: str, samples_ns: np.ndarray) -> None:
    for ns in samples_ns.tolist():
        recorder.record_value_ns(stage, ns)


def make_view() -> MemoryView:
    view = MemoryView()
    rng = np.random.default_rng(11)
    _feed(view.recorder, ROUTE, np.maximum(rng.lognormal(9.0, 0.6, 3_000), 1).astype(np.int64))
    _feed(view.recorder, FIX_PARSE, np.full(50, 40_000))  # 40 us: breaches the 15 us budget
    for r in (risk("ACC1", 1_000_000.0, 250_000.0, "normal"),
              risk("ACC2", 100_000.0, 95_000.0, "reduce_only", driver="NQP", und="NDX"),
              risk("BUST", -5_000.0, 20_000.0, "full_liquidation", seq=99),
              AccountRisk("NANACC", math.nan, math.nan, math.nan, math.nan, math.inf, "full_liquidation",
                          "", "", "", 0, 0, Stamps())):
        view.latest[r.account] = r
    view.alert_log = [BudgetBreach(stage=FIX_PARSE, p99_us=40.0, budget_us=15.0, count=50, at_wall_time=1e9),
                      BudgetBreach(stage=ROUTE, p99_us=70.0, budget_us=80.0, count=3000, at_wall_time=1e9 + 1,
                                   state="cleared")]
    view.health_doc = {"ingest": {"logged_on": True, "logons": 2, "sent_per_shard": [10, 12]},
                       "shards": [{"shard": 0, "received": 10, "last_error": None},
                                  {"shard": 1, "received": 12, "last_error": "x"}],
                       "market": None}
    return view


@pytest.fixture
def served() -> Iterator[tuple[HttpApi, MemoryView]]:
    view = make_view()
    api = HttpApi(view)
    api.start()
    try:
        yield api, view
    finally:
        api.stop()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with _OPENER.open(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with _OPENER.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


# --------------------------------------------------------------------------- /metrics

def test_metrics_has_stage_quantiles_account_gauges_alerts_and_health(served) -> None:
    api, view = served
    status, headers, body = get(api.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    values = samples(body.decode())
    snapshot = view.recorder.snapshot()
    route = snapshot[ROUTE]
    assert route.count == 3_000 and not math.isnan(route.p99_us)
    for quantile, expected in (("0.5", route.p50_us), ("0.99", route.p99_us), ("0.999", route.p999_us)):
        assert values[("riskd_stage_latency_us", (("quantile", quantile), ("stage", ROUTE)))] == expected
    assert values[("riskd_stage_budget_us", (("stage", ROUTE),))] == 80.0
    assert values[("riskd_stage_breached", (("stage", FIX_PARSE),))] == 1.0
    assert values[("riskd_stage_count_total", (("stage", FIX_PARSE),))] == 50
    for stage in STAGES:
        assert ("riskd_stage_budget_us", (("stage", stage),)) in values

    def account(name: str, acc: str) -> float:
        return values[(f"riskd_account_{name}", (("account", acc),))]

    acc2 = view.latest["ACC2"]
    assert account("equity", "ACC2") == acc2.equity
    assert account("initial_margin", "ACC2") == acc2.initial_margin
    assert account("initial_margin_with_orders", "ACC2") == acc2.initial_margin_with_orders
    assert account("maintenance_margin", "ACC2") == acc2.maintenance_margin
    assert account("margin_ratio", "ACC2") == pytest.approx(0.95)
    assert [account("tier", a) for a in ("ACC1", "ACC2", "BUST")] == [0.0, 2.0, 4.0]
    assert account("margin_ratio", "BUST") == math.inf
    assert math.isnan(account("equity", "NANACC"))
    assert values[("riskd_budget_alerts_total", (("state", "breached"),))] == 1
    assert values[("riskd_budget_alerts_total", (("state", "cleared"),))] == 1
    assert values[("riskd_health_value", (("actor", "ingest"), ("field", "logged_on")))] == 1.0
    assert values[("riskd_health_value", (("actor", "shards.1"), ("field", "received")))] == 12.0
    assert values[("riskd_health_value", (("actor", "ingest.sent_per_shard"), ("field", "1")))] == 12.0
    assert not any(labels == (("actor", "shards.0"), ("field", "last_error")) for _, labels in values)


def test_metrics_follow_the_view_between_scrapes(served) -> None:
    api, view = served
    view.latest["ACC1"] = risk("ACC1", 500_000.0, 480_000.0, "partial_liquidation")
    view.alert_log.append(BudgetBreach(stage=ROUTE, p99_us=95.0, budget_us=80.0, count=3000, at_wall_time=2e9))
    values = samples(get(api.url + "/metrics")[2].decode())
    assert values[("riskd_account_tier", (("account", "ACC1"),))] == 3.0
    assert values[("riskd_account_equity", (("account", "ACC1"),))] == 500_000.0
    assert values[("riskd_budget_alerts_total", (("state", "breached"),))] == 2
    # The view keeps only its newest alerts: dropping old ones must not recount.
    view.alert_log = view.alert_log[-1:]
    values = samples(get(api.url + "/metrics")[2].decode())
    assert values[("riskd_budget_alerts_total", (("state", "breached"),))] == 2
    view.alert_log.append(BudgetBreach(stage=ROUTE, p99_us=60.0, budget_us=80.0, count=3000, at_wall_time=3e9,
                                       state="cleared"))
    values = samples(get(api.url + "/metrics")[2].decode())
    assert values[("riskd_budget_alerts_total", (("state", "cleared"),))] == 2


def test_metrics_instance_is_shared_with_the_daemons_own_counters() -> None:
    metrics = Metrics()
    metrics.counter("fills", "Fills applied.").inc(5)
    view = make_view()
    with HttpApi(view, metrics=metrics) as api:
        values = samples(get(api.url + "/metrics")[2].decode())
    assert values[("riskd_fills_total", ())] == 5.0
    assert ("riskd_account_equity", (("account", "ACC1"),)) in values
    with pytest.raises(ValueError):  # the view's sources are registered once per Metrics
        HttpApi(make_view(), metrics=metrics)


# --------------------------------------------------------------------------- /status

def test_status_equals_the_recorder_snapshot_and_the_accounts(served) -> None:
    api, view = served
    status, headers, body = get(api.url + "/status")
    assert status == 200 and headers["Content-Type"] == "application/json"
    # Strict JSON: no NaN / Infinity literals anywhere.
    doc = json.loads(body, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    snapshot = view.recorder.snapshot()
    assert list(doc["stages"]) == list(snapshot)
    for stage, stats in snapshot.items():
        got = doc["stages"][stage]
        for field in ("count", "p50_us", "p99_us", "p999_us", "max_us", "budget_us", "breached"):
            expected = getattr(stats, field)
            if isinstance(expected, float) and math.isnan(expected):
                assert got[field] is None, (stage, field)
            else:
                assert got[field] == expected, (stage, field)
    assert doc["stages"][FIX_PARSE]["breached"] is True and doc["stages"]["pretrade"]["p99_us"] is None
    fields = ("account", "equity", "initial_margin", "maintenance_margin", "initial_margin_with_orders",
              "margin_ratio", "tier", "binding_underlying", "binding_scenario", "top_driver", "last_seq",
              "model_version")
    by_account = {a["account"]: a for a in doc["accounts"]}
    assert sorted(by_account) == sorted(view.latest)
    for name in ("ACC1", "ACC2"):
        assert by_account[name] == {f: getattr(view.latest[name], f) for f in fields}
    assert by_account["BUST"]["margin_ratio"] == "inf"
    assert by_account["NANACC"]["equity"] is None and by_account["NANACC"]["margin_ratio"] == "inf"
    assert doc["alerts"] == [msgspec.structs.asdict(a) for a in view.alert_log]
    assert doc["health"] == view.health_doc


def test_to_json_value_spells_non_finite_floats() -> None:
    assert to_json_value({"a": [math.nan, math.inf, -math.inf, 1.5, np.int64(3), np.float64(2.0)]}) == \
        {"a": [None, "inf", "-inf", 1.5, 3, 2.0]}


def test_a_failing_handler_answers_500_and_the_server_goes_on(served) -> None:
    api, view = served
    view.fail_health = True
    status, _, body = get(api.url + "/status")
    assert status == 500 and "shard 1 is gone" in json.loads(body)["error"]
    view.fail_health = False
    assert get(api.url + "/status")[0] == 200
    assert get(api.url + "/metrics")[0] == 200


def test_unknown_route_is_404_and_wrong_method_405(served) -> None:
    api, _ = served
    status, _, body = get(api.url + "/nope")
    assert status == 404 and "/nope" in json.loads(body)["error"]
    status, headers, body = get(api.url + "/collateral")
    assert status == 405 and headers["Allow"] == "POST" and "GET" in json.loads(body)["error"]
    status, body = post(api.url + "/status", b"{}")
    assert status == 405 and "POST" in body["error"]
    status, body = post(api.url + "/metrics", b"{}")
    assert status == 405


# --------------------------------------------------------------------------- /collateral

def test_collateral_success_calls_the_view(served) -> None:
    api, view = served
    assert post(api.url + "/collateral", b'{"account": "ACC2", "cash": 250000.5}') == (200, {"ok": True})
    assert post(api.url + "/collateral", b'{"account": "ACC1", "cash": 7}') == (200, {"ok": True})
    assert view.collateral == [("ACC2", 250000.5), ("ACC1", 7.0)]
    assert all(isinstance(cash, float) for _, cash in view.collateral)


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, ["body", "empty"]),
    (b"{not json", 400, ["body", "JSON"]),
    (b"[1, 2]", 400, ["body", "object"]),
    (b'{"cash": 1}', 400, ["'account'", "required"]),
    (b'{"account": "ACC1"}', 400, ["'cash'", "required"]),
    (b'{"account": "ACC1", "cash": "100"}', 400, ["'cash'", "number"]),
    (b'{"account": "ACC1", "cash": true}', 400, ["'cash'", "number"]),
    (b'{"account": "ACC1", "cash": null}', 400, ["'cash'", "number"]),
    (b'{"account": "ACC1", "cash": NaN}', 400, ["'cash'", "finite"]),
    (b'{"account": "ACC1", "cash": Infinity}', 400, ["'cash'", "finite"]),
    (b'{"account": "ACC1", "cash": 1' + b"0" * 400 + b"}", 400, ["'cash'", "finite"]),
    (b'{"account": 12, "cash": 1}', 400, ["'account'", "string"]),
    (b'{"account": "", "cash": 1}', 400, ["'account'", "string"]),
    (b'{"account": "ACC1", "cash": 1, "csh": 2}', 400, ["'csh'", "unknown"]),
    (b'{"account": "NOPE", "cash": 1}', 404, ["'account'", "NOPE"]),
    (b"[" * 100_000, 413, ["body", "limit"]),
])
def test_collateral_errors_name_the_field(served, body: bytes, status: int, words: list[str]) -> None:
    api, view = served
    got_status, got = post(api.url + "/collateral", body)
    assert got_status == status, got
    assert all(word in got["error"] for word in words), got["error"]
    assert view.collateral == []


def test_collateral_needs_json_content_type(served) -> None:
    api, view = served
    status, body = post(api.url + "/collateral", b'{"account": "ACC1", "cash": 1}', "text/plain")
    assert status == 415 and "application/json" in body["error"]
    assert view.collateral == []


# --------------------------------------------------------------------------- lifecycle

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "0:0::0"])
def test_every_interface_is_refused_by_default(host: str) -> None:
    with pytest.raises(ValueError, match="allow_any_interface"):
        HttpApi(make_view(), host=host)


def test_every_interface_when_allowed() -> None:
    api = HttpApi(make_view(), host="0.0.0.0", allow_any_interface=True)
    api.start()
    try:
        port = api.url.rsplit(":", 1)[1]
        assert api.url == f"http://0.0.0.0:{port}"
        assert get(f"http://127.0.0.1:{port}/status")[0] == 200
    finally:
        api.stop()


def test_stop_is_idempotent_joins_and_removes_the_url_file(tmp_path: Path) -> None:
    api = HttpApi(make_view())
    api.stop()  # never started: nothing to do
    api = HttpApi(make_view())
    url = api.start()
    assert url.startswith("http://127.0.0.1:") and api.url == url
    path = api.publish_url(tmp_path)
    assert path == tmp_path / URL_FILE and path.read_text() == url + "\n"
    assert (path.stat().st_mode & 0o777) == 0o600
    threads = {t.name for t in threading.enumerate()}
    assert "riskd-http" in threads
    api.stop()
    api.stop()
    assert not path.exists()
    assert not any(t.name == "riskd-http" for t in threading.enumerate())
    with pytest.raises(urllib.error.URLError):
        _OPENER.open(url + "/status", timeout=2)
    with pytest.raises(RuntimeError):
        api.start()


def test_concurrent_requests() -> None:
    view = make_view()
    with HttpApi(view) as api:
        results: list[int] = []

        def worker() -> None:
            for _ in range(5):
                results.append(get(api.url + "/status")[0])
                results.append(get(api.url + "/metrics")[0])

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [200] * 80
