"""Stream framing for a FIX 4.4 TCP connection, plus helpers to build outbound frames.

`FixFramer` cuts a TCP byte stream into FIX messages the way QuickFIX's C++
``Parser::readFixMessage`` does, and then applies the garbled-message checks that
QuickFIX performs when it turns the frame into a message (BodyLength and CheckSum):

1. A message starts at ``8=FIX`` at the start of the stream / right after the
   previous frame, or right after an SOH.  Bytes before it are discarded and
   reported as a garbled frame.
2. The second field must be ``9=<digits>`` (BodyLength).  If it is not, the bytes up
   to the next ``<SOH>8=FIX`` are discarded (garbled).
3. The end of the message is found by searching for ``<SOH>10=`` starting at
   ``end of the 9= field + BodyLength - 1`` and then the SOH after it.  A BodyLength
   that is too long therefore swallows the following message(s) and one that is too
   short still ends at the message's own CheckSum field, exactly as in QuickFIX.
4. The frame is verified: the actual body length must equal BodyLength and the
   CheckSum must match; otherwise the complete frame is reported as garbled (the
   session logs and ignores it, as FIX prescribes for garbled messages).

Deviations from QuickFIX (all only reachable with garbled input), chosen so that
memory and time stay bounded for any input:

* A configurable maximum frame size (default 1 MiB).  A frame that cannot fit
  (declared BodyLength too large, or no CheckSum field within the window) is
  reported as garbled at once instead of buffering without limit.
* The BeginString field must end within 32 bytes, the BodyLength value within 20
  digits, and the CheckSum value within 32 bytes; QuickFIX would wait for more data.

The framer never raises from `feed`; every byte fed is either returned in exactly
one frame (good or garbled) or still buffered.
"""

from __future__ import annotations

from typing import NamedTuple
from zlib import adler32

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Frame",
    "FixFramer",
    "checksum",
    "frame_message",
]

SOH = b"\x01"
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20  # bytes

_BEGIN = b"8=FIX"          # every FIX BeginString (FIX.4.x, FIXT.1.1) starts so
_START = b"\x018=FIX"      # a message start inside the stream: right after an SOH
_MARKER = b"\x0110="       # the CheckSum field, as QuickFIX searches for it
_MAX_BEGIN_FIELD = 32      # bytes from "8=" to its SOH; "8=FIXT.1.1<SOH>" is 11
_MAX_LENGTH_DIGITS = 20    # digits of the BodyLength value
_MAX_CHECKSUM_VALUE = 32   # bytes of the CheckSum value before its SOH (3 when valid)
_ADLER_CHUNK = 256         # 256 * 255 + 1 < 65521: adler32's A sum never wraps


class Frame(NamedTuple):
    """One unit of output from `FixFramer.feed`.

    ``reason is None``: ``raw`` is one complete, verified message, from ``8=`` through
    the SOH that ends the CheckSum field.

    ``reason`` set: ``raw`` holds bytes the framer discarded (garbage between
    messages, a message with a bad header, or a complete frame whose BodyLength or
    CheckSum is wrong) and ``reason`` says why, for the session's log.
    """

    raw: bytes
    reason: str | None = None

    @property
    def garbled(self) -> bool:
        """True when this frame is a garbled-frame event, not a message."""
        return self.reason is not None


def _byte_sum(data: bytes | bytearray | memoryview) -> int:
    """Sum of all bytes of ``data`` (unbounded integer).

    Uses zlib.adler32 on 256-byte chunks: its A term is 1 + sum(bytes) mod 65521,
    which cannot wrap for 256 bytes, so each chunk's sum is exact.  This runs in C
    and is ~5x faster than ``sum(data)`` (a Python-level iteration per byte).
    """
    mv = memoryview(data)
    n = len(mv)
    if n <= _ADLER_CHUNK:
        return (adler32(mv) & 0xFFFF) - 1
    total = 0
    for i in range(0, n, _ADLER_CHUNK):
        total += (adler32(mv[i:i + _ADLER_CHUNK]) & 0xFFFF) - 1
    return total


def checksum(data: bytes | bytearray | memoryview) -> int:
    """FIX CheckSum (tag 10) of ``data``: the sum of its bytes modulo 256.

    ``data`` is everything before ``10=``, i.e. from ``8=`` up to and including the
    SOH that ends the last body field.
    """
    return _byte_sum(data) & 0xFF


def frame_message(body_fields: bytes, begin_string: bytes = b"FIX.4.4") -> bytes:
    """Wrap an encoded body in BeginString, BodyLength and CheckSum fields.

    ``body_fields`` are the already-encoded fields from ``35=`` on, each ending in
    SOH.  Returns the complete wire message (bytes).  Raises ValueError when the body
    is empty or does not end in SOH (a programming error on the outbound path).
    """
    if not body_fields or body_fields[-1] != 1:
        raise ValueError("body_fields must be non-empty and end with SOH")
    head = b"8=" + begin_string + b"\x019=" + str(len(body_fields)).encode() + SOH
    msg = head + body_fields
    return msg + b"10=%03d\x01" % checksum(msg)


class FixFramer:
    """Incremental FIX framer for one TCP connection (QuickFIX framing rules).

    Feed it whatever each socket read returned; it returns the frames completed so
    far and keeps the incomplete tail.  Create a new framer (or call `reset`) for a
    new connection.

    Memory: the internal buffer holds less than ``max_size`` bytes between calls, and
    at most ``max_size`` + one read during a call.
    """

    __slots__ = ("max_size", "_buf", "_at_boundary", "_m_lo", "_m_at", "_m_hi")

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """``max_size``: largest frame accepted, in bytes (>= 64)."""
        if max_size < 64:
            raise ValueError("max_size must be at least 64 bytes")
        self.max_size = int(max_size)
        self._buf = bytearray()
        # Whether position 0 of the buffer may start a message: true at the start
        # of the stream, after a frame, and after a discarded SOH.
        self._at_boundary = True
        self._memo_reset()

    # ------------------------------------------------------------------ public

    @property
    def buffered(self) -> int:
        """Bytes held in the internal buffer (an incomplete frame or its prefix)."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget everything buffered (for a new connection)."""
        self._buf = bytearray()
        self._at_boundary = True
        self._memo_reset()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add ``data`` (one socket read) and return the frames it completed.

        Returns good messages and garbled-frame events in stream order.  Never
        raises: any unexpected internal failure discards the buffer and is
        reported as one garbled frame.
        """
        out: list[Frame] = []
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                return [Frame(b"", f"feed() expects bytes, got {type(data).__name__}")]
            try:
                data = bytes(data)
            except Exception as exc:  # e.g. a released memoryview
                return [Frame(b"", f"unreadable input: {exc!r}")]
        if not data:
            return out
        buf = self._buf
        work: bytes | bytearray
        try:
            if buf:
                buf += data
                work = buf
            else:
                # Common case (no partial message pending): work on the read itself
                # so frames are sliced out with a single copy.
                work = data
            p = self._scan(work, out)
            if work is buf:
                del buf[:p]
            elif p < len(work):
                buf += memoryview(work)[p:]
            self._memo_shift(p)
        except Exception as exc:  # defence in depth: feed() must never raise
            raw = bytes(buf) if buf else data
            self._buf = bytearray()
            self._at_boundary = raw.endswith(SOH)
            self._memo_reset()
            return [Frame(raw, f"internal framer error: {exc!r}")]
        return out

    # ----------------------------------------------------------------- scanning

    def _scan(self, work: bytes | bytearray, out: list[Frame]) -> int:
        """Emit every frame that is complete in ``work``; return bytes consumed."""
        n = len(work)
        p = 0
        max_size = self.max_size
        at_boundary = self._at_boundary
        find = work.find
        startswith = work.startswith
        append = out.append
        while p < n:
            # -- 1. a message start: "8=FIX" where a message may begin.
            if not (at_boundary and startswith(_BEGIN, p)):
                if at_boundary and n - p < 5 and _BEGIN.startswith(work[p:n]):
                    break  # could still become "8=FIX": wait for more bytes
                p, at_boundary = self._discard(work, p, p, n, "garbage before BeginString (8=FIX)", out)
                continue

            # -- 2. BeginString field, then BodyLength must be the second field.
            s1 = find(SOH, p + 5, p + _MAX_BEGIN_FIELD)
            if s1 < 0:
                if n - p < _MAX_BEGIN_FIELD:
                    break
                p, at_boundary = self._discard(work, p, p, n, "BeginString (8) not terminated by SOH", out)
                continue
            h = s1 + 1
            if not startswith(b"9=", h):
                if n - h < 2 and b"9=".startswith(work[h:n]):
                    break
                p, at_boundary = self._discard(work, p, p, n, "BodyLength (9) is not the second field", out)
                continue
            s2 = find(SOH, h + 2, h + 3 + _MAX_LENGTH_DIGITS)
            if s2 < 0:
                part = work[h + 2:n]
                if n - (h + 2) <= _MAX_LENGTH_DIGITS and (not part or part.isdigit()):
                    break
                p, at_boundary = self._discard(work, p, p, n, "invalid BodyLength (9) value", out)
                continue
            length_value = work[h + 2:s2]
            if not length_value.isdigit():  # ASCII digits only; rejects "", "+5", "-5"
                p, at_boundary = self._discard(
                    work, p, p, n, f"invalid BodyLength (9) value {bytes(length_value)!r}", out)
                continue
            body_length = int(length_value)
            body = s2 + 1
            # The shortest frame this header allows ends at body + L + 4
            # ("<SOH>10=<SOH>" found at body + L - 1); if even that is too big,
            # no complete message can fit: report now rather than buffer.
            if body + body_length + 4 - p > max_size:
                p, at_boundary = self._discard(
                    work, p, p, n, f"BodyLength {body_length} exceeds the maximum message size {max_size}", out)
                continue
            need = body + body_length
            if n < need:
                break  # QuickFIX: wait until BodyLength bytes have arrived

            # -- 3. the CheckSum field, searched from body + L - 1 (QuickFIX).
            window_end = p + max_size
            r = self._marker(work, need - 1, n)
            if r < 0 or r + 5 > window_end:
                if r >= 0 or n >= window_end:
                    # The frame would be longer than max_size.  QuickFIX would
                    # consume at least the whole window (up to that CheckSum field)
                    # as one frame: discard as much, then look for the next start.
                    cut = r + 1 if r >= 0 else window_end - 6
                    p, at_boundary = self._discard(
                        work, p, cut, n, f"no CheckSum (10) field within the maximum message size {max_size}", out)
                    continue
                break
            value_end = min(r + 4 + _MAX_CHECKSUM_VALUE, window_end)
            e = find(SOH, r + 4, value_end)
            if e < 0:
                if n >= value_end:
                    p, at_boundary = self._discard(work, p, r + 1, n, "CheckSum (10) field not terminated", out)
                    continue
                break
            end = e + 1
            frame = work[p:end]
            if type(frame) is not bytes:
                frame = bytes(frame)
            cs_len = r + 1 - p  # bytes of the frame before "10="
            p = end
            at_boundary = True

            # -- 4. verify, as QuickFIX does when it builds the message.
            actual = r + 1 - body
            if actual != body_length:
                append(Frame(frame, f"BodyLength mismatch: declared {body_length}, actual {actual}"))
                continue
            declared = frame[cs_len + 3:-1]
            computed = checksum(memoryview(frame)[:cs_len])
            if len(declared) == 3 and declared.isdigit() and int(declared) == computed:
                append(Frame(frame))
            else:
                shown = declared.decode("ascii", "backslashreplace")
                append(Frame(frame, f"CheckSum mismatch: declared {shown}, computed {computed:03d}"))
        self._at_boundary = at_boundary
        return p

    @staticmethod
    def _discard(work: bytes | bytearray, p: int, search_from: int, n: int, reason: str,
                 out: list[Frame]) -> tuple[int, bool]:
        """Discard from ``p`` up to the next message start at or after ``search_from``.

        A message start is ``8=FIX`` right after an SOH.  If none is buffered yet,
        everything is discarded except a trailing SOH-plus-prefix of ``8=FIX`` that
        could still become one.  Returns the new position and whether a message may
        begin there.
        """
        q = work.find(_START, search_from, n)
        if q >= 0:
            out.append(Frame(bytes(work[p:q + 1]), reason))
            return q + 1, True
        keep = n
        k = work.rfind(SOH, max(p, search_from, n - len(_START)), n)
        if k >= 0 and _BEGIN.startswith(work[k + 1:n]):
            keep = k + 1
        out.append(Frame(bytes(work[p:keep]), reason))
        return keep, work[keep - 1] == 1

    # ------------------------------------------------------ CheckSum search memo
    #
    # Finding "<SOH>10=" is the only search that can rescan the same bytes: while a
    # message waits for its tail, or when many candidate starts share one distant
    # marker (garbled input).  A one-interval memo keeps the work linear: no marker
    # starts in [_m_lo, _m_at) when _m_at >= 0; none in [_m_lo, _m_hi - 3) when
    # _m_at < 0 (searched up to _m_hi, so the last 3 bytes may start a partial one).

    def _memo_reset(self) -> None:
        self._m_lo, self._m_at, self._m_hi = 0, -1, 3

    def _memo_shift(self, p: int) -> None:
        """Re-base the memo after ``p`` bytes left the front of the buffer."""
        if not p:
            return
        at = self._m_at
        if at >= 0:
            at -= p
            if at < 0:  # the marker was consumed
                self._memo_reset()
                return
        self._m_lo = max(self._m_lo - p, 0)
        self._m_at = at
        self._m_hi = max(self._m_hi - p, 3) if at < 0 else self._m_hi - p

    def _marker(self, work: bytes | bytearray, x: int, n: int) -> int:
        """Index of the first ``<SOH>10=`` starting at or after ``x`` in work[:n], or -1."""
        lo, at, hi = self._m_lo, self._m_at, self._m_hi
        if x < lo:
            r = work.find(_MARKER, x, min(lo + 3, n))
            if r >= 0:
                self._m_lo, self._m_at = x, r
                return r
            lo = x  # [x, lo) is empty too: extend the certified interval
        if at >= 0:
            if at >= x:
                self._m_lo = lo
                return at
            lo = x
            r = work.find(_MARKER, x, n)
        else:
            start = hi - 3
            if x > start:
                lo = start = x
            r = work.find(_MARKER, start, n)
        self._m_lo, self._m_at, self._m_hi = lo, r, n
        return r
