"""QuickFIX acceptance-test driver and the echo application the scripts assume."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def conformance_dir() -> Path:
    """The folder of QuickFIX's acceptance material (``quickfix-at``).

    ``RISKD_FIX_AT`` if set, else ``shared/fix-conformance/quickfix-at`` beside the
    checkout (where CI and developers have it) or inside it (the device machine's copy).
    """
    env = os.environ.get("RISKD_FIX_AT")
    if env:
        return Path(env)
    for shared in (_REPO.parent / "shared", _REPO / "shared"):
        candidate = shared / "fix-conformance" / "quickfix-at"
        if candidate.is_dir():
            return candidate
    return _REPO.parent / "shared" / "fix-conformance" / "quickfix-at"
