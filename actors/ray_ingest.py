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
from fix.dropcopy import DropCopyApplication, ExecIdStore
from fix.engine import FixEngine
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import open_store

log = logging.getLogger("riskd.ingest")


class IngestSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the ingest actor needs: the drop-copy session, shard endpoints, state folder.

    ``state_dir``: where the ExecID store lives (the session's FileStorePath holds
    its sequence numbers). ``cpus``: CPU ids to pin to (empty: no pinning).
    """

    session: SessionSettings
    shard_endpoints: tuple[str, ...]
    state_dir: str
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
        self.engine.start_in_thread("drop-copy")
        log.info("drop-copy ingest up: %s -> %d shards", spec.session.session_key, len(spec.shard_endpoints))

    def health(self) -> dict[str, Any]:
        """Session and routing counters for `riskd status`."""
        return {"pid": os.getpid(), "logged_on": self.session.logged_on, "logons": self.session.logons,
                "next_target_seq": self.session.store.next_target_seq, "sent_per_shard": list(self.router.sent),
                "duplicates": self.application.duplicates, "rejected": self.application.rejected}

    def stop(self) -> None:
        """Log out (FIX Logout handshake), then close the sockets and the ExecID store."""
        self.engine.stop_thread()
        self.exec_ids.close()
        self.bus.close()


def ingest_actor_class(max_restarts: int = 3, num_cpus: float = 0.5) -> Any:
    """The Ray actor class, with the restart policy and resources from config."""
    import ray

    return ray.remote(max_restarts=max_restarts, max_task_retries=1, num_cpus=num_cpus)(IngestActorImpl)
