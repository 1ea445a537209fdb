"""Parse half of ``riskd bench fix``: the fast FIX parser and framer vs simplefix.

`parse_bench` builds realistic drop-copy ExecutionReports (29 fields: the standard
header 8/9/35/34/49/56/52, then 37, 11, 17, 150, 39, 55, 167, 200, 54, 38, 44, 32,
31, 151, 14, 6, 60, 1, 75, 59, 40 and the CheckSum), then times, on the same
messages in the same run:

* ``fix.parser.parse`` and simplefix's ``FixParser.append_buffer`` +
  ``get_message``, one message at a time, interleaved in blocks of 500 messages so
  both run under the same (shared, noisy) machine conditions;
* ``fix.parser.parse`` latency, each call timed with ``perf_counter_ns``;
* ``fix.framing.FixFramer`` over the concatenated stream, fed in socket-sized reads,
  and framer + parser together (median of several passes).
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any, Callable

import numpy as np
import simplefix

from fix.framing import FixFramer, frame_message
from fix.parser import parse

__all__ = ["execution_reports", "parse_bench"]

_BLOCK = 500  # messages per interleaved fast/simplefix block


def execution_reports(n: int, seed: int = 7, sending_time: bytes | None = None) -> list[bytes]:
    """``n`` distinct drop-copy ExecutionReports (35=8) as wire bytes, ~270 bytes each.

    Mostly fills (ExecType F) with some new/cancel acks, varied ids, prices and
    quantities, so no two messages are equal. MsgSeqNum runs from 2 (after a
    Logon). ``sending_time``: the SendingTime (52) of every message, for a live
    session that checks it; by default a fixed date.
    """
    rng = random.Random(seed)
    symbols = [(b"ESZ6", b"FUT", b"202612"), (b"NQZ6", b"FUT", b"202612"), (b"SPXW261218C07000", b"OPT", b"202612")]
    out = []
    for i in range(n):
        symbol, sec_type, mmy = rng.choice(symbols)
        exec_type = rng.choices([b"F", b"0", b"4"], weights=[8, 1, 1])[0]
        qty = rng.randint(1, 500)
        cum = rng.randint(1, qty) if exec_type == b"F" else 0
        last = rng.randint(1, cum) if cum else 0
        status = {b"F": b"2" if cum == qty else b"1", b"0": b"0", b"4": b"4"}[exec_type]
        px = b"%d.%02d" % (rng.randint(5000, 7500), rng.choice([0, 25, 50, 75]))
        ms = i % 1000
        stamp = sending_time or b"20261120-21:%02d:%02d.%03d" % ((i // 60000) % 60, (i // 1000) % 60, ms)
        body = b"".join([
            b"35=8\x0134=%d\x0149=OMS\x0156=RISKD\x0152=%s\x01" % (i + 2, stamp),
            b"37=ORD%09d\x0111=CL%010d\x0117=EX%012d\x01150=%s\x0139=%s\x01" % (
                rng.randint(0, 10**9), i, i, exec_type, status),
            b"55=%s\x01167=%s\x01200=%s\x0154=%d\x0138=%d\x0144=%s\x01" % (
                symbol, sec_type, mmy, rng.randint(1, 2), qty, px),
            b"32=%d\x0131=%s\x01151=%d\x0114=%d\x016=%s\x01" % (last, px, qty - cum, cum, px),
            b"60=20261120-21:%02d:%02d.%03d\x011=ACCT%04d\x0175=20261120\x0159=0\x0140=2\x01" % (
                (i // 60000) % 60, (i // 1000) % 60, ms, rng.randint(0, 9999)),
        ])
        out.append(frame_message(body))
    return out


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: caches, lazy imports, the parser's tag cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def parse_bench(n: int = 20000, *, repeats: int = 5, read_size: int = 4096) -> dict[str, float | int]:
    """Time the fast parser and framer against simplefix on ``n`` ExecutionReports.

    Returns a dict with:
    ``fast_parse_per_s`` and ``simplefix_parse_per_s`` (messages/s over the same
    ``n`` messages, interleaved block by block), ``speedup_vs_simplefix`` (ratio),
    ``fast_parse_p50_us`` / ``fast_parse_p99_us`` (per-call latency in microseconds,
    perf_counter_ns around each call; includes the timer's own cost, reported as
    ``timer_overhead_ns``),
    ``framer_per_s`` (messages/s framed from the concatenated stream fed in
    ``read_size``-byte reads) and ``frame_and_parse_per_s`` (framer + parser), both
    medians of ``repeats`` passes,
    and the workload: ``n``, ``message_bytes`` (mean), ``fields_per_message``,
    ``read_size``.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    msgs = execution_reports(n)
    stream = b"".join(msgs)
    chunks = [stream[i:i + read_size] for i in range(0, len(stream), read_size)]
    fields = len(parse(msgs[0]).fields)

    # Throughput, interleaved: each block of messages is parsed by the fast parser
    # then by simplefix, so both see the same machine conditions (this VM's speed
    # drifts by tens of percent over seconds) and the speedup is like for like.
    for m in msgs[:1000]:  # warm-up: caches, the parser's tag cache
        parse(m)
    parser = simplefix.FixParser()
    perf = time.perf_counter
    fast_s = simplefix_s = 0.0
    for start in range(0, n, _BLOCK):
        block = msgs[start:start + _BLOCK]
        t0 = perf()
        for m in block:
            parse(m)
        t1 = perf()
        for m in block:
            parser.append_buffer(m)
            parser.get_message()
        t2 = perf()
        fast_s += t1 - t0
        simplefix_s += t2 - t1

    # Per-call latency, each call timed on its own.
    clock = time.perf_counter_ns
    lat = np.empty(n, dtype=np.int64)
    for i, m in enumerate(msgs):
        t1 = clock()
        parse(m)
        lat[i] = clock() - t1
    overhead = np.empty(1000, dtype=np.int64)
    for i in range(1000):
        t1 = clock()
        overhead[i] = clock() - t1

    def framer() -> None:
        f = FixFramer()
        got = 0
        for chunk in chunks:
            got += len(f.feed(chunk))
        if got != n:  # a bench that silently drops messages would be meaningless
            raise RuntimeError(f"framer returned {got} frames for {n} messages")

    framer_s = _median_seconds(framer, repeats)

    def frame_and_parse() -> None:
        f = FixFramer()
        for chunk in chunks:
            for frame in f.feed(chunk):
                parse(frame.raw)

    pipeline_s = _median_seconds(frame_and_parse, repeats)

    fast_rate = n / fast_s
    simplefix_rate = n / simplefix_s
    return {
        "fast_parse_per_s": round(fast_rate, 1),
        "simplefix_parse_per_s": round(simplefix_rate, 1),
        "speedup_vs_simplefix": round(fast_rate / simplefix_rate, 2),
        "fast_parse_p50_us": round(float(np.percentile(lat, 50)) / 1000.0, 3),
        "fast_parse_p99_us": round(float(np.percentile(lat, 99)) / 1000.0, 3),
        "timer_overhead_ns": int(np.median(overhead)),
        "framer_per_s": round(n / framer_s, 1),
        "frame_and_parse_per_s": round(n / pipeline_s, 1),
        "n": n,
        "message_bytes": round(len(stream) / n, 1),
        "fields_per_message": fields,
        "read_size": read_size,
    }


if __name__ == "__main__":  # ad-hoc run; the CLI wiring lives in daemon/cli.py
    import json

    print(json.dumps(parse_bench(), indent=2))
