"""The FIX application wrapper that journals every business message before its effects
are published (fix.journal is the writer it appends to).

Records carry the drop-copy position (offset + MsgSeqNum), not the bare MsgSeqNum, so a
sequence reset by the OMS (Logon with ResetSeqNumFlag=Y) goes on in the same journal.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from fix.application import BusinessReject, UnsupportedMessageType
from fix.journal import Journal, JournalError
from fix.parser import FixMessage
from fix.validation import FixValidationError

log = logging.getLogger("riskd.fix.journal")


class JournaledApplication:
    """A FIX application wrapped so every business message it accepts is journaled.

    ``from_app`` runs the inner application, then appends the message with
    ``derived()`` (the bytes its processing produced, e.g. routed frames) as the
    record's extra; a message refused with a (business) reject is journaled too, with
    nothing derived (its number is used up); a message whose processing failed is not
    (``discard()`` drops what it derived; the session disconnects and it is resent).
    At the end of each TCP read (``flush``, called by the session before it persists
    its next expected number): commit the journal, then ``publish()`` what the commit
    covers, then flush the inner application.
    """

    def __init__(self, inner: object, journal: Journal, *, derived: Callable[[], bytes] = lambda: b"",
                 discard: Callable[[], None] = lambda: None, publish: Callable[[], None] = lambda: None) -> None:
        self.inner = inner
        self.journal = journal
        self._derived, self._discard, self._publish = derived, discard, publish
        #: A record's seq is the drop-copy position: offset + MsgSeqNum. The offset moves up to
        #: the last position when the OMS restarts its sequence (Logon 141=Y), so positions
        #: (journal, frames, shards, snapshots) never go back; at open it is what the last
        #: record says (its position minus the MsgSeqNum in its raw bytes).
        self.offset = journal.last_seq - journal.last_msg_seq_num
        self._share_offset()

    def _share_offset(self) -> None:
        if hasattr(self.inner, "seq_offset"):
            self.inner.seq_offset = self.offset  # type: ignore[attr-defined]
            self.inner.max_position = max(getattr(self.inner, "max_position", 0), self.journal.last_seq)  # type: ignore[attr-defined]

    def on_logon(self, session: object) -> None:
        self.inner.on_logon(session)  # type: ignore[attr-defined]

    def on_logout(self, session: object) -> None:
        self.inner.on_logout(session)  # type: ignore[attr-defined]

    def from_admin(self, message: FixMessage, session: object) -> None:
        if message.msg_type == b"A" and message.get(141) == b"Y" and self.journal.last_seq:
            self.offset = self.journal.last_seq
            log.warning("%s: drop-copy sequence reset (Logon 141=Y): positions go on from %d", self.journal.folder,
                        self.offset)
            self._share_offset()
        self.inner.from_admin(message, session)  # type: ignore[attr-defined]

    def from_app(self, message: FixMessage, session: object) -> None:
        seq = self.offset + int(message.get(34) or 0)
        received = getattr(session, "read_ns", 0) or time.monotonic_ns()
        if seq <= self.journal.last_seq:
            # Before any processing: the inner application must not remember a message
            # the journal cannot hold (the session drops the connection on this error).
            raise JournalError(f"{self.journal.folder}: position {seq} (MsgSeqNum {message.get_str(34)}) is not above"
                               f" the last journaled {self.journal.last_seq}")
        try:
            self.inner.from_app(message, session)  # type: ignore[attr-defined]
        except (BusinessReject, UnsupportedMessageType, FixValidationError):
            self._discard()
            self.journal.append(seq, received, message.raw)
            raise
        except BaseException:
            self._discard()
            raise
        self.journal.append(seq, received, message.raw, self._derived())

    def flush(self) -> None:
        self.journal.commit()
        self._publish()
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            flush()
