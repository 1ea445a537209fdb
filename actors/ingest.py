"""Drop-copy ingest: FIX session events stamped, journaled and routed to position shards over ZeroMQ.

:class:`DropCopyRouter` is the drop-copy application's ``on_event`` callback: it
turns each fix.dropcopy Fill / OrderEvent into an actors.messages FillMsg /
OrderMsg, stamps it (parsed and routed, monotonic ns) and pushes it to the PULL
socket of the account's shard (``shard_of``). One PUSH socket per shard keeps
every account's events in drop-copy order. The sockets are written from the FIX
engine's event-loop thread only.

With a journal (fix.journal, the durable system of record) the frames of a
message are kept back: :meth:`DropCopyRouter.derived` hands them to the journal
record of their message and :meth:`DropCopyRouter.publish` sends them after the
commit that covers them (fix.journaled_app.JournaledApplication calls both). Replays to
a restarted shard and the catch-up of every shard when the ingest (re)starts read
those frames back from the journal (:func:`journal_frames`).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Iterator

import msgspec
import zmq

from actors.messages import (CollateralMsg, FillMsg, OrderMsg, ReplayDone, Stamps, decode, encode, fill_message,
                             order_message)
from actors.position_shard import shard_of
from fix.dropcopy import DropCopyApplication, DropCopyEvent, ExecIdStore, Fill, scoped_exec_id, trade_date
from fix.application import BusinessReject, UnsupportedMessageType
from fix.journal import MSG, NOTE, Journal, JournalRecord, read_segment, segment_paths
from fix.parser import parse

log = logging.getLogger("riskd.ingest")

_FRAMES_ENCODER = msgspec.msgpack.Encoder()
_FRAMES_DECODER = msgspec.msgpack.Decoder(list[bytes])


def journal_frames(records: Iterable[JournalRecord]) -> Iterator[tuple[int, bytes]]:
    """(record seq, data-plane frame) of every frame the router journaled in ``records``."""
    for record in records:
        if record.extra:
            for frame in _FRAMES_DECODER.decode(record.extra):
                yield record.seq, frame


class DropCopyRouter:
    """Routes drop-copy events to shard sockets; counts what it sent per shard.

    ``journal``: None routes each event at once (no durability, tests); else see
    the module docstring.
    """

    def __init__(self, shard_sockets: list[zmq.Socket], clock_ns: Callable[[], int] = time.monotonic_ns,
                 journal: Journal | None = None) -> None:
        self.sockets = shard_sockets
        self.sent = [0] * len(shard_sockets)
        #: Drop-copy MsgSeqNum of the last event routed to each shard.
        self.last_seq = [0] * len(shard_sockets)
        self.journal = journal
        self._clock_ns = clock_ns
        #: (shard, seq, frame) of the message being processed, then of the read being committed.
        self._current: list[tuple[int, int, bytes]] = []
        self._ready: list[tuple[int, int, bytes]] = []
        #: Highest drop-copy position routed (from the journal's tail at start), and how many
        #: times a lower one came after it. Positions (offset + MsgSeqNum, the offset moving
        #: up at each sequence reset: fix.dropcopy, fix.journal) never go back, so this is a
        #: guard: the shards would skip such events as already applied. Logged CRITICAL.
        self.max_seq = journal.last_seq if journal is not None else 0
        self.sequence_resets = 0
        self._reset_at = 0

    def __call__(self, event: DropCopyEvent) -> None:
        # One ExecutionReport can give two events (a fill and its order's state): the
        # same seq again is not a reset, a lower one is.
        if event.seq < self.max_seq:
            if self.sequence_resets == 0 or event.seq < self._reset_at:  # once per reset
                log.critical("drop-copy position went back from %d to %d: the shards will skip these events as"
                             " already applied; positions are wrong from here",
                             self.max_seq, event.seq, extra={"event": "sequence_reset", "from_seq": self.max_seq,
                                                             "to_seq": event.seq})
                self.sequence_resets += 1
            self._reset_at = event.seq
        else:
            self.max_seq = event.seq
        parsed = self._clock_ns()
        # received_ns on the FIX event is when its bytes were read off the socket.
        stamps = Stamps(read_ns=event.received_ns, parsed_ns=parsed)
        message = fill_message(event, stamps) if isinstance(event, Fill) else order_message(event, stamps)
        shard = shard_of(event.account, len(self.sockets))
        stamps.routed_ns = self._clock_ns()
        frame = encode(message)
        if self.journal is None:
            self._send(shard, event.seq, frame)
        else:
            self._current.append((shard, event.seq, frame))

    # ----- the journal's side (fix.journaled_app.JournaledApplication) ---------------------
    def derived(self) -> bytes:
        """The current message's frames, encoded for its journal record; they are sent at
        the next :meth:`publish`."""
        if not self._current:
            return b""
        blob = _FRAMES_ENCODER.encode([frame for _, _, frame in self._current])
        self._ready += self._current
        self._current = []
        return blob

    def discard(self) -> None:
        """Forget the current message's frames (its processing failed: it will be resent)."""
        self._current.clear()

    def publish(self) -> None:
        """Send every frame the last journal commit covers, in order."""
        ready, self._ready = self._ready, []
        for shard, seq, frame in ready:
            self._send(shard, seq, frame)

    def _send(self, shard: int, seq: int, frame: bytes) -> None:
        self.sockets[shard].send(frame)
        self.sent[shard] += 1
        if seq > self.last_seq[shard]:
            self.last_seq[shard] = seq

    # ----- control ---------------------------------------------------------------------
    def collateral(self, account: str, cash: float) -> None:
        """Route a collateral change (currency) to its account's shard, in order with the
        drop copy. Journaled (a NOTE at the last journaled seq) and committed first."""
        shard = shard_of(account, len(self.sockets))
        if self.journal is None:
            self._send(shard, 0, encode(CollateralMsg(account, float(cash), self.last_seq[shard])))
            return
        # The journal's last seq orders it against every event: a shard that has applied
        # an event after it already holds it (snapshot), one that has not must apply it.
        seq = self.journal.last_seq
        frame = encode(CollateralMsg(account, float(cash), seq))
        self.journal.append(seq, self._clock_ns(), b"", _FRAMES_ENCODER.encode([frame]), kind=NOTE)
        self.journal.commit()
        self._send(shard, 0, frame)

    def replay(self, shard: int, socket: zmq.Socket, from_seq: int) -> ReplayDone:
        """Send ``shard`` every journaled frame of its accounts from drop-copy seq ``from_seq``
        on, in order, then a ReplayDone.

        Must run on the thread that routes (the FIX engine's), between two reads: then
        everything routed so far is committed, nothing is routed in between, and the
        marker's ``last_seq`` splits replayed from live events.
        """
        assert self.journal is not None, "replays read the journal"
        count = 0
        n = len(self.sockets)
        for _, frame in journal_frames(self.journal.records(from_seq)):
            if shard_of(_account(frame), n) == shard:
                socket.send(frame)
                count += 1
        done = ReplayDone(shard, count, self.last_seq[shard])
        socket.send(encode(done))
        return done

    def catch_up(self, applied: list[int]) -> list[int]:
        """Send each shard, on its live socket, the journaled frames of its accounts from its
        ``applied`` drop-copy seq on (the ingest starting with shards already up: after a
        restart of the ingest or of the whole daemon). Returns the frames sent per shard.

        Shards skip frames older than what they applied and re-apply same-seq ones
        idempotently (PositionService), so an overlap costs nothing and a gap is impossible.
        """
        assert self.journal is not None, "catch-up reads the journal"
        n = len(self.sockets)
        sent = [0] * n
        for shard in range(n):
            self.last_seq[shard] = max(self.last_seq[shard], applied[shard])
        for seq, frame in journal_frames(self.journal.records(min(applied, default=0))):
            shard = shard_of(_account(frame), n)
            if seq >= applied[shard]:
                self._send(shard, seq, frame)
                sent[shard] += 1
        return sent


def _account(frame: bytes) -> str:
    message = decode(frame)
    assert isinstance(message, (FillMsg, OrderMsg, CollateralMsg)), type(message)
    return message.account


class _ReadStamp:
    """What DropCopyApplication reads from a session: when the message's bytes were read."""

    def __init__(self, read_ns: int) -> None:
        self.read_ns = read_ns


def reconcile_exec_ids(journal: Journal, exec_ids: ExecIdStore) -> int:
    """Bring the ExecID store up to the journal after a crash; returns the reports it lacked.

    The store is written after each journal commit, so a crash in between leaves it
    without the last read's reports (never with more). Walk back from the journal's
    tail to the newest report the store holds from a first delivery (not a PossResend,
    whose ExecID was seen earlier), then run every later report through a
    DropCopyApplication that publishes nowhere: its events are in the journal already.
    """
    pending: list[JournalRecord] = []
    paths = segment_paths(journal.folder)
    found = False
    for i in range(len(paths) - 1, -1, -1):
        records = [r for r in read_segment(paths[i], last=i == len(paths) - 1) if r.kind == MSG]
        for record in reversed(records):
            message = parse(record.raw)
            # A PossDup resend (43=Y) under its original number is a first delivery to us; a
            # PossResend (97=Y) repeats an ExecID seen earlier under another number.
            if message.msg_type == b"8" and message.get(17) and message.get(97) != b"Y":
                if exec_ids.seen(scoped_exec_id(trade_date(message), message.get(17).decode())):
                    found = True
                    break
            pending.append(record)
        if found:
            break
    application = DropCopyApplication(lambda event: None, exec_ids)
    for record in reversed(pending):
        message = parse(record.raw)
        try:
            application.from_app(message, _ReadStamp(record.recv_ns))  # type: ignore[arg-type]
        except (BusinessReject, UnsupportedMessageType):
            pass  # refused when it arrived too: nothing to remember
    exec_ids.flush()
    recorded = len(pending) - application.duplicates
    if recorded:
        log.warning("ExecID store behind the journal: %d journaled reports recorded (to seq %d)", recorded,
                    pending[0].seq)
    return recorded
