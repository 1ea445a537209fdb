"""The drop-copy ingest actor: a FIX initiator session whose fills go to the position shards.

It owns the drop-copy FIX engine (its own uvloop thread), the ExecID store and one
PUSH socket per shard; the :class:`actors.ingest.DropCopyRouter` stamps each
event and pushes it to its account's shard. Ray carries only lifecycle and health.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import msgspec
import zmq

from actors.gc_quiet import start_gc_freezer
from actors.bus import Bus
from actors.ingest import DropCopyRouter, reconcile_exec_ids
from actors.ray_actor import actor_class
from actors.recovery_gc import gc_paused
from actors.recovery_timing import StartupMarks
from fix.dropcopy import DropCopyApplication, ExecIdStore
from fix.engine import FixEngine
from fix.journal import Journal, JournalSettings
from fix.journaled_app import JournaledApplication
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import open_store

log = logging.getLogger("riskd.ingest")


class IngestSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the ingest actor needs: the drop-copy session, shard endpoints, state folders.

    ``state_dir``: where the ExecID store lives (the session's FileStorePath holds
    its sequence numbers). ``journal_dir``: the drop-copy journal's folder (None: no
    journal, no durability: tests). ``replay_endpoints``: per shard, where a
    restarted position actor takes the replay of its events. ``shard_names``: the
    position actors' Ray names, asked for what they applied when the ingest starts
    (catch-up). ``cpus``: CPU ids to pin to (empty: no pinning).
    """

    session: SessionSettings
    shard_endpoints: tuple[str, ...]
    state_dir: str
    replay_endpoints: tuple[str, ...] = ()
    cpus: tuple[int, ...] = ()
    journal_dir: str | None = None
    journal: JournalSettings = JournalSettings()
    shard_names: tuple[str, ...] = ()


class IngestActorImpl:
    """The actor's body, usable without Ray (tests) or as ``ray.remote(IngestActorImpl)``.

    Start-up with a journal (fresh, Ray restart or daemon restart alike): open the
    journal (a torn tail is truncated), bring the ExecID store up to it, send every
    shard the journaled frames it has not applied, take the session's next expected
    number from the journal, then connect (the OMS resends the rest).
    """

    def __init__(self, spec: IngestSpec, applied: Callable[[int], int] | None = None) -> None:
        """``applied(shard)``: the drop-copy seq the shard has applied (default: ask the
        actor named in ``spec.shard_names``; neither: no catch-up)."""
        #: Start-up phase marks (wall clock), in health(): the recovery bench's breakdown.
        self.startup = StartupMarks()
        with gc_paused():  # the ExecID store: a million long-lived objects (actors/recovery_gc.py)
            self._start(spec, applied)
        start_gc_freezer()  # no full collection in the middle of a read (actors/gc_quiet.py)

    def _start(self, spec: IngestSpec, applied: Callable[[int], int] | None) -> None:
        if spec.cpus:
            os.sched_setaffinity(0, set(spec.cpus))
        self.spec = spec
        Path(spec.state_dir).mkdir(parents=True, exist_ok=True)
        self.bus = Bus()
        sockets = [self.bus.socket(zmq.PUSH, endpoint, bind=False) for endpoint in spec.shard_endpoints]
        self.journal = Journal(spec.journal_dir, spec.journal) if spec.journal_dir is not None else None
        self.startup.mark("journal_opened")
        self.exec_ids = ExecIdStore(Path(spec.state_dir) / "execids")
        self.startup.mark("exec_ids_loaded")
        self.router = DropCopyRouter(sockets, journal=self.journal)
        inner = DropCopyApplication(self.router, self.exec_ids)
        self.application: Any = inner
        self.dropcopy = inner
        store = open_store(spec.session.file_store_path, spec.session.sender_comp_id, spec.session.target_comp_id)
        self.reconciled = 0
        self.caught_up: list[int] = []
        if self.journal is not None:
            # Records must reach the ExecID store only after the journal commit that covers
            # them (a store ahead of the journal would drop the OMS's resend as a duplicate).
            self.exec_ids.FLUSH_BYTES = 1 << 62  # type: ignore[misc]
            self.reconciled = reconcile_exec_ids(self.journal, self.exec_ids)
            self.startup.mark("exec_ids_reconciled")
            self._catch_up(applied)
            self.startup.mark("caught_up_sent")
            # The journal decides, both ways: a store behind it would re-request what is
            # journaled (harmless, deduplicated), a store ahead of it (its write reached
            # the disk, the journal's did not: a power loss under fsync "interval")
            # would skip what was never journaled. From the journal, the OMS resends
            # the gap (admin messages come back as a GapFill).
            # (MsgSeqNum of the journal's last message, not its position: they differ once
            # the OMS has restarted its sequence.)
            expected = self.journal.last_msg_seq_num + 1
            if expected != store.next_target_seq:
                log.warning("next expected drop-copy seq %d from the journal (the store had %d)",
                            expected, store.next_target_seq)
                store.set_next_target_seq(expected)
                store.flush()
            router = self.router
            self.application = JournaledApplication(inner, self.journal, derived=router.derived,
                                                    discard=router.discard, publish=router.publish)
        self.session = Session(spec.session, store, self.application)
        self.engine = FixEngine()
        self.engine.add(self.session)
        self.replays = 0
        self.engine.start_in_thread("drop-copy")
        self.startup.mark("session_started")
        log.info("drop-copy ingest up: %s -> %d shards", spec.session.session_key, len(spec.shard_endpoints))

    def _catch_up(self, applied: Callable[[int], int] | None) -> None:
        n = len(self.spec.shard_endpoints)
        if applied is None and self.spec.shard_names:
            import ray

            handles = [_named_actor(name, timeout_s=120.0) for name in self.spec.shard_names]
            seqs = ray.get([h.applied_seq.remote() for h in handles], timeout=120)
        elif applied is not None:
            seqs = [applied(shard) for shard in range(n)]
        else:
            log.warning("no shard to ask what it applied: no catch-up from the journal")
            return
        self.startup.mark("shards_answered")
        self.caught_up = self.router.catch_up(list(seqs))
        log.info("catch-up from the journal: applied seqs %s, frames sent %s", list(seqs), self.caught_up)

    def replay(self, shard: int, from_seq: int = 0) -> None:
        """Send ``shard`` its journaled events from drop-copy seq ``from_seq`` on, then a
        ReplayDone (a restarted position actor, ``from_seq`` = its snapshot's). Runs on the
        FIX engine's thread, between two reads."""
        endpoint = self.spec.replay_endpoints[shard]

        def send() -> None:
            # A socket per replay, created and closed on the engine thread that uses it;
            # LINGER lets the queued replay reach the shard after close.
            socket = self.bus.context.socket(zmq.PUSH)
            socket.setsockopt(zmq.SNDHWM, 0)
            socket.setsockopt(zmq.LINGER, 30_000)
            socket.connect(endpoint)
            done = self.router.replay(shard, socket, from_seq)
            socket.close()
            self.replays += 1
            log.info("replayed %d events (seq %d to %d) to shard %d", done.count, from_seq, done.last_seq, shard)
        self.engine.call(send)

    def collateral(self, account: str, cash: float) -> None:
        """Set an account's cash or collateral (currency): routed in order with the drop copy."""
        self.engine.call(self.router.collateral, account, cash)

    def health(self) -> dict[str, Any]:
        """Session and routing counters for `riskd status`."""
        return {"pid": os.getpid(), "logged_on": self.session.logged_on, "logons": self.session.logons,
                "next_target_seq": self.session.store.next_target_seq, "sent_per_shard": list(self.router.sent),
                "last_seq_per_shard": list(self.router.last_seq),
                "duplicates": self.dropcopy.duplicates, "rejected": self.dropcopy.rejected,
                "replays": self.replays, "journal_seq": self.journal.last_seq if self.journal else None,
                "reconciled": self.reconciled, "caught_up": self.caught_up,
                "journal_truncated": self.journal.truncated_bytes if self.journal else 0,
                "sequence_resets": self.router.sequence_resets,
                "startup": self.startup.as_dict(), "startup_cpu": self.startup.cpu_dict()}

    def stop(self) -> None:
        """Log out (FIX Logout handshake), then close the sockets and the ExecID store."""
        self.engine.stop_thread()
        if self.journal is not None:
            self.journal.close()
        self.exec_ids.close()
        self.bus.close()


def _named_actor(name: str, timeout_s: float) -> Any:
    """The Ray actor named ``name``, waiting up to ``timeout_s`` s for it to be created (the
    daemon creates the ingest before the shards it asks)."""
    import time

    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get_actor(name)
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ingest_actor_class(max_restarts: int = 3, num_cpus: float = 0.0) -> Any:
    """The Ray actor class of :class:`IngestActorImpl` (see :func:`actors.ray_actor.actor_class`)."""
    return actor_class(IngestActorImpl, max_restarts, num_cpus)
