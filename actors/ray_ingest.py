"""The drop-copy ingest actor: a FIX initiator session whose fills go to the position shards.

It owns the drop-copy FIX engine (its own uvloop thread), the ExecID store and one
PUSH socket per shard; the :class:`actors.ingest.DropCopyRouter` stamps each
event and pushes it to its account's shard. Ray carries only lifecycle and health.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import msgspec
import zmq

from actors.bus import Bus
from actors.ingest import DropCopyRouter
from actors.ray_actor import actor_class
from fix.dropcopy import DropCopyApplication, ExecIdStore
from fix.engine import FixEngine
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import open_store

log = logging.getLogger("riskd.ingest")


class IngestSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the ingest actor needs: the drop-copy session, shard endpoints, state folder.

    ``state_dir``: where the ExecID store lives (the session's FileStorePath holds
    its sequence numbers). ``replay_endpoints``: per shard, where a restarted
    position actor takes the replay of its events. ``cpus``: CPU ids to pin to
    (empty: no pinning).
    """

    session: SessionSettings
    shard_endpoints: tuple[str, ...]
    state_dir: str
    replay_endpoints: tuple[str, ...] = ()
    cpus: tuple[int, ...] = ()


class IngestActorImpl:
    """The actor's body, usable without Ray (tests) or as ``ray.remote(IngestActorImpl)``."""

    def __init__(self, spec: IngestSpec) -> None:
        if spec.cpus:
            os.sched_setaffinity(0, set(spec.cpus))
        self.spec = spec
        Path(spec.state_dir).mkdir(parents=True, exist_ok=True)
        self.bus = Bus()
        sockets = [self.bus.socket(zmq.PUSH, endpoint, bind=False) for endpoint in spec.shard_endpoints]
        self.router = DropCopyRouter(sockets)
        self.exec_ids = ExecIdStore(Path(spec.state_dir) / "execids")
        self.application = DropCopyApplication(self.router, self.exec_ids)
        store = open_store(spec.session.file_store_path, spec.session.sender_comp_id, spec.session.target_comp_id)
        self.session = Session(spec.session, store, self.application)
        self.engine = FixEngine()
        self.engine.add(self.session)
        self.replays = 0
        self.engine.start_in_thread("drop-copy")
        log.info("drop-copy ingest up: %s -> %d shards", spec.session.session_key, len(spec.shard_endpoints))

    def replay(self, shard: int) -> None:
        """Send ``shard`` every event routed to it so far, then a ReplayDone (for a restarted
        position actor). Runs on the FIX engine's thread, between two inbound messages."""
        endpoint = self.spec.replay_endpoints[shard]

        def send() -> None:
            # A socket per replay, created and closed on the engine thread that uses it;
            # LINGER lets the queued replay reach the shard after close.
            socket = self.bus.context.socket(zmq.PUSH)
            socket.setsockopt(zmq.SNDHWM, 0)
            socket.setsockopt(zmq.LINGER, 30_000)
            socket.connect(endpoint)
            done = self.router.replay(shard, socket)
            socket.close()
            self.replays += 1
            log.info("replayed %d events (up to seq %d) to shard %d", done.count, done.last_seq, shard)
        self.engine.call(send)

    def collateral(self, account: str, cash: float) -> None:
        """Set an account's cash or collateral (currency): routed in order with the drop copy."""
        self.engine.call(self.router.collateral, account, cash)

    def health(self) -> dict[str, Any]:
        """Session and routing counters for `riskd status`."""
        return {"pid": os.getpid(), "logged_on": self.session.logged_on, "logons": self.session.logons,
                "next_target_seq": self.session.store.next_target_seq, "sent_per_shard": list(self.router.sent),
                "last_seq_per_shard": list(self.router.last_seq),
                "duplicates": self.application.duplicates, "rejected": self.application.rejected,
                "replays": self.replays}

    def stop(self) -> None:
        """Log out (FIX Logout handshake), then close the sockets and the ExecID store."""
        self.engine.stop_thread()
        self.exec_ids.close()
        self.bus.close()


def ingest_actor_class(max_restarts: int = 3, num_cpus: float = 0.0) -> Any:
    """The Ray actor class of :class:`IngestActorImpl` (see :func:`actors.ray_actor.actor_class`)."""
    return actor_class(IngestActorImpl, max_restarts, num_cpus)
