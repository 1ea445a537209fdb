"""The daemon's side of the pre-trade hook: kill switches and what-if checks.

One job: :class:`PretradeControl`. Kill switches are set and cleared here (the
control API: ``POST /killswitch``, ``riskd kill-switch``): each command is
journaled first (``pretrade.kill_switch_journal``, by default
``<run_dir>/killswitch.jsonl``, fsynced: the daemon is the journal's one writer), then sent to every position shard, which applies it on
its own thread between two checks. A shard that Ray restarts replays the same
journal at start, so a command is never lost to a shard that was down when it
was sent. What-if checks (``POST /what-if``, ``riskd check``) go to the account's
shard through the ordinary client library, flagged ``what_if`` so nothing is
reserved.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from actors.bus import ipc_endpoint
from actors.kill_switch import KillSwitches
from actors.pretrade_client import PretradeClient
from actors.pretrade_messages import CheckRequest, Decision, KillSwitchCommand

log = logging.getLogger("riskd.pretrade")

#: Budget of a what-if check (us): people and other systems ask, not the OMS's hot
#: path, so a shard busy with a burst is waited for rather than failed.
WHAT_IF_TIMEOUT_US = 1_000_000.0
#: Seconds to wait for every shard to apply a kill-switch command.
BROADCAST_TIMEOUT_S = 10.0


#: Applies a command on every shard: (shards applied, [{"shard": i, "error": text}]).
Broadcast = Callable[[KillSwitchCommand], tuple[int, list[dict[str, Any]]]]


def ray_broadcast(shards: Sequence[Any], timeout_s: float = BROADCAST_TIMEOUT_S) -> Broadcast:
    """A :data:`Broadcast` over position-shard Ray actors (``kill_switch`` method), index = shard."""

    def broadcast(command: KillSwitchCommand) -> tuple[int, list[dict[str, Any]]]:
        import ray

        applied, failed = 0, []
        refs = [shard.kill_switch.remote(command) for shard in shards]
        for index, ref in enumerate(refs):
            try:
                ray.get(ref, timeout=timeout_s)
                applied += 1
            except Exception as exc:  # a dead or restarting shard reads the journal when it starts
                failed.append({"shard": index, "error": f"{type(exc).__name__}: {exc}"})
        return applied, failed
    return broadcast


def pretrade_endpoints(run_dir: Path, shards: int) -> tuple[str, ...]:
    """The shards' pre-trade ROUTER endpoints, index = shard, of a daemon with this run_dir."""
    return tuple(ipc_endpoint(f"pretrade-{i}", run_dir) for i in range(shards))


class PretradeControl:
    """Kill switches (journal + broadcast) and what-if checks for one daemon.

    ``journal``: the kill-switch journal (replayed here at start); ``broadcast``:
    applies a journaled command on every shard and returns (shards applied, failures
    as ``{"shard", "error"}``) (:func:`ray_broadcast` for Ray actors);
    ``endpoints``: the shards' pre-trade endpoints; ``accounts`` / ``underlyings``:
    the ids a switch may name.
    """

    def __init__(self, journal: str | Path, broadcast: Broadcast, endpoints: Sequence[str], *,
                 accounts: Collection[str], underlyings: Collection[str]) -> None:
        self.switches = KillSwitches(journal)
        self._broadcast = broadcast
        self._endpoints = tuple(endpoints)
        self._accounts = frozenset(accounts)
        self._underlyings = frozenset(underlyings)
        self._lock = threading.Lock()  # one command at a time; one what-if at a time on the client
        self._client: PretradeClient | None = None

    def kill_switches(self) -> dict[str, Any]:
        """The engaged switches (as :meth:`actors.kill_switch.KillSwitches.state`)."""
        return self.switches.state()

    def set_kill_switch(self, command: KillSwitchCommand) -> dict[str, Any]:
        """Journal ``command``, then apply it on every shard.

        KeyError for an account or underlying the config does not know; ValueError
        for a bad scope or a missing key; KillSwitchJournalError if the journal
        cannot be written (then nothing changed anywhere). Returns ``{"changed",
        "kill_switches", "shards": {"applied", "failed"}}``: a shard that failed to
        apply it (down, restarting) gets it from the journal when it starts again.
        """
        if command.scope == "account" and command.key not in self._accounts:
            raise KeyError(command.key)
        if command.scope == "underlying" and command.key not in self._underlyings:
            raise KeyError(command.key)
        with self._lock:
            changed = self.switches.apply(command)
            applied, failed = self._broadcast(command)
        level = logging.ERROR if failed else logging.WARNING
        log.log(level, "kill switch %s %s%s by %s: %s (%d shards applied, %d failed)",
                command.scope, "ENGAGED" if command.engaged else "cleared",
                f" {command.key}" if command.key else "", command.by or "?", command.reason, applied, len(failed),
                extra={"event": "kill_switch", "scope": command.scope, "key": command.key,
                       "engaged": command.engaged, "by": command.by, "reason": command.reason})
        return {"changed": changed, "kill_switches": self.switches.state(),
                "shards": {"applied": applied, "failed": failed}}

    def what_if(self, request: CheckRequest) -> Decision:
        """The decision the account's shard gives ``request`` now, reserving nothing
        (a rejected ``timeout`` if no answer comes within :data:`WHAT_IF_TIMEOUT_US`)."""
        request.what_if = True
        with self._lock:
            if self._client is None:
                self._client = PretradeClient(self._endpoints, timeout_us=WHAT_IF_TIMEOUT_US)
            return self._client.check(request)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
