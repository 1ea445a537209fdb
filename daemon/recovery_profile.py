"""Developer harness: time the recovery bench's restart phase repeatedly on one cached state folder.

``python -m daemon.recovery_profile [--fills N] [--runs K] [--cache DIR]``: the
1M-fill state (daemon.bench_recovery_state) is synthesized once into
``DIR/master`` (kept between invocations, with the setup pickled beside it), then
each run restarts the daemon on a fresh copy (``DIR/work``: a restart writes its
shutdown snapshot) exactly as ``riskd bench recovery --only restart`` does, and
prints one JSON line per run (daemon.bench_recovery._timed_restart: total seconds
and the phase marks). Not a bench of its own: for finding where the seconds go.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
from pathlib import Path
from typing import Any


def cached_setup(cache: Path, fills: int, rate_per_s: float = 10_000.0, age_s: float = 10.0) -> dict[str, Any]:
    """The synthesized state in ``cache/master`` (made once per ``fills``) and its setup."""
    from daemon.bench_recovery_state import synthesize_state

    meta = cache / f"setup-{fills}.pickle"
    master = cache / f"master-{fills}"
    if meta.exists() and master.is_dir():
        with open(meta, "rb") as f:
            return pickle.load(f)
    shutil.rmtree(cache / "work", ignore_errors=True)
    shutil.rmtree(master, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    setup = synthesize_state(cache / "work", fills, rate_per_s, age_s)
    print(f"synthesized in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    (cache / "work").rename(master)
    with open(meta, "wb") as f:
        pickle.dump(setup, f)
    return setup


def main(argv: list[str] | None = None) -> int:
    from daemon.bench_recovery import _timed_restart

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fills", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cache", default="/tmp/riskd-recovery-cache")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    setup = cached_setup(cache, args.fills)
    for _ in range(args.runs):
        shutil.rmtree(cache / "work", ignore_errors=True)
        shutil.copytree(cache / f"master-{args.fills}", cache / "work")
        result = _timed_restart(setup)
        print(json.dumps(result), flush=True)
    shutil.rmtree(cache / "work", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
