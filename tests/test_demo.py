"""`riskd demo --no-tty`: the whole daemon with the simulated OMS and market, then a summary."""

from __future__ import annotations

import io
import re

import pytest

pytest.importorskip("ray")

from daemon.demo import run_demo  # noqa: E402


def test_demo_runs_the_daemon_and_prints_every_account_and_the_stages() -> None:
    out = io.StringIO()
    assert run_demo(5.0, tty=False, out=out) == 0
    text = out.getvalue()
    for account in ("ACC-HEDGED", "ACC-SHORTVOL", "ACC-VAR"):
        assert account in text
    for stage in ("fix_parse", "route", "position_update", "reprice"):
        assert stage in text
    routed = int(re.search(r"(\d+) events routed", text).group(1))
    received = int(re.search(r"drop copy: (\d+) messages received", text).group(1))
    assert routed > 0 and received > 0
