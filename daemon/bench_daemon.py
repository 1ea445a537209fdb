"""A real riskd daemon for the benches: the bench universe loaded through a FIX drop copy.

:class:`LoadedDaemon` does what every bench that needs a running, loaded daemon
needs first (the load phase of ``riskd bench pipeline``):

1. starts the bench OMS (:mod:`daemon.bench_oms`, its own process: a real FIX 4.4
   drop-copy acceptor) on the universe (:mod:`daemon.bench_universe`);
2. points the universe's config at it (drop copy port, file store and run dir in
   a temporary folder, static market, 2 shards, an ephemeral HTTP port), lets the
   caller change that config further (``configure``), and starts
   :class:`daemon.run.Daemon` (Ray, ingest, shards, liquidation, the risk view);
3. :meth:`LoadedDaemon.load`: one fill per (account, held instrument) through the
   FIX session, then waits until every account's AccountRisk shows its last load
   fill applied (a :class:`daemon.bench_measure.RiskCollector` on the daemon's own
   AccountRisk reader).

:meth:`LoadedDaemon.close` (also the ``with`` exit) stops, in order, the daemon
(intake first: it logs out of the OMS), the OMS, Ray, and removes the folder.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Callable

import msgspec
import numpy as np

from daemon.bench_measure import RiskCollector
from daemon.bench_oms import OmsClient, OmsSpec
from daemon.bench_universe import Universe
from daemon.config import RiskdConfig


def bench_config(universe: Universe, oms_port: int, folder: str, *, shards: int = 2) -> RiskdConfig:
    """The universe's config wired for a bench: drop copy to the OMS on ``oms_port``, state under
    ``folder``, static market, ``shards`` shards, HTTP on an ephemeral port."""
    config = universe.config
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms_port,
                                        file_store_path=f"{folder}/fix", reconnect_interval=0.2)
    return msgspec.structs.replace(
        config, fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy),
        daemon=msgspec.structs.replace(config.daemon, run_dir=f"{folder}/run", market="static", shards=shards,
                                       http_port=0))


class LoadedDaemon:
    """A daemon on ``universe`` fed by the bench OMS (see the module docstring).

    ``configure``: a last change to the bench config before the daemon starts.
    ``http``: serve the daemon's HTTP port. ``log``: progress lines.
    """

    def __init__(self, universe: Universe, *, configure: Callable[[RiskdConfig], RiskdConfig] | None = None,
                 http: bool = True, shards: int = 2, log: Callable[[str], None] = lambda s: None,
                 prefix: str = "riskd-bench-") -> None:
        self.universe = universe
        self._log = log
        self._state = tempfile.TemporaryDirectory(prefix=prefix)
        self.oms: OmsClient | None = None
        self.daemon: Any = None
        self.collector: RiskCollector | None = None
        try:
            self.oms = OmsClient(OmsSpec(accounts=universe.accounts, holdings=universe.holdings,
                                         marks=universe.marks))
            config = bench_config(universe, self.oms.port, self._state.name, shards=shards)
            if configure is not None:
                config = configure(config)
            self.config = config
            from daemon.run import Daemon

            log(f"universe: {len(universe.accounts)} accounts x {len(universe.holdings[0])} positions, "
                f"{len(config.instruments)} instruments; starting riskd (Ray, 1 ingest, {shards} shards)...")
            self.daemon = Daemon(config, universe.market, http=http)
            if not self.oms.wait_logged_on(60.0):
                raise RuntimeError("the daemon's drop-copy session did not log on to the bench OMS within 60 s")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "LoadedDaemon":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, rate: float = 10_000.0, seed: int = 2026, limit_s: float = 120.0,
             stall_s: float = 20.0) -> dict[str, Any]:
        """One fill per (account, held instrument) at up to ``rate`` fills/s; returns once every
        fill is applied (RuntimeError if not within ``limit_s``, or no progress for ``stall_s``):
        {fills, seconds, fills_per_s, positions_loaded}."""
        assert self.oms is not None and self.daemon is not None
        n_load = len(self.universe.accounts) * len(self.universe.holdings[0])
        if self.collector is None:
            self.collector = RiskCollector(self.universe.accounts, n_load + 10_000)
            self.daemon.add_risk_listener(self.collector)
        collector = self.collector
        self._log(f"load: {n_load} fills at up to {rate:.0f}/s...")
        t0 = time.monotonic()
        phase = self.oms.run_phase("load", rate, n_load, seed, n_load / rate * 3 + 30)
        last = np.zeros(len(self.universe.accounts), np.int64)
        np.maximum.at(last, phase.acct, phase.seq)
        deadline = time.monotonic() + limit_s
        progress, progress_at = -1, time.monotonic()
        while True:
            behind = int((np.asarray(collector.covered, np.int64) < last).sum())
            if not behind:
                break
            now = time.monotonic()
            if collector.applied != progress:
                progress, progress_at = collector.applied, now
            if now > deadline or now - progress_at > stall_s:
                raise RuntimeError(f"load: {behind} accounts still missing fills of the {phase.sent} sent")
            time.sleep(0.005)
        seconds = time.monotonic() - t0
        loaded = sum(len(p) for p in self.daemon.positions_by_account().values())
        self._log(f"loaded {loaded} positions in {seconds:.1f} s")
        return {"fills": phase.sent, "seconds": round(seconds, 2), "fills_per_s": round(phase.sent / seconds),
                "positions_loaded": loaded}

    def close(self) -> None:
        """Stop the daemon (intake first), the OMS, Ray; remove the state folder. Idempotent;
        a failing step is logged and the others still run."""
        import ray

        daemon, self.daemon = self.daemon, None
        oms, self.oms = self.oms, None
        for step in (daemon.stop if daemon is not None else None, oms.stop if oms is not None else None,
                     ray.shutdown if ray.is_initialized() else None, self._state.cleanup):
            if step is None:
                continue
            try:
                step()
            except Exception as exc:  # keep cleaning up
                self._log(f"cleanup step {getattr(step, '__qualname__', step)} failed: {exc!r}")
