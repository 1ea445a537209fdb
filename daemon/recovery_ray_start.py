"""Developer measurement: what Ray's own start costs the daemon's restart, option by option.

``python -m daemon.recovery_ray_start [--runs N]`` times, in a fresh process per
run, ``ray.init`` as the daemon calls it (local instance, no dashboard, no log
forwarding) and variants of it, then one trivial actor to ready (a worker process
started and registered), and prints one JSON object with the median and every
run per variant (seconds). Variants:

- ``daemon``: the daemon's call (daemon.run.Daemon);
- ``metrics_off``: plus ``_system_config={"enable_metrics_collection": False}``;
- ``usage_stats_off``: plus ``RAY_USAGE_STATS_ENABLED=0``;
- ``num_cpus_1`` / ``num_cpus_4``: the raylet prestarts ``num_cpus`` idle Python
  workers at its start (the first actors take them);
- ``connect``: ``ray.init(address=...)`` to a local instance started beforehand
  (not timed, by this process): the cost left if Ray outlives the daemon.

Not a bench of its own (no target): the numbers for the restart breakdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

_CHILD = r"""
import json, os, sys, time
kw = json.loads(sys.argv[1])
t0 = time.monotonic()
import ray
t1 = time.monotonic()
ray.init(**kw)
t2 = time.monotonic()

@ray.remote(num_cpus=0)
class Probe:
    def pid(self):
        return os.getpid()

ray.get(Probe.remote().pid.remote())
t3 = time.monotonic()
print(json.dumps({"import_s": t1 - t0, "init_s": t2 - t1, "first_actor_s": t3 - t2, "total_s": t3 - t0}))
ray.shutdown()
"""

BASE = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "daemon": (BASE, {}),
    "metrics_off": ({**BASE, "_system_config": {"enable_metrics_collection": False}}, {}),
    "usage_stats_off": (BASE, {"RAY_USAGE_STATS_ENABLED": "0"}),
    "num_cpus_1": ({**BASE, "num_cpus": 1}, {}),
    "num_cpus_4": ({**BASE, "num_cpus": 4}, {}),
}


def _run(kwargs: dict[str, Any], env: dict[str, str]) -> dict[str, float]:
    child_env = dict(os.environ, RAY_worker_niceness="0", **env)
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(kwargs)], env=child_env, capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _connect_run() -> dict[str, float]:
    """A driver connecting to a running local instance (this process's, started untimed)."""
    import ray

    os.environ["RAY_worker_niceness"] = "0"
    ray.init(**BASE)
    try:
        address = ray.get_runtime_context().gcs_address
        return _run({"address": address, "log_to_driver": False, "configure_logging": False}, {})
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", default=",".join([*VARIANTS, "connect"]))
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(args.runs):  # interleaved: a load change hits every variant alike
        for name in names:
            runs[name].append(_connect_run() if name == "connect" else _run(*VARIANTS[name]))
    out: dict[str, Any] = {"runs": args.runs, "loadavg_1m": os.getloadavg()[0]}
    for name, results in runs.items():
        out[name] = {key: round(statistics.median(r[key] for r in results), 3) for key in results[0]}
        out[name]["total_s_runs"] = [round(r["total_s"], 2) for r in results]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
