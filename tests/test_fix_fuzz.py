"""Fuzz the FIX framer and parser: random bytes and mutated valid messages.

For any input: no exception escapes, every call returns quickly, the framer's
buffer stays bounded, every byte fed comes back in exactly one frame or is still
buffered, every frame reported good really is a verified message, and the framer
resynchronises on valid messages that follow.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fix.framing import FixFramer, Frame, checksum, frame_message
from fix.parser import FixMessage, parse

SOH = b"\x01"
MAX_SIZE = 512      # small, so the bound is exercised
CALL_LIMIT_S = 2.0  # one feed() or parse() on <= 64 KiB takes ~ms: seconds mean a hang

FUZZ = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def valid(seq: int, text: bytes = b"hello") -> bytes:
    return frame_message(b"35=8\x0134=%d\x0149=OMS\x0156=RISKD\x0152=20261120-21:00:00.000\x01"
                         b"17=E%d\x01150=F\x0131=6900.25\x0132=1\x0158=%s\x01" % (seq, seq, text))


def timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - t0
    assert elapsed < CALL_LIMIT_S, f"{fn.__name__} took {elapsed:.3f} s"
    return result


def assert_good_frame_is_verified(frame: Frame) -> None:
    """A frame reported good starts with 8=FIX, has the right BodyLength and CheckSum."""
    raw = frame.raw
    assert raw.startswith(b"8=FIX") and raw.endswith(SOH)
    cs = raw.rindex(b"\x0110=") + 1
    assert int(raw[cs + 3:-1]) == checksum(raw[:cs])
    head_end = raw.index(SOH, raw.index(b"\x019=") + 1) + 1
    assert int(raw.split(SOH)[1][2:]) == cs - head_end


def feed_all(framer: FixFramer, chunks: list[bytes]) -> list[Frame]:
    """Feed chunk by chunk, checking the invariants after every call."""
    frames: list[Frame] = []
    fed = framer.buffered  # bytes already held count as fed
    for chunk in chunks:
        out = timed(framer.feed, chunk)
        fed += len(chunk)
        assert isinstance(out, list)
        assert framer.buffered < framer.max_size  # between calls: < max_size
        frames += out
        # Conservation: every byte fed is in exactly one frame, or still buffered.
        assert sum(len(f.raw) for f in frames) + framer.buffered == fed
    for f in frames:
        assert isinstance(f.raw, bytes) and (f.reason is None or isinstance(f.reason, str))
        if not f.garbled:
            assert_good_frame_is_verified(f)
        exercise(timed(parse, f.raw))
    return frames


def exercise(msg: FixMessage) -> None:
    """Every accessor works on whatever was parsed; typed getters raise only ValueError."""
    assert isinstance(msg, FixMessage)
    msg.msg_type
    repr(msg)
    for tag, value in msg.fields[:64]:
        assert isinstance(tag, int) and tag > 0 and value
        assert msg.get(tag) is not None and msg.count(tag) >= 1
        msg.get_str(tag)
        for getter in (msg.get_int, msg.get_float):
            try:
                getter(tag)
            except ValueError:
                pass
    for err in msg.errors:
        assert 0 <= err.position <= len(msg.raw)
        assert err.session_reject_reason in (None, 0, 4)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        chunks.append(data[pos:pos + size])
        pos += size
        i += 1
    return chunks


def resynchronises(framer: FixFramer) -> None:
    """After anything, enough valid messages are framed again."""
    tail = SOH + b"".join(valid(1000 + i) for i in range(MAX_SIZE // 100 + 4))
    frames = feed_all(framer, [tail])
    assert frames[-1] == Frame(valid(1000 + MAX_SIZE // 100 + 3))


# ------------------------------------------------------------------------ random bytes

_noise = st.binary(max_size=3000)
_fixish = st.lists(st.sampled_from([b"8=FIX.4.4\x01", b"9=", b"10=", b"\x01", b"=", b"8=FIX", b"9=12\x01",
                                    b"35=8\x01", b"0", b"99999999999", b"A" * 40, b"\x0110=000\x01",
                                    b"-", b"+", b"1.5", b"nan", b"7" * 4400, b"\xff"]),
                   max_size=200).map(b"".join)


@FUZZ
@given(st.one_of(_noise, _fixish), st.lists(st.integers(1, 700), max_size=8))
def test_random_bytes(data: bytes, sizes: list[int]) -> None:
    framer = FixFramer(max_size=MAX_SIZE)
    feed_all(framer, chunked(data, sizes))
    exercise(timed(parse, data))
    resynchronises(framer)


# -------------------------------------------------------------- mutated valid messages

@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    msgs = [valid(i, draw(st.sampled_from([b"x", b"a=b", b"long" * 30]))) for i in range(draw(st.integers(1, 6)))]
    data = bytearray(b"".join(msgs))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup_soh", "body_length", "soh_flip",
                                     "splice"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 30))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "dup_soh":
            soh = data.find(SOH, pos)
            if soh >= 0:
                data[soh:soh] = SOH * draw(st.integers(1, 3))
        elif kind == "body_length":
            at = data.find(b"\x019=", pos)
            if at >= 0:
                end = data.find(SOH, at + 3)
                if end >= 0:
                    value = draw(st.sampled_from([b"0", b"1", b"99999999", b"999999999999999999999", b"-5",
                                                  b"", b"400", b"1000000"]))
                    data[at + 3:end] = value
        elif kind == "soh_flip" and data:
            data[pos] = 1
        elif kind == "splice":
            data[pos:pos] = b"\x018=FIX.4.4\x019=" + str(draw(st.integers(0, 2000))).encode() + SOH
    return bytes(data)


@FUZZ
@given(mutated_stream(), st.lists(st.integers(1, 300), max_size=8))
def test_mutated_messages(data: bytes, sizes: list[int]) -> None:
    framer = FixFramer(max_size=MAX_SIZE)
    feed_all(framer, chunked(data, sizes))
    for part in data.split(b"8=FIX"):
        exercise(timed(parse, b"8=FIX" + part))
    resynchronises(framer)


@FUZZ
@given(mutated_stream())
def test_mutated_messages_byte_by_byte(data: bytes) -> None:
    framer = FixFramer(max_size=MAX_SIZE)
    feed_all(framer, [data[i:i + 1] for i in range(len(data))])
    resynchronises(framer)


def test_slow_loris_stays_linear_and_bounded() -> None:
    # A plausible header, then a megabyte without a CheckSum field, one small read
    # at a time: each call stays fast and the buffer stays under max_size.
    framer = FixFramer()  # default 1 MiB
    framer.feed(b"8=FIX.4.4\x019=1000000\x0135=8\x0158=")
    t0 = time.perf_counter()
    chunk = b"A" * 1000
    for _ in range(1100):
        timed(framer.feed, chunk)
        assert framer.buffered < framer.max_size
    assert time.perf_counter() - t0 < 5.0
    # Many candidate starts sharing one distant, broken CheckSum field.
    framer = FixFramer()
    starts = b"\x018=FIX.4.4\x019=1\x0135=8\x01" * 3000
    frames = timed(framer.feed, b"x" + starts + b"\x0110=" + b"9" * 40)
    assert all(f.garbled for f in frames)
