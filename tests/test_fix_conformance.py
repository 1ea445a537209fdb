"""QuickFIX's FIX 4.4 session acceptance scripts, replayed against riskd's acceptor.

This product includes software developed by quickfixengine.org
(http://www.quickfixengine.org/).

Every script in ../shared/fix-conformance/quickfix-at/fix44 runs, each against a
fresh acceptor (SenderCompID ISLD, TargetCompID TW44, ResetOnLogon=Y, as QuickFIX
runs them) with the echo application the scripts assume. ``EXCLUDED`` lists any
script left out and why; ``test_every_script_is_run_or_excused`` fails if a
script is neither.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from fix.engine import FixEngine
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import MemoryStore
from tests.fix_at import conformance_dir
from tests.fix_at.driver import run_script
from tests.fix_at.echo_app import EchoApplication

SCRIPTS = conformance_dir() / "fix44"
#: Scripts not run, with the reason. Empty: every script applies to this engine.
EXCLUDED: dict[str, str] = {}


def _scripts() -> list[Path]:
    return sorted(SCRIPTS.glob("*.def")) if SCRIPTS.is_dir() else []


def test_every_script_is_run_or_excused() -> None:
    names = [p.name for p in _scripts()]
    assert len(names) >= 59, f"conformance scripts not found under {SCRIPTS}"
    assert set(EXCLUDED) <= set(names)
    print(f"\nrunning {len(names) - len(EXCLUDED)} of {len(names)} scripts; excluded: {EXCLUDED or 'none'}")


@pytest.mark.parametrize("script", _scripts(), ids=lambda p: p.stem)
def test_acceptance_script(script: Path) -> None:
    if script.name in EXCLUDED:
        pytest.skip(EXCLUDED[script.name])
    settings = msgspec.convert({"SenderCompID": "ISLD", "TargetCompID": "TW44", "ConnectionType": "acceptor",
                                "SocketAcceptHost": "127.0.0.1", "SocketAcceptPort": 0, "ResetOnLogon": True},
                               SessionSettings)
    session = Session(settings, MemoryStore(), EchoApplication())
    engine = FixEngine()
    engine.add(session)
    engine.start_in_thread()
    try:
        port = engine.bound_ports[("ISLD", "TW44")]
        result = run_script(script, "127.0.0.1", port, timeout=10.0)
        assert result.passed, result.report() if hasattr(result, "report") else str(result)
    finally:
        engine.stop_thread()
