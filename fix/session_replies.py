"""Outbound messages of the FIX 4.4 session layer: numbering, storing and writing
what the session sends (application messages, Logon, Logout, GapFill, resent
messages, Reject, BusinessMessageReject).

`SessionReplies` is a mixin that `fix.session.Session` inherits: these methods
read and update the session's own state (sequence store, logon flags, last-sent
time), so they stay methods rather than module functions, but live here so that
`fix.session` holds only the inbound state machine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from fix.outbound import FieldValue, SendingTimeClock, build
from fix.parser import FixMessage, parse
from fix.session_constants import (ADMIN_TYPES, BUSINESS_REJECT_TEXT, HEADER_TAGS, LOGON, LOGOUT, REJECT,
                                   REJECT_TEXT, SEQUENCE_RESET, Disconnect, _int)
from fix.validation import reverse_route_fields

if TYPE_CHECKING:
    from fix.settings import SessionSettings
    from fix.store import MessageStore

# The session's logger: replies are logged as part of the session they belong to.
log = logging.getLogger("riskd.fix")


class SessionReplies:
    """Building and sending the session's outbound messages (mixed into `Session`)."""

    if TYPE_CHECKING:
        # Provided by `Session`; declared for type checkers only (nothing at run time).
        settings: SessionSettings
        store: MessageStore
        sender: bytes
        target: bytes
        initiator: bool
        heart_bt_int: int
        sent_logon: bool
        sent_reset: bool
        received_logon: bool
        sent_logout_at: float | None
        last_sent: float
        logged_on: bool
        _sending_time: SendingTimeClock
        _write: Callable[[bytes], None] | None
        _monotonic: Callable[[], float]

        def _incr_target(self) -> None: ...

        def _clear_resend_range_at(self, seq: int) -> None: ...

    def send(self, msg_type: bytes, body: list[tuple[int, FieldValue]],
             header: list[tuple[int, FieldValue]] | None = None) -> int:
        """Send an application message; returns its MsgSeqNum.

        It is stored before it is written, so a message sent while disconnected
        is delivered by the counterparty's ResendRequest after the next logon.
        """
        return self._send(msg_type, body, header or [])

    def _send(self, msg_type: bytes, body: list[tuple[int, FieldValue]],
              header: list[tuple[int, FieldValue]] | tuple = (), seq: int | None = None) -> int:
        persist = seq is None
        if seq is None:
            seq = self.store.next_sender_seq
        fields = [(34, seq), (49, self.sender), (52, self._sending_time.now()), (56, self.target), *header]
        raw = build(msg_type, fields, body)
        if persist:
            if self.settings.persist_messages:
                self.store.save_sent(seq, raw)
            self.store.set_next_sender_seq(seq + 1)
        if self._write is not None and (self.logged_on or msg_type in ADMIN_TYPES):
            self._write(raw)
            self.last_sent = self._monotonic()
        return seq

    def _send_logon(self, reply_reset: bool = False) -> None:
        body: list[tuple[int, FieldValue]] = [(98, 0), (108, self.heart_bt_int)]
        if self.initiator and not self.sent_logon and self.settings.reset_on_logon:
            self.store.reset()
            self.sent_reset = True
        if self.sent_reset or reply_reset:
            body.append((141, b"Y"))
        if self.initiator and self.settings.username:
            body.append((553, self.settings.username))
        if self.initiator and self.settings.password:
            body.append((554, self.settings.password))
        self.sent_logon = True
        self._send(LOGON, body)

    def _send_logout(self, text: str | None = None) -> None:
        self.sent_logout_at = self._monotonic()
        self._send(LOGOUT, [(58, text)] if text else [])

    def _gap_fill(self, begin: int, new_seq: int) -> None:
        now = self._sending_time.now()
        self._send(SEQUENCE_RESET, [(36, new_seq), (123, b"Y")], [(43, b"Y"), (122, now)], seq=begin)

    def _resend(self, stored: FixMessage) -> None:
        header: list[tuple[int, FieldValue]] = [(43, b"Y"), (122, stored.get(52) or b"")]
        body: list[tuple[int, FieldValue]] = []
        for tag, value in stored.fields:
            if tag in (8, 9, 10, 35, 34, 49, 52, 56, 43, 122):
                continue
            (header if tag in HEADER_TAGS else body).append((tag, value))
        log.info("FIX resending message %s", stored.get_str(34))
        self._send(stored.msg_type or b"", body, header, seq=_int(stored, 34))

    def _answer_resend_request(self, begin: int, end: int, next_sender: int) -> None:
        """Answer a ResendRequest for ``begin``..``end`` (already clipped to what we
        sent; ``next_sender`` our next MsgSeqNum): stored application messages again
        with PossDupFlag=Y, admin messages (and anything not stored) as GapFills."""
        if not self.settings.persist_messages:
            self._gap_fill(begin, min(end + 1, next_sender))
        else:
            gap_start: int | None = None
            last = 0
            current = begin
            for seq, raw in self.store.sent_range(begin, end):
                stored = parse(raw)
                if stored.msg_type in ADMIN_TYPES:
                    if gap_start is None:
                        gap_start = seq
                else:
                    if gap_start is not None:
                        self._gap_fill(gap_start, seq)
                        gap_start = None
                    self._resend(stored)
                last = seq
                current = seq + 1
            if gap_start is not None:
                self._gap_fill(gap_start, last + 1)
            if end > last:
                self._gap_fill(current, min(end + 1, next_sender))

    def _reject(self, message: FixMessage, reason: int, tag: str | None = None, text: str | None = None) -> None:
        msg_type = message.msg_type
        seq_text = message.get(34)
        body: list[tuple[int, FieldValue]] = []
        if seq_text:
            body.append((45, seq_text))
        body.append((58, text or REJECT_TEXT.get(reason, "Rejected")))
        if tag is not None or reason == 0:
            body.append((371, tag if tag is not None else "0"))
        if msg_type:
            body.append((372, msg_type))
        body.append((373, reason))
        if msg_type not in (LOGON, SEQUENCE_RESET) and _int(message, 34) == self.store.next_target_seq:
            self._incr_target()
            self._clear_resend_range_at(self.store.next_target_seq - 1)
        if not self.received_logon:
            raise Disconnect(f"message rejected before logon: {REJECT_TEXT.get(reason)}")
        log.warning("FIX message %s rejected: %s (tag %s): %r", seq_text, REJECT_TEXT.get(reason), tag,
                    message.raw[:300])
        self._send(REJECT, body, reverse_route_fields(message))

    def _business_reject(self, message: FixMessage, reason: int, text: str | None = None,
                         ref_tag: int | None = None) -> None:
        body: list[tuple[int, FieldValue]] = [(45, message.get(34) or b"0"),
                                              (58, text or BUSINESS_REJECT_TEXT.get(reason, "Rejected"))]
        if ref_tag is not None:
            body.append((371, ref_tag))
        body += [(372, message.msg_type or b""), (380, reason)]
        self._incr_target()
        log.warning("FIX business message rejected (%s): %r", body[1][1], message.raw[:300])
        self._send(b"j", body, reverse_route_fields(message))
