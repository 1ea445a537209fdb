"""Fast FIX framer and parser against simplefix (the oracle) and QuickFIX framing rules.

Property tests: more than 10,000 generated FIX 4.4 messages (a seeded loop of 10,000
plus the hypothesis examples), with repeating groups (NoPartyIDs, NoMiscFees),
values containing '=', binary values and long values.  Each must parse to exactly
the pairs simplefix reads, and streams of them must frame back to the original
messages however the TCP reads split them.
"""

from __future__ import annotations

import random

import pytest
import simplefix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simplefix.data import RAW_DATA_TAGS, RAW_LEN_TAGS

from fix.framing import DEFAULT_MAX_MESSAGE_SIZE, FixFramer, Frame, checksum, frame_message
from fix.parser import (EMPTY_TAG, EMPTY_VALUE, INVALID_TAG, MISSING_EQUALS, NON_NUMERIC_TAG, UNTERMINATED_FIELD,
                        FixMessage, parse)

SOH = b"\x01"

# Tags a generated body may use: not the ones simplefix.encode() places itself
# (8, 9, 35, 10), not raw-data length/data tags (simplefix reads those by length,
# the fast parser deliberately does not), not the group tags used below.
_GROUP_TAGS = {453, 448, 447, 452, 136, 137, 138, 139}
BODY_TAGS = [t for t in range(1, 1000)
             if t not in (8, 9, 10, 35) and t not in RAW_LEN_TAGS and t not in RAW_DATA_TAGS
             and t not in _GROUP_TAGS] + [5001, 7777, 9999, 20001]
MSG_TYPES = [b"8", b"D", b"0", b"AE", b"3", b"F", b"G"]
_TEXT = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz0123456789=.-:/ _+"


# --------------------------------------------------------------------------- generators

def _no_soh(b: bytes) -> bytes:
    return b.replace(SOH, b"\x02")


def random_value(rng: random.Random) -> bytes:
    """A non-empty FIX value: text, text with '=', binary (no SOH) or long."""
    kind = rng.random()
    if kind < 0.6:
        return bytes(rng.choice(_TEXT) for _ in range(rng.randint(1, 16)))
    if kind < 0.75:
        return b"=" + bytes(rng.choice(_TEXT) for _ in range(rng.randint(0, 8))) + b"=="
    if kind < 0.95:
        return _no_soh(rng.randbytes(rng.randint(1, 24))) or b"x"
    return bytes(rng.choice(_TEXT) for _ in range(rng.randint(200, 1500)))


def random_pairs(rng: random.Random) -> list[tuple[int, bytes]]:
    """Header and body pairs (without 8, 9, 10) of a plausible FIX 4.4 message."""
    pairs: list[tuple[int, bytes]] = [(35, rng.choice(MSG_TYPES)), (34, str(rng.randint(1, 10**7)).encode()),
                                      (49, b"OMS"), (56, b"RISKD"), (52, b"20261120-21:00:00.%03d" % rng.randint(0, 999))]
    for _ in range(rng.randint(0, 40)):
        r = rng.random()
        if r < 0.08:
            n = rng.randint(1, 4)  # NoPartyIDs group
            pairs.append((453, str(n).encode()))
            for _ in range(n):
                pairs += [(448, random_value(rng)), (447, rng.choice([b"D", b"C", b"P"])),
                          (452, str(rng.randint(1, 99)).encode())]
        elif r < 0.12:
            n = rng.randint(1, 3)  # NoMiscFees group
            pairs.append((136, str(n).encode()))
            for _ in range(n):
                pairs += [(137, b"%d.%02d" % (rng.randint(0, 999), rng.randint(0, 99))), (138, b"USD"),
                          (139, str(rng.randint(1, 14)).encode())]
        else:
            pairs.append((rng.choice(BODY_TAGS), random_value(rng)))
    return pairs


def encode_with_simplefix(pairs: list[tuple[int, bytes]]) -> bytes:
    msg = simplefix.FixMessage()
    msg.append_pair(8, b"FIX.4.4", header=True)
    for tag, value in pairs:
        msg.append_pair(tag, value)
    return msg.encode()


def simplefix_pairs(raw: bytes) -> list[tuple[int, bytes]]:
    parser = simplefix.FixParser()
    parser.append_buffer(raw)
    msg = parser.get_message()
    assert msg is not None
    assert parser.get_message() is None
    return [(int(tag), value) for tag, value in msg.pairs]


def frame_all(framer: FixFramer, chunks: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def check_against_simplefix(raw: bytes, pairs: list[tuple[int, bytes]]) -> FixMessage:
    expected = simplefix_pairs(raw)
    msg = parse(raw)
    assert msg.errors == []
    assert msg.fields == expected
    # Wire order as built: 8, 9, then the pairs in order (35 first), then 10.
    assert [t for t, _ in msg.fields] == [8, 9] + [t for t, _ in pairs] + [10]
    assert msg.msg_type == pairs[0][1]
    for tag in {t for t, _ in expected}:
        first = next(v for t, v in expected if t == tag)
        assert msg.get(tag) == first
        assert msg.count(tag) == sum(1 for t, _ in expected if t == tag)
    return msg


# ------------------------------------------------------------------- property tests

N_SEEDED = 10_000


def test_seeded_10000_messages_parse_like_simplefix_and_frame_back() -> None:
    rng = random.Random(20261120)
    raws = []
    for _ in range(N_SEEDED):
        pairs = random_pairs(rng)
        raw = encode_with_simplefix(pairs)
        check_against_simplefix(raw, pairs)
        raws.append(raw)
    # The whole stream, cut into random reads of 1 byte to 8 KiB.
    stream = b"".join(raws)
    cuts, pos = [], 0
    while pos < len(stream):
        pos += rng.choice([1, 2, 3, 7, 64, 512, 1460, 4096, 8192])
        cuts.append(pos)
    framer = FixFramer()
    frames = frame_all(framer, split_at(stream, cuts))
    assert [f.reason for f in frames if f.garbled] == []
    assert [f.raw for f in frames] == raws
    assert framer.buffered == 0


_value = st.one_of(
    st.binary(min_size=1, max_size=24).map(_no_soh),
    st.text(alphabet="ABCxyz0129=.-: ", min_size=1, max_size=20).map(str.encode),
    st.binary(min_size=300, max_size=2000).map(_no_soh),
)
_field = st.tuples(st.sampled_from(BODY_TAGS), _value).map(lambda tv: [tv])
_parties = st.lists(st.tuples(_value, st.sampled_from([b"D", b"C"]), st.integers(1, 99)), min_size=1, max_size=4).map(
    lambda g: [(453, str(len(g)).encode())] + [p for a, b, c in g for p in ((448, a), (447, b), (452, str(c).encode()))])
_fees = st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 14)), min_size=1, max_size=3).map(
    lambda g: [(136, str(len(g)).encode())] + [p for a, c in g for p in ((137, str(a).encode()), (138, b"EUR"),
                                                                         (139, str(c).encode()))])


@st.composite
def fix_pairs(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    header = [(35, draw(st.sampled_from(MSG_TYPES))), (34, str(draw(st.integers(1, 10**9))).encode()),
              (49, draw(_value)), (56, b"RISKD"), (52, b"20261120-21:00:00.123")]
    segments = draw(st.lists(st.one_of(_field, _field, _field, _parties, _fees), max_size=30))
    return header + [p for seg in segments for p in seg]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(fix_pairs(), min_size=1, max_size=5), st.lists(st.integers(0, 20000), max_size=12))
def test_hypothesis_messages_parse_like_simplefix_and_survive_any_split(
        messages: list[list[tuple[int, bytes]]], cut_points: list[int]) -> None:
    raws = [encode_with_simplefix(pairs) for pairs in messages]
    for raw, pairs in zip(raws, messages):
        check_against_simplefix(raw, pairs)
    stream = b"".join(raws)
    cuts = [c % (len(stream) + 1) for c in cut_points]
    framer = FixFramer()
    frames = frame_all(framer, split_at(stream, cuts))
    assert frames == [Frame(raw) for raw in raws]
    assert framer.buffered == 0


def test_every_split_point_and_byte_by_byte() -> None:
    rng = random.Random(7)
    for _ in range(12):
        raws = [encode_with_simplefix(random_pairs(rng)) for _ in range(3)]
        raws = [r for r in raws if len(r) < 3000] or raws[:1]
        stream = b"".join(raws)
        expected = [Frame(r) for r in raws]
        # One read boundary at every possible position.
        for i in range(len(stream) + 1):
            framer = FixFramer()
            assert frame_all(framer, [stream[:i], stream[i:]]) == expected, i
            assert framer.buffered == 0
        # Every position at once: one byte per read.
        framer = FixFramer()
        assert frame_all(framer, [stream[i:i + 1] for i in range(len(stream))]) == expected
        # Random multi-splits.
        for _ in range(20):
            cuts = rng.sample(range(1, len(stream)), k=min(len(stream) - 1, rng.randint(1, 30)))
            assert frame_all(FixFramer(), split_at(stream, cuts)) == expected


# ------------------------------------------------------------------------ framer units

def msg(seq: int, extra: bytes = b"") -> bytes:
    return frame_message(b"35=0\x0134=%d\x0149=TW44\x0152=20261120-21:00:00\x0156=ISLD\x01" % seq + extra)


def body_length(raw: bytes) -> int:
    """The BodyLength value of a correctly built message."""
    return int(raw.split(SOH)[1][2:])


def with_body_length(raw: bytes, length: int) -> bytes:
    """Rewrite the 9= value of ``raw`` (the CheckSum is recomputed, as a sender would)."""
    start = raw.index(b"\x019=") + 3
    end = raw.index(SOH, start)
    body = raw[:start] + str(length).encode() + raw[end:raw.rindex(b"10=")]
    return body + b"10=%03d\x01" % checksum(body)


def test_frame_message_matches_simplefix_and_checksum() -> None:
    raw = frame_message(b"35=D\x0111=ID\x0155=INTC\x01")
    sf = simplefix.FixMessage()
    sf.append_pair(8, "FIX.4.4")
    sf.append_pair(35, "D")
    sf.append_pair(11, "ID")
    sf.append_pair(55, "INTC")
    assert raw == sf.encode()
    assert checksum(raw[:raw.rindex(b"10=")]) == int(raw[-4:-1])
    assert checksum(b"") == 0 and checksum(b"\xff" * 1000) == (255 * 1000) % 256
    assert frame_message(b"35=0\x01", b"FIXT.1.1").startswith(b"8=FIXT.1.1\x019=5\x01")
    with pytest.raises(ValueError):
        frame_message(b"35=0")


def test_bad_checksum_is_garbled_and_the_next_message_is_read() -> None:
    good = msg(2)
    bad = good[:-4] + (b"%03d" % ((int(good[-4:-1]) + 1) % 256)) + SOH
    frames = FixFramer().feed(bad + msg(3))
    assert frames[0] == Frame(bad, f"CheckSum mismatch: declared {int(bad[-4:-1]):03d}, computed {good[-4:-1].decode()}")
    assert frames[1:] == [Frame(msg(3))]
    # QuickFIX acceptance test 3b: "10=256" can never match.
    bad256 = good[:-4] + b"256\x01"
    assert FixFramer().feed(bad256)[0].reason == f"CheckSum mismatch: declared 256, computed {good[-4:-1].decode()}"
    # A CheckSum value that is not three digits ("10=0", as in acceptance test 2d).
    short = good[:-4] + b"0\x01"
    assert FixFramer().feed(short)[0].reason.startswith("CheckSum mismatch: declared 0, computed ")


def test_too_short_body_length_ends_at_its_own_checksum() -> None:
    good = msg(2)
    actual = body_length(good)
    short = with_body_length(good, 30)
    frames = FixFramer().feed(short + msg(3))
    assert frames == [Frame(short, f"BodyLength mismatch: declared 30, actual {actual}"), Frame(msg(3))]


def test_too_long_body_length_swallows_the_next_message_then_resynchronises() -> None:
    # QuickFIX acceptance test 2m: a BodyLength 10 too long makes the search for
    # <SOH>10= start past the message's own CheckSum field, so the frame runs to the
    # next message's CheckSum: both messages are lost as one garbled frame.
    long = with_body_length(msg(4), body_length(msg(4)) + 10)
    stream = long + msg(5) + msg(6)
    for chunks in ([stream], [stream[i:i + 1] for i in range(len(stream))]):
        frames = frame_all(FixFramer(), chunks)
        assert len(frames) == 2
        assert frames[0].raw == long + msg(5)
        assert frames[0].reason.startswith("BodyLength mismatch: declared ")
        assert frames[1] == Frame(msg(6))


def test_garbage_before_begin_string_is_reported_then_skipped() -> None:
    frames = FixFramer().feed(b"\r\nnoise\x01" + msg(2))
    assert frames == [Frame(b"\r\nnoise\x01", "garbage before BeginString (8=FIX)"), Frame(msg(2))]
    # "8=FIX" not at a message boundary nor after SOH is not a message start.
    framer = FixFramer()
    frames = framer.feed(b"xx" + msg(2) + msg(3))
    assert frames[0] == Frame(b"xx" + msg(2), "garbage before BeginString (8=FIX)")
    assert frames[1:] == [Frame(msg(3))]
    # Garbage arriving alone is reported without waiting; a partial start is kept.
    framer = FixFramer()
    assert framer.feed(b"abc\x018=FI") == [Frame(b"abc\x01", "garbage before BeginString (8=FIX)")]
    assert framer.buffered == 4
    assert framer.feed(msg(2)[4:]) == [Frame(msg(2))]


def test_body_length_not_second_field() -> None:
    no9 = b"8=FIX.4.4\x0134=3\x0135=0\x0149=TW44\x0110=000\x01"
    frames = FixFramer().feed(no9 + msg(3))
    assert frames == [Frame(no9, "BodyLength (9) is not the second field"), Frame(msg(3))]
    bad_value = b"8=FIX.4.4\x019=12a\x0135=0\x0110=000\x01"
    frames = FixFramer().feed(bad_value + msg(3))
    assert frames[0].garbled and frames[0].raw == bad_value and "BodyLength" in frames[0].reason
    assert frames[1:] == [Frame(msg(3))]


def test_message_with_msg_type_before_begin_string() -> None:
    # QuickFIX acceptance test 2t: "35=0<SOH>8=FIX.4.4<SOH>9=..": the leading field is
    # garbage; what follows the SOH is framed (and here, rejected on its checksum).
    body = b"34=2\x0149=TW44\x0152=20261120-21:00:00\x0156=ISLD\x01"
    inner = b"8=FIX.4.4\x019=%d\x01" % len(body) + body + b"10=121\x01"
    frames = FixFramer().feed(b"35=0\x01" + inner + msg(2))
    assert frames[0] == Frame(b"35=0\x01", "garbage before BeginString (8=FIX)")
    assert frames[1].raw == inner and frames[1].reason.startswith("CheckSum mismatch: declared 121")
    assert frames[2] == Frame(msg(2))
    # With a correct checksum the message after the garbage is delivered.
    frames = FixFramer().feed(b"35=0\x01" + msg(7))
    assert frames == [Frame(b"35=0\x01", "garbage before BeginString (8=FIX)"), Frame(msg(7))]


def test_max_size_bound() -> None:
    framer = FixFramer(max_size=1024)
    # A BodyLength that cannot fit is reported at once, not buffered.
    huge = b"8=FIX.4.4\x019=99999999\x0135=0\x01"
    frames = framer.feed(huge)
    assert frames == [Frame(huge, "BodyLength 99999999 exceeds the maximum message size 1024")]
    assert framer.buffered == 0
    assert framer.feed(msg(2)) == [Frame(msg(2))]
    # A plausible BodyLength but no CheckSum field ever: bounded, then resynchronised.
    framer = FixFramer(max_size=1024)
    endless = b"8=FIX.4.4\x019=100\x0135=0\x01" + b"58=" + b"A" * 50_000
    frames = []
    for i in range(0, len(endless), 700):
        frames += framer.feed(endless[i:i + 700])
        assert framer.buffered < 1024
    assert frames and all(f.garbled for f in frames)
    frames = framer.feed(SOH + msg(2) + msg(3))
    assert Frame(msg(3)) in frames
    assert sum(len(f.raw) for f in frames) + framer.buffered == len(SOH + msg(2) + msg(3))
    # A legitimate message larger than max_size is refused, the next one accepted.
    big = msg(9, b"58=" + b"B" * 2000 + SOH)
    framer = FixFramer(max_size=1024)
    frames = framer.feed(big + msg(10))
    assert frames[0].garbled and frames[-1] == Frame(msg(10))
    assert DEFAULT_MAX_MESSAGE_SIZE == 1 << 20 and FixFramer().max_size == 1 << 20


def test_feed_never_raises_on_wrong_types() -> None:
    framer = FixFramer()
    assert framer.feed("8=FIX.4.4")[0].garbled  # type: ignore[arg-type]
    assert framer.feed(None)[0].garbled  # type: ignore[arg-type]
    assert framer.feed(b"") == []
    assert framer.feed(bytearray(msg(2))) == [Frame(msg(2))]
    assert framer.feed(memoryview(msg(3))) == [Frame(msg(3))]
    with pytest.raises(ValueError):
        FixFramer(max_size=10)


def test_reset_forgets_the_partial_message() -> None:
    framer = FixFramer()
    framer.feed(msg(2)[:20])
    assert framer.buffered == 20
    framer.reset()
    assert framer.buffered == 0
    assert framer.feed(msg(3)) == [Frame(msg(3))]


# ------------------------------------------------------------------------ parser units

def test_parser_on_a_drop_copy_execution_report() -> None:
    body = (b"35=8\x0134=12\x0149=OMS\x0156=RISKD\x0152=20261120-21:00:00.123\x0137=O1\x0111=C1\x0117=E1\x01"
            b"150=F\x0139=2\x0155=ESZ6\x0154=1\x0138=10\x0144=6900.25\x0132=10\x0131=6900.25\x01151=0\x01"
            b"14=10\x016=6900.25\x01453=2\x01448=ACCT1\x01447=D\x01452=3\x01448=BRK\x01447=D\x01452=1\x0158=a=b\x01")
    m = parse(frame_message(body))
    assert m.errors == []
    assert m.msg_type == b"8"
    assert m.get(448) == b"ACCT1" and m.get_all(448) == [b"ACCT1", b"BRK"] and m.count(448) == 2
    assert m.get(58) == b"a=b"
    assert m.get_int(34) == 12 and m.get_float(31) == 6900.25 and m.get_str(55) == "ESZ6"
    assert m.get(9999) is None and m.get(9999, b"x") == b"x" and m.get_int(9999, -1) == -1
    assert m.get_float(9999) is None and m.get_str(9999, "") == ""
    assert 150 in m and 151 in m and 9999 not in m
    assert len(m) == len(m.fields) == len(list(m))
    assert m.fields[0] == (8, b"FIX.4.4") and m.fields[-1][0] == 10


def test_parser_value_formats_are_strict() -> None:
    m = parse(frame_message(b"35=D\x0138=+200.00\x0144=1e5\x0145=nan\x0146=-1.5\x0147=.5\x0148=7.\x01"
                            b"49=-12\x0150=+1\x0151=1_000\x01"))
    for tag in (38, 44, 45):
        with pytest.raises(ValueError):
            m.get_float(tag)  # acceptance test 14f: "+200.00" is an incorrect data format
    assert m.get_float(46) == -1.5 and m.get_float(47) == 0.5 and m.get_float(48) == 7.0
    assert m.get_int(49) == -12
    for tag in (50, 51):
        with pytest.raises(ValueError):
            m.get_int(tag)


def test_parser_records_tag_syntax_errors_and_keeps_the_rest() -> None:
    # Acceptance tests 14a (tags 0 and -1) and 14d (56= without a value).
    raw = frame_message(b"35=0\x0134=2\x0149=TW44\x01-1=HI\x010=HI\x01035=x\x01+5=y\x01=z\x01ab=q\x01"
                        b"56=\x01noequals\x0152=20261120-21:00:00\x01")
    m = parse(raw)
    assert [t for t, _ in m.fields] == [8, 9, 35, 34, 49, 52, 10]
    got = [(e.tag, e.reason, e.session_reject_reason) for e in m.errors]
    assert got == [(-1, INVALID_TAG, 0), (0, INVALID_TAG, 0), (35, INVALID_TAG, 0), (None, NON_NUMERIC_TAG, None),
                   (None, EMPTY_TAG, None), (None, NON_NUMERIC_TAG, None), (56, EMPTY_VALUE, 4),
                   (None, MISSING_EQUALS, None)]
    for e in m.errors:  # positions point at the offending field
        assert raw[e.position - 1] == 1
    assert raw[m.errors[0].position:].startswith(b"-1=HI\x01")
    assert raw[m.errors[6].position:].startswith(b"56=\x01")


def test_parser_odd_inputs() -> None:
    m = parse(b"8=FIX.4.4\x019=5\x0135=0\x0110=1")  # last field not terminated by SOH
    assert m.fields[-1] == (10, b"1") and m.errors[-1].reason == UNTERMINATED_FIELD
    assert m.errors[-1].session_reject_reason is None
    assert parse(b"").fields == [] and parse(b"").errors == []
    assert parse(bytearray(b"35=0\x01")).fields == [(35, b"0")]
    m = parse(b"35=0\x0135=1\x0112345=x\x01")  # repeated tag: first wins; uncached tag still read
    assert m.get(35) == b"0" and m.get(12345) == b"x" and m.count(35) == 2
    m = parse(b"35=0\x01\x0134=1\x01")  # an empty field (two SOH in a row)
    assert m.fields == [(35, b"0"), (34, b"1")] and m.errors[0].reason == MISSING_EQUALS
    m = parse(b"35=0\x01" + b"9" * 5000 + b"=x\x01-" + b"1" * 5000 + b"=y\x01" + b"9" * 5000)  # > int()'s digit limit
    assert m.fields == [(35, b"0")] and [e.reason for e in m.errors] == [INVALID_TAG, INVALID_TAG, MISSING_EQUALS,
                                                                          UNTERMINATED_FIELD]  # too long for a tag
    assert all(e.tag is None for e in m.errors)
    with pytest.raises(ValueError):
        parse(b"38=" + b"1" * 5000 + b"\x01").get_int(38)
