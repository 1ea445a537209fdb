"""`riskd status` against a real HttpApi: tables, --json, URL resolution, unreachable daemon."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.config import load_config
from daemon.http_api import URL_FILE, HttpApi
from daemon.status_cmd import DEFAULT_URL, resolve_url
from tests.test_http_api import MemoryView, make_view


@pytest.fixture
def served() -> Iterator[tuple[HttpApi, MemoryView]]:
    view = make_view()
    with HttpApi(view) as api:
        yield api, view


def _free_port() -> int:
    # Bound then closed: nothing listens there during the test.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, daemon_table: str) -> Path:
    # The embedded default plus a [daemon] table (the default has none).
    text = (Path(__file__).parents[1] / "configs" / "default.toml").read_text()
    path = tmp_path / "riskd.toml"
    path.write_text(text + "\n[daemon]\n" + daemon_table + "\n")
    return path


def test_status_prints_every_stage_and_account(served, capsys) -> None:
    api, view = served
    assert main(["status", "--url", api.url]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    snapshot = view.recorder.snapshot()
    for stage, stats in snapshot.items():
        row = next(line for line in lines if f" {stage} " in line)
        assert f" {stats.count} " in row or (stats.count == 0 and " 0 " in row), row
    fix_row = next(line for line in lines if " fix_parse " in line)
    assert "BREACH" in fix_row and "15.0" in fix_row
    route = snapshot["route"]
    route_row = next(line for line in lines if " route " in line)
    assert f"{route.p99_us:,.1f}" in route_row and " ok " in route_row
    for account in view.latest.values():
        row = next(line for line in lines if f" {account.account} " in line)
        assert account.tier in row
    acc2 = next(line for line in lines if " ACC2 " in line)
    assert "95.0%" in acc2 and "100,000" in acc2 and "NDX" in acc2 and "NQP" in acc2
    assert "inf" in next(line for line in lines if " BUST " in line)
    assert "n/a" in next(line for line in lines if " NANACC " in line)
    assert "recent alerts" in out and "cleared" in out
    health = next(line for line in lines if line.startswith("health: "))
    assert "ingest: logged_on=True logons=2" in health and "shards[1]: shard=1 received=12" in health


def test_status_json_round_trips(served, capsys) -> None:
    api, view = served
    assert main(["status", "--url", api.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["stages"]) == list(view.recorder.snapshot())
    assert sorted(a["account"] for a in doc["accounts"]) == sorted(view.latest)
    assert doc["health"] == view.health_doc
    assert doc["stages"]["route"]["count"] == 3_000


def test_unreachable_daemon_exits_2_with_one_line(capsys) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(["status", "--url", url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"riskd status: no daemon answering at {url} (")


def test_something_else_answering_exits_2(served, capsys) -> None:
    api, _ = served
    # /metrics is not a status document: point --url at a path whose /status is a 404.
    assert main(["status", "--url", api.url + "/metrics"]) == 2
    err = capsys.readouterr().err
    assert "answered HTTP 404" in err


def test_url_from_config_prefers_the_run_dirs_http_url(served, tmp_path: Path, capsys) -> None:
    api, view = served
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = _config(tmp_path, f'run_dir = "{run_dir}"\nhttp_port = {_free_port()}')
    # No http.url yet: host and port from the config (nothing listens there).
    assert resolve_url(None, str(config)) == f"http://127.0.0.1:{load_config(config).daemon.http_port}"
    assert main(["status", "-c", str(config)]) == 2
    assert "no daemon answering" in capsys.readouterr().err
    api.publish_url(run_dir)
    assert resolve_url(None, str(config)) == api.url
    assert main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert all(f" {name} " in out for name in view.latest)
    assert resolve_url("http://elsewhere:1", str(config)) == "http://elsewhere:1"  # --url wins


def test_url_from_config_host_and_port(tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    config = _config(tmp_path, f'run_dir = "{run_dir}"\nhttp_host = "0.0.0.0"\nhttp_port = 9999')
    assert resolve_url(None, str(config)) == "http://127.0.0.1:9999"  # every interface -> loopback
    config = _config(tmp_path, f'run_dir = "{run_dir}"\nhttp_port = 0')
    from daemon.status_cmd import StatusError

    with pytest.raises(StatusError, match="http_port is 0"):
        resolve_url(None, str(config))
    assert not (run_dir / URL_FILE).exists()
    assert resolve_url(None, None) == DEFAULT_URL == "http://127.0.0.1:9464"


def test_bad_config_exits_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nhttp_port = 70000\n")
    assert main(["status", "-c", str(bad)]) == 2
    assert "http_port" in capsys.readouterr().err
