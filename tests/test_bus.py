"""ZeroMQ data plane: endpoints, PUSH/PULL and PUB/SUB with msgspec messages, bad frames."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from actors.bus import Bus, ReceiveLoop, check_endpoint, ipc_endpoint
from actors.messages import FillMsg, Stamps, decode, encode


def _wait(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_endpoints_default_to_a_private_ipc_folder_and_refuse_every_interface(tmp_path) -> None:
    assert ipc_endpoint("fills-0", tmp_path) == f"ipc://{tmp_path}/fills-0.sock"
    assert check_endpoint("tcp://127.0.0.1:5555")
    for bad in ("tcp://0.0.0.0:5555", "tcp://*:5555", "udp://x"):
        with pytest.raises(ValueError):
            check_endpoint(bad)


def test_push_pull_keeps_order_and_a_bad_frame_does_not_stop_the_loop(tmp_path) -> None:
    bus = Bus(zmq.Context())
    endpoint = ipc_endpoint("t1", tmp_path)
    pull = bus.socket(zmq.PULL, endpoint, bind=True)
    push = bus.socket(zmq.PUSH, endpoint, bind=False)
    got: list[FillMsg] = []
    lock = threading.Lock()

    def handle(frame: bytes) -> None:
        msg = decode(frame)
        with lock:
            got.append(msg)

    loop = ReceiveLoop({pull: handle}).start()
    push.send(b"\x00garbage")
    sent = [FillMsg(f"X{i}", "trade", "A", "ES", float(i), 1.0, "o", "c", "", i, Stamps(read_ns=i)) for i in range(2000)]
    for msg in sent:
        push.send(encode(msg))
    assert _wait(lambda: len(got) == len(sent))
    loop.stop()
    assert got == sent
    assert loop.errors == 1
    bus.close()


def test_call_soon_runs_on_the_loop_thread(tmp_path) -> None:
    bus = Bus(zmq.Context())
    pull = bus.socket(zmq.PULL, ipc_endpoint("t2", tmp_path), bind=True)
    loop = ReceiveLoop({pull: lambda frame: None}, context=bus.context).start()
    seen: list[str] = []
    for i in range(50):
        loop.call_soon(lambda i=i: seen.append(f"{threading.current_thread().name}:{i}"))
    assert _wait(lambda: len(seen) == 50)
    loop.stop()
    assert seen == [f"riskd-recv:{i}" for i in range(50)]
    bus.close()


def test_receive_loop_calls_batch_end_once_per_burst_after_every_frame() -> None:
    """A burst queued before the loop starts is handled in full, with far fewer batch
    ends than frames (bounded by max_batch per round), each after its frames."""
    import zmq as _zmq

    from actors.bus import ReceiveLoop as _Loop

    context = _zmq.Context()
    rx, tx = context.socket(_zmq.PULL), context.socket(_zmq.PUSH)
    rx.bind("inproc://batch-test")
    tx.connect("inproc://batch-test")
    seen: list[bytes] = []
    ends: list[int] = []
    for i in range(100):
        tx.send(b"%d" % i)
    loop = _Loop({rx: seen.append}, name="batch", context=context, on_batch_end=lambda: ends.append(len(seen)),
                 max_batch=32).start()
    deadline = __import__("time").monotonic() + 10
    while (not ends or ends[-1] < 100) and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.01)
    loop.stop()
    rx.close(0)
    tx.close(0)
    context.term()
    assert seen == [b"%d" % i for i in range(100)]
    assert ends[-1] == 100 and 4 <= len(ends) < 100 and ends == sorted(ends)
