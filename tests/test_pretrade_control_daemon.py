"""Kill switches and what-if checks on the whole daemon under Ray, from the command line.

`riskd kill-switch` posts to the daemon's control API, which journals the command
and applies it on every position shard; `riskd check` asks the account's shard
through the client library. A shard that Ray restarts while a switch is engaged
still refuses the account's orders (it replays the journal), and `riskd status`
and /metrics show the switch and the decisions per reason code.
"""

from __future__ import annotations

import socket
import urllib.request
from importlib import resources

import pytest

ray = pytest.importorskip("ray")

from daemon.book import load_book  # noqa: E402
from daemon.cli import main  # noqa: E402
from daemon.config import load_config, resolve_data_path  # noqa: E402
from daemon.run import Daemon  # noqa: E402
from tests.fix_sim import wait_for  # noqa: E402

ACCOUNT = "ACC-HEDGED"


def _config_file(tmp_path) -> str:
    with socket.socket() as probe:  # an OMS port nobody listens on: the hook works without a drop copy
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = resources.files("configs").joinpath("default.toml").read_text()
    text = text.replace("SocketConnectPort = 9878", f"SocketConnectPort = {port}")
    text = text.replace('FileStorePath = "var/fix"', f'FileStorePath = "{tmp_path}/fix"', 1)
    text += f'\n[daemon]\nshards = 2\nrun_dir = "{tmp_path}/run"\nhttp_port = 0\n'
    path = tmp_path / "riskd.toml"
    path.write_text(text)
    return str(path)


def _check(capsys, config: str, *extra: str) -> tuple[int, str]:
    code = main(["check", "-c", config, ACCOUNT, "ESZ6", "buy", "1", "6900", *extra])
    return code, capsys.readouterr().out


def test_kill_switch_and_what_if_from_the_command_line_survive_a_shard_restart(tmp_path, capsys) -> None:
    config_path = _config_file(tmp_path)
    config = load_config(config_path)
    book, _ = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    daemon = None
    try:
        daemon = Daemon(config, book.market)
        code, out = _check(capsys, config_path)
        assert code == 0 and "ACCEPTED (accepted)" in out and "what-if" in out and "initial margin" in out

        code = main(["kill-switch", "engage", "--account", ACCOUNT, "--reason", "test halt", "--by", "pytest",
                     "-c", config_path])
        out = capsys.readouterr().out
        assert code == 0 and "engaged" in out and "applied on 2 shards" in out
        code, out = _check(capsys, config_path)
        assert code == 1 and "kill_switch_account" in out and "test halt" in out and "pytest" in out
        assert (tmp_path / "run" / "killswitch.jsonl").read_text().count('"engaged":true') == 1

        # Ray restarts the account's shard: it replays the journal and still refuses.
        from actors.position_shard import shard_of

        victim = daemon.positions[shard_of(ACCOUNT, 2)]
        pid = ray.get(victim.health.remote(), timeout=30)["pid"]
        ray.kill(victim, no_restart=False)

        def restarted() -> bool:
            try:
                return ray.get(victim.health.remote(), timeout=5)["pid"] != pid
            except Exception:
                return False
        wait_for(restarted, 90, message="the shard restarted")
        wait_for(lambda: _check(capsys, config_path)[0] != 2, 30, message="the restarted shard answers")
        code, out = _check(capsys, config_path)
        assert code == 1 and "kill_switch_account" in out

        def status() -> str:
            assert main(["status", "-c", config_path]) == 0
            return capsys.readouterr().out
        text = status()
        assert f"account {ACCOUNT} by pytest" in text
        assert "pre-trade path: shard 0: software (no overlay: no bitstream configured)" in text
        # Decisions per reason code, pulled from the shards about once a second.
        wait_for(lambda: "kill_switch_account" in status(), 15, message="decisions per reason in riskd status")

        def metrics() -> str:
            with urllib.request.urlopen(daemon.http.url + "/metrics", timeout=10) as reply:
                return reply.read().decode()
        wait_for(lambda: 'riskd_pretrade_decisions_total{reason="kill_switch_account"}' in metrics(), 15,
                 message="per-reason decisions on /metrics")

        assert main(["kill-switch", "clear", "--account", ACCOUNT, "--reason", "resolved", "--by", "pytest",
                     "-c", config_path]) == 0
        capsys.readouterr()
        code, out = _check(capsys, config_path, "--reserve", "--order-id", "CLI-1")
        assert code == 0 and "ACCEPTED" in out and "what-if" not in out
        # A reserved order is open on the shard: the same id again is refused as a duplicate.
        code, out = _check(capsys, config_path, "--order-id", "CLI-1")
        assert code == 1 and "already open" in out
        # Unknown ids are refused by the control API with the reason.
        assert main(["kill-switch", "engage", "--account", "NOPE", "--reason", "x", "--by", "y",
                     "-c", config_path]) == 2
        assert "unknown account 'NOPE'" in capsys.readouterr().err
    finally:
        if daemon is not None:
            daemon.stop()
        ray.shutdown()
