"""`riskd run` as a process: it starts, consumes the drop copy, and exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib import resources

import pytest

pytest.importorskip("ray")

from tests.fix_sim import ReportStream, SimulatedOms, wait_for  # noqa: E402


def test_riskd_run_consumes_the_drop_copy_and_stops_cleanly_on_sigterm(tmp_path) -> None:
    oms = SimulatedOms(seed=3)
    oms.stream = ReportStream(3, accounts=("ACC-HEDGED", "ACC-SHORTVOL", "ACC-VAR"), symbols=("ESZ6", "NQZ6"))
    config_text = resources.files("configs").joinpath("default.toml").read_text()
    config_text = config_text.replace("SocketConnectPort = 9878", f"SocketConnectPort = {oms.port}")
    config_text = config_text.replace('FileStorePath = "var/fix"', f'FileStorePath = "{tmp_path}/fix"', 1)
    config_text += f'\n[daemon]\nshards = 2\nrun_dir = "{tmp_path}/run"\n'
    config = tmp_path / "riskd.toml"
    config.write_text(config_text)
    log = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "-c", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: oms.logged_on, 60, message="riskd's drop-copy logon")
        oms.send_reports(300)
        wait_for(lambda: "tier" in (tmp_path / "out.txt").read_text(), 30, message="AccountRisk output")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        text = (tmp_path / "out.txt").read_text()
        assert "riskd running: 2 shards" in text and "riskd stopped" in text
        wait_for(lambda: not oms.logged_on, 10, message="FIX logout on shutdown")
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        oms.stop()
