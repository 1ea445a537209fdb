"""``riskd bench fix``: parser throughput vs simplefix, and drop-copy throughput through a session.

Prints one JSON object: the parse figures of :func:`daemon.bench_fix_parse.parse_bench`
(fast parser and simplefix on the same messages, same run) and
``session_msgs_per_s``: ExecutionReports per second delivered to the drop-copy
application's callback by a real initiator session (framing, parsing, dictionary
validation, sequence checks, FileStore sequence numbers, ExecID dedupe store)
over loopback TCP. The counterparty is a separate process that logs on and
writes pre-encoded reports as fast as the socket takes them, so the figure
measures riskd's side, not the sender.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from typing import Any, TextIO

import msgspec

from daemon.bench_fix_parse import execution_reports, parse_bench
from fix.dropcopy import DropCopyApplication, DropCopyEvent, ExecIdStore, OrderEvent
from fix.engine import FixEngine
from fix.framing import frame_message
from fix.outbound import SendingTimeClock
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import FileStore


def _oms(listener: socket.socket, n: int) -> None:
    """The sending side, in its own process: Logon reply, then ``n`` reports in one stream."""
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stamp = SendingTimeClock().now()
    blob = b"".join(execution_reports(n, seed=11, sending_time=stamp))
    buf = b""
    while b"\x0110=" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            return
        buf += chunk
    logon = b"35=A\x0134=1\x0149=OMS\x0152=%s\x0156=RISKD\x0198=0\x01108=30\x01" % stamp
    conn.sendall(frame_message(logon) + blob)
    conn.settimeout(30.0)
    try:
        while conn.recv(65536):  # drain heartbeats and the final Logout
            pass
    except OSError:
        pass
    conn.close()


def session_throughput(n: int = 50_000) -> dict[str, float]:
    """Reports/s from the first byte of the stream to the n-th event at the application."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    sender = multiprocessing.get_context("fork").Process(target=_oms, args=(listener, n), daemon=True)
    sender.start()
    done = threading.Event()
    count = [0]
    first = [0.0]

    def on_event(event: DropCopyEvent) -> None:
        if isinstance(event, OrderEvent):  # exactly one per report
            if count[0] == 0:
                first[0] = time.perf_counter()
            count[0] += 1
            if count[0] == n:
                done.set()

    with tempfile.TemporaryDirectory() as folder:
        settings = msgspec.convert({"SenderCompID": "RISKD", "TargetCompID": "OMS", "SocketConnectPort": port,
                                    "HeartBtInt": 30, "FileStorePath": folder}, SessionSettings)
        exec_ids = ExecIdStore(f"{folder}/execids")
        session = Session(settings, FileStore(folder, "RISKD", "OMS"), DropCopyApplication(on_event, exec_ids))
        engine = FixEngine()
        engine.add(session)
        start = time.perf_counter()
        engine.start_in_thread("bench-fix")
        finished = done.wait(120.0)
        end = time.perf_counter()
        engine.stop_thread()
        exec_ids.close()
    sender.join(5.0)
    listener.close()
    if not finished:
        raise RuntimeError(f"only {count[0]} of {n} reports arrived within 120 s")
    return {"session_msgs_per_s": n / (end - first[0]), "session_msgs": float(n),
            "session_wall_s": end - start}


def run_bench_fix(out: TextIO, quick: bool = False) -> int:
    """Print the FIX bench as one JSON object; ``quick`` runs smaller sizes (smoke)."""
    result: dict[str, Any] = dict(parse_bench(5_000 if quick else 20_000, repeats=3 if quick else 5))
    runs = [session_throughput(5_000 if quick else 50_000) for _ in range(1 if quick else 3)]
    result["session_msgs_per_s"] = statistics.median(r["session_msgs_per_s"] for r in runs)
    result["session_msgs_per_s_runs"] = [round(r["session_msgs_per_s"]) for r in runs]
    result["session_msgs"] = int(runs[0]["session_msgs"])
    result["targets"] = {"fast_parse_per_s": 100_000, "speedup_vs_simplefix": 10, "session_msgs_per_s": 30_000}
    out.write(json.dumps(result) + "\n")
    return 0
