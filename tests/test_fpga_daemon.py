"""The whole daemon with ``[fpga] simulate = true`` (issue 8): the overlay decides.

Under Ray, one position shard opens the simulated overlay (the Amaranth simulation
behind pynq and the unchanged drivers) and its pre-trade endpoint decides through
it: `riskd check` gets the software hook's answer (a what-if, then a kill switch
the filter reports), and `riskd status` names the path ("fpga") with the shard's
counters. Two checks only: the simulation takes about a second per check.
"""

from __future__ import annotations

import socket
from importlib import resources

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pynq")
pytest.importorskip("amaranth")

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
    assert '[fpga]\nenabled = "auto"' in text
    text = text.replace('[fpga]\nenabled = "auto"', '[fpga]\nenabled = "on"\nsimulate = true', 1)
    text += f'\n[daemon]\nshards = 1\nrun_dir = "{tmp_path}/run"\nhttp_port = 0\n'
    path = tmp_path / "riskd.toml"
    path.write_text(text)
    return str(path)


def test_the_daemon_decides_on_the_simulated_overlay(tmp_path, capsys) -> None:
    config_path = _config_file(tmp_path)
    config = load_config(config_path)
    assert config.fpga.simulate and not config.fpga.shadow
    book, _ = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    daemon = None
    check = ["check", "-c", config_path, ACCOUNT, "ESZ6", "buy", "1", "6900", "--timeout-us", "60000000"]
    try:
        daemon = Daemon(config, book.market)
        code = main(check)
        out = capsys.readouterr().out
        assert code == 0 and "ACCEPTED (accepted)" in out, out
        code = main(["kill-switch", "engage", "--account", ACCOUNT, "--reason", "fpga test", "--by", "pytest",
                     "-c", config_path])
        assert code == 0, capsys.readouterr()
        capsys.readouterr()
        code = main(check)
        out = capsys.readouterr().out
        assert code == 1 and "kill_switch_account" in out and "(fpga risk filter)" in out, out
        fpga = ray.get(daemon.positions[0].health.remote(), timeout=30)["fpga"]
        assert fpga["path"] == "fpga" and fpga["decided"] == 2 and fpga["device_errors"] == 0, fpga

        def status() -> str:
            assert main(["status", "-c", config_path]) == 0
            return capsys.readouterr().out

        # the status document's health is refreshed periodically: wait for the two checks
        wait_for(lambda: "decided 2," in status(), 60, interval=0.5,
                 message="riskd status shows the two decided checks")
        assert "pre-trade path: shard 0: fpga (simulated overlay decides" in status()
    finally:
        if daemon is not None:
            daemon.stop()
