"""The FIX 4.4 session layer: logon, sequence numbers, gaps, resends, heartbeats, logout.

Transport-independent and single-threaded: the connection feeds it framed
messages (:meth:`Session.on_frame`) and ticks (:meth:`Session.on_timer`), and it
writes bytes through the callbacks given to :meth:`Session.connection_made`.
Its behaviour follows QuickFIX's Session (the QuickFIX FIX 4.4 acceptance
scripts in tests/ run against it): validate, then verify SendingTime, CompIDs
and MsgSeqNum; a number too high is queued and answered with one ResendRequest
(later messages are held until the gap is filled, then processed in order); a
number too low without PossDupFlag ends the session with a Logout; a ResendRequest
is answered with the stored application messages (PossDupFlag=Y) and GapFills
for admin messages. Times: ``HeartBtInt`` and timeouts in seconds, measured on
the monotonic clock; SendingTime checks use the wall clock.

Split by job: this module is the inbound state machine (`Session`); outbound
messages are built by `fix.session_replies.SessionReplies`, which `Session`
inherits, and the constants and pure helpers live in `fix.session_constants`.
Every name stays importable from here.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Callable

from fix.application import Application, BusinessReject, RejectLogon, UnsupportedMessageType
from fix.dictionary import MESSAGES
from fix.outbound import SendingTimeClock, parse_utc_timestamp
from fix.parser import FixMessage, parse
# Re-exported: other modules and the tests import these names from fix.session.
from fix.session_constants import (ADMIN_TYPES, BUSINESS_REJECT_TEXT, HEADER_TAGS, HEARTBEAT, LOGON, LOGOUT,
                                   REJECT, REJECT_TEXT, RESEND_REQUEST, RESEND_STALL_MIN_S, SEQUENCE_RESET,
                                   TEST_REQUEST, TIMEOUT_HEARTBEATS, Disconnect, _int, _message_tags)
from fix.session_replies import SessionReplies
from fix.settings import SessionSettings
from fix.store import MessageStore
from fix.validation import FixValidationError, GarbledMessage, validate

__all__ = [
    "LOGON", "HEARTBEAT", "TEST_REQUEST", "RESEND_REQUEST", "REJECT", "SEQUENCE_RESET", "LOGOUT",
    "ADMIN_TYPES", "HEADER_TAGS", "REJECT_TEXT", "BUSINESS_REJECT_TEXT", "TIMEOUT_HEARTBEATS",
    "RESEND_STALL_MIN_S", "Disconnect", "Session",
]

log = logging.getLogger("riskd.fix")


@functools.lru_cache(maxsize=None)
def _allowed_tags(msg_type: bytes) -> frozenset[int] | None:
    """Every tag a message type may carry (header and trailer included), None if undefined."""
    definition = MESSAGES.get(msg_type.decode())
    if definition is None:
        return None
    return frozenset(_message_tags(definition.items) | HEADER_TAGS | {10, 93, 89})


class Session(SessionReplies):
    """One FIX session (SenderCompID, TargetCompID) and its state on the current connection."""

    def __init__(self, settings: SessionSettings, store: MessageStore, application: Application, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.store = store
        self.application = application
        self.sender = settings.sender_comp_id.encode()
        self.target = settings.target_comp_id.encode()
        self.initiator = settings.connection_type == "initiator"
        self._begin_string = settings.begin_string.encode()
        self.heart_bt_int = settings.heart_bt_int
        self._clock = clock
        self._monotonic = monotonic
        self._sending_time = SendingTimeClock(clock)
        self._write: Callable[[bytes], None] | None = None
        self._close: Callable[[], None] | None = None
        #: Completed logons since start (the initiator resets its backoff on a new one).
        self.logons = 0
        #: Monotonic ns when the message being processed was read off the socket.
        self.read_ns = 0
        self._queued = False
        self._reset_connection_state()

    # ----- connection ------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._write is not None

    @property
    def logged_on(self) -> bool:
        return self.sent_logon and self.received_logon

    def connection_made(self, write: Callable[[bytes], None], close: Callable[[], None]) -> None:
        """A transport is up: an initiator sends its Logon at once."""
        self._write, self._close = write, close
        self._reset_connection_state()
        if self.initiator:
            self._send_logon()

    def connection_lost(self) -> None:
        """The transport is gone (either side closed it)."""
        self.on_batch_end()
        was_logged_on = self.logged_on
        self._write = self._close = None
        self._reset_connection_state()
        if was_logged_on:
            self._callback(self.application.on_logout, self)

    def disconnect(self, reason: str) -> None:
        """Drop the connection now (the counterparty will reconnect or be reconnected)."""
        log.info("FIX %s->%s disconnect: %s", self.settings.sender_comp_id, self.settings.target_comp_id, reason)
        close = self._close
        if close is not None:
            close()

    def logout(self, text: str | None = None) -> None:
        """Start the Logout handshake; the connection drops on the answer or after LogoutTimeout."""
        if self.connected and not self.sent_logout_at:
            self._send_logout(text)

    def _reset_connection_state(self) -> None:
        now = self._monotonic()
        self.sent_logon = self.received_logon = False
        self.sent_reset = self.received_reset = False
        self.sent_logout_at: float | None = None
        self.resend_range: tuple[int, int] | None = None
        self.queue: dict[int, FixMessage] = {}
        self.test_requests = 0
        self.last_sent = self.last_received = self.connected_at = self._last_progress = now

    # ----- inbound ---------------------------------------------------------
    def on_frame(self, raw: bytes, read_ns: int = 0) -> None:
        """One complete, checksum-verified message from the framer.

        ``read_ns``: monotonic ns when its bytes were read off the socket (the start
        of the latency budget's fix_parse stage); now if not given.
        """
        self.read_ns = read_ns or time.monotonic_ns()
        self.last_received = self._monotonic()
        message = parse(raw)
        try:
            self._next(message)
            self._next_queued()
        except Disconnect as reason:
            self.disconnect(str(reason))
        except Exception:  # a bug must cost one message (logged with its bytes), never the session
            log.exception("FIX session failed on message %r", raw[:500])

    def on_batch_end(self) -> None:
        """End of one TCP read: the application flushes its records, then the target
        sequence number is persisted (in that order, so a crash re-delivers, never skips)."""
        flush = getattr(self.application, "flush", None)
        try:
            if flush is not None:
                flush()
            self.store.flush()
        except Exception:
            log.exception("FIX flush failed for %s", self.settings.session_key)

    def on_garbled(self, raw: bytes, reason: str) -> None:
        """A frame the framer could not verify: ignored, as FIX prescribes (logged with its bytes)."""
        log.warning("FIX %s garbled message ignored (%s): %r", self.settings.target_comp_id, reason, raw[:200])
        if not self.received_logon:
            self.disconnect(f"garbled message before Logon: {reason}")

    def on_timer(self) -> None:
        """Heartbeats, TestRequests and timeouts; call about every 100-250 ms."""
        if self._write is None:
            return
        now = self._monotonic()
        if not self.received_logon:
            if now - self.connected_at > self.settings.logon_timeout:
                self.disconnect("no Logon within LogonTimeout")
            return
        if self.sent_logout_at is not None:
            if now - self.sent_logout_at > self.settings.logout_timeout:
                self.disconnect("Logout not answered within LogoutTimeout")
            return
        if not self.logged_on:
            return
        silent = now - self.last_received
        if silent >= TIMEOUT_HEARTBEATS * self.heart_bt_int:
            self.disconnect(f"no message for {silent:.1f} s (HeartBtInt {self.heart_bt_int} s)")
            return
        if (self.queue and self.resend_range is not None
                and now - self._last_progress >= max(2.0 * self.heart_bt_int, RESEND_STALL_MIN_S)):
            # Held messages and no progress for two heartbeat intervals: the gap we asked
            # for did not come (or the range went stale). Ask again rather than hang.
            log.warning("FIX resend of %d-%d not progressing: requesting again", *self.resend_range)
            self.resend_range = None
            self._target_too_high(self.queue[min(self.queue)], min(self.queue))
            self._last_progress = now
        margin = 1.0 + self.settings.test_request_margin
        if silent >= margin * self.heart_bt_int * (self.test_requests + 1):
            self._send(TEST_REQUEST, [(112, b"TEST")])
            self.test_requests += 1
        elif self.test_requests == 0 and now - self.last_sent >= self.heart_bt_int:
            self._send(HEARTBEAT, [])

    def _next(self, message: FixMessage, queued: bool = False) -> None:
        self._queued = queued
        msg_type = message.msg_type
        begin_string = message.get(8)
        for tag in (49, 56):
            # Absent (not merely empty: validation reports an empty value as such).
            if tag not in message and b"\x01%d=" % tag not in message.raw:
                if msg_type == LOGON or not self.received_logon:
                    raise Disconnect(f"tag {tag} missing before logon")
                self._reject(message, 1, str(tag))
                return
        if begin_string != self._begin_string:
            if not self.received_logon:
                raise Disconnect(f"BeginString {begin_string!r} before logon")
            if msg_type == LOGOUT:
                self._next_logout(message)
            else:
                self._send_logout("Incorrect BeginString")
                self._incr_target()
            return
        if not self.received_logon and msg_type != LOGON:
            raise Disconnect(f"first message is MsgType {msg_type!r}, not a Logon")
        error = self._validation_error(message)
        if error is False:
            return  # garbled: ignored, not counted
        if error is not None:
            if msg_type == LOGON or not self.received_logon:
                raise Disconnect(f"invalid Logon: {error.text}")  # type: ignore[union-attr]
            self._reject(message, error.reason, error.tag, error.text)  # type: ignore[union-attr]
            return
        handler = self._ADMIN_HANDLERS.get(msg_type)
        if handler is not None:
            handler(self, message)
            return
        if not self._verify(message):
            return
        try:
            self.application.from_app(message, self)
        except UnsupportedMessageType:
            self._business_reject(message, 3)
            return
        except BusinessReject as exc:
            self._business_reject(message, exc.reason, exc.text, exc.ref_tag)
            return
        except FixValidationError as exc:
            self._reject(message, exc.reason, exc.tag, exc.text)
            return
        except Exception:
            # Not consumed: the number is not used up, and dropping the connection
            # makes the counterparty resend it after the next logon (QuickFIX lets such
            # an exception end the session too). A fill is never silently skipped.
            log.exception("FIX application failed on message %r", message.raw)
            raise Disconnect("application failed to process a message; it will be resent") from None
        self._incr_target()

    def _validation_error(self, message: FixMessage) -> FixValidationError | bool | None:
        """None if valid (possibly after dropping tolerated fields), the error to reject
        with, or False for a garbled message (already logged)."""
        candidate: FixMessage | None = message
        while candidate is not None:
            try:
                validate(candidate)
                return None
            except GarbledMessage as exc:
                self.on_garbled(message.raw, str(exc))
                return False
            except FixValidationError as exc:
                if candidate is not message:
                    return exc
                error = exc
                candidate = self._tolerated_fields(message, exc)
        return error

    def _tolerated_fields(self, message: FixMessage, exc: FixValidationError) -> FixMessage | None:
        """The message without the fields the settings allow an application message to carry
        unvalidated (user-defined or undefined-for-type tags), or None if nothing is tolerated."""
        s = self.settings
        if message.msg_type in ADMIN_TYPES or exc.reason not in (0, 2):
            return None
        if s.validate_user_defined_fields and not s.allow_unknown_msg_fields:
            return None
        allowed = _allowed_tags(message.msg_type or b"")
        if allowed is None:
            return None
        kept = [(t, v) for t, v in message.fields
                if t in allowed or not ((t >= 5000 and not s.validate_user_defined_fields)
                                        or (t < 5000 and s.allow_unknown_msg_fields))]
        if len(kept) == len(message.fields):
            return None
        log.info("FIX tolerated %d unvalidated field(s) in %r", len(message.fields) - len(kept), message.msg_type)
        index: dict[int, bytes] = {}
        for t, v in kept:
            index.setdefault(t, v)
        return FixMessage(message.raw, kept, index, message.errors)

    def _next_queued(self) -> None:
        """Process held messages that the last one made contiguous, in order."""
        while self.queue:
            expected = self.store.next_target_seq
            for stale in [s for s in self.queue if s < expected]:
                del self.queue[stale]
            message = self.queue.pop(expected, None)
            if message is None:
                return
            log.debug("FIX processing queued message %d", expected)
            if message.msg_type in (LOGON, RESEND_REQUEST):
                self._incr_target()
                self._clear_resend_range_at(expected)
            else:
                self._next(message, queued=True)

    # ----- verification ----------------------------------------------------
    def _verify(self, message: FixMessage, check_too_high: bool = True, check_too_low: bool = True) -> bool:
        seq = _int(message, 34)
        if seq is None:
            self._reject(message, 1, "34")
            return False
        sending = parse_utc_timestamp(message.get(52) or b"")
        # A queued message passed this check when it arrived; a long resend in front of
        # it must not turn it stale (and lose it).
        if sending is None or (not self._queued and abs(sending - self._clock()) > self.settings.max_latency):
            self._reject(message, 10)
            self._send_logout()
            return False
        if message.get(49) != self.target or message.get(56) != self.sender:
            self._reject(message, 9)
            self._send_logout()
            return False
        expected = self.store.next_target_seq
        if check_too_high and seq > expected:
            self._target_too_high(message, seq)
            return False
        if check_too_low and seq < expected:
            self._target_too_low(message, seq)
            return False
        if (check_too_high or check_too_low) and self.resend_range is not None:
            if seq >= self.resend_range[1]:
                log.info("FIX resend of %d-%d complete", *self.resend_range)
                self.resend_range = None
        self.test_requests = 0
        return True

    def _target_too_high(self, message: FixMessage, seq: int) -> None:
        expected = self.store.next_target_seq
        log.info("FIX MsgSeqNum too high, expecting %d but received %d", expected, seq)
        self.queue[seq] = message
        if self.resend_range is not None and seq >= self.resend_range[0]:
            return  # a ResendRequest covering it is already out
        self.resend_range = (expected, seq - 1)
        self._send(RESEND_REQUEST, [(7, expected), (16, 0)])

    def _target_too_low(self, message: FixMessage, seq: int) -> None:
        if message.get(43) != b"Y":
            text = f"MsgSeqNum too low, expecting {self.store.next_target_seq} but received {seq}"
            self._send_logout(text)
            raise Disconnect(text)
        if message.msg_type != SEQUENCE_RESET:
            original = message.get(122)
            if original is None:
                self._reject(message, 1, "122")
                return
            orig_time = parse_utc_timestamp(original)
            sending = parse_utc_timestamp(message.get(52) or b"")
            if orig_time is None or sending is None or orig_time > sending:
                self._reject(message, 10)
                self._send_logout()
        # A PossDup of a number already processed: ignored, never delivered twice.

    # ----- admin messages --------------------------------------------------
    def _next_logon(self, message: FixMessage) -> None:
        reset = message.get(141) == b"Y"
        self.received_reset = reset
        if reset and not self.sent_reset:
            log.info("FIX Logon has ResetSeqNumFlag=Y: sequence numbers reset to 1")
            self.store.reset()
        if self.initiator and not self.sent_logon and not reset:
            raise Disconnect("received a Logon response before sending a Logon")
        if not self.initiator and self.settings.reset_on_logon and not reset:
            self.store.reset()
        if not self._verify(message, check_too_high=False, check_too_low=True):
            if not self.received_logon:
                raise Disconnect("Logon failed verification")
            return
        try:
            self.application.from_admin(message, self)
        except RejectLogon as exc:
            self._send_logout(str(exc) or "Logon rejected")
            raise Disconnect(f"Logon rejected: {exc}") from None
        self.received_logon = True
        if not self.initiator or (self.received_reset and not self.sent_reset):
            heart_bt_int = _int(message, 108)
            if heart_bt_int is not None and heart_bt_int > 0:
                self.heart_bt_int = heart_bt_int
            self._send_logon(reply_reset=self.received_reset)
        self.sent_reset = self.received_reset = False
        seq = _int(message, 34) or 0
        if seq > self.store.next_target_seq and not reset:
            self._target_too_high(message, seq)
        else:
            self._incr_target()
        if self.logged_on:
            self.logons += 1
            log.info("FIX %s->%s logged on", self.settings.sender_comp_id, self.settings.target_comp_id)
            self._callback(self.application.on_logon, self)

    def _next_heartbeat(self, message: FixMessage) -> None:
        if self._verify(message) and self._admin(message):
            self._incr_target()

    def _next_test_request(self, message: FixMessage) -> None:
        if self._verify(message) and self._admin(message):
            self._send(HEARTBEAT, [(112, message.get(112) or b"")])
            self._incr_target()

    def _next_reject(self, message: FixMessage) -> None:
        if self._verify(message) and self._admin(message):
            log.warning("FIX counterparty rejected our message %s: %r", message.get_str(45), message.get_str(58))
            self._incr_target()

    def _next_logout(self, message: FixMessage) -> None:
        if not self._verify(message, check_too_high=False, check_too_low=False):
            return
        self._admin(message)
        if self.sent_logout_at is None:
            log.info("FIX received Logout request: %r", message.get_str(58))
            self._send_logout()
        else:
            log.info("FIX received Logout response")
        self._incr_target()
        raise Disconnect("Logout handshake complete")

    def _next_sequence_reset(self, message: FixMessage) -> None:
        gap_fill = message.get(123) == b"Y"
        if not self._verify(message, check_too_high=gap_fill, check_too_low=gap_fill):
            return
        self._admin(message)
        new_seq = _int(message, 36)
        expected = self.store.next_target_seq
        if new_seq is None:
            self._reject(message, 1, "36")
        elif new_seq > expected:
            log.info("FIX SequenceReset (%s) to %d", "GapFill" if gap_fill else "Reset", new_seq)
            self.store.set_next_target_seq(new_seq)
            self._clear_resend_range_at(new_seq - 1)
        elif new_seq < expected:
            self._reject(message, 5)

    def _next_resend_request(self, message: FixMessage) -> None:
        if not self._verify(message, check_too_high=False, check_too_low=False):
            return
        self._admin(message)
        begin = _int(message, 7) or 1
        end = _int(message, 16) or 0
        next_sender = self.store.next_sender_seq
        if end == 0 or end >= next_sender:
            end = next_sender - 1
        log.info("FIX received ResendRequest %d-%d", begin, end)
        self._answer_resend_request(begin, end, next_sender)
        seq = _int(message, 34)
        if seq == self.store.next_target_seq:
            self._incr_target()

    _ADMIN_HANDLERS: dict[bytes, Callable[["Session", FixMessage], None]] = {
        LOGON: _next_logon, HEARTBEAT: _next_heartbeat, TEST_REQUEST: _next_test_request,
        REJECT: _next_reject, LOGOUT: _next_logout, SEQUENCE_RESET: _next_sequence_reset,
        RESEND_REQUEST: _next_resend_request,
    }

    def _admin(self, message: FixMessage) -> bool:
        self._callback(self.application.from_admin, message, self)
        return True

    # ----- sequence bookkeeping (outbound messages: fix.session_replies) ----
    def _incr_target(self) -> None:
        self.store.set_next_target_seq(self.store.next_target_seq + 1)
        self._last_progress = self._monotonic()

    def _clear_resend_range_at(self, seq: int) -> None:
        """The gap we asked to be resent is filled up to ``seq``: forget it if that covers it."""
        if self.resend_range is not None and seq >= self.resend_range[1]:
            log.info("FIX resend of %d-%d complete", *self.resend_range)
            self.resend_range = None

    @staticmethod
    def _callback(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except (RejectLogon, UnsupportedMessageType, BusinessReject):
            raise
        except Exception:
            log.exception("FIX application callback %s failed", getattr(fn, "__name__", fn))
