"""A position shard behind its sockets: fills in, AccountRisk out, model updates, held events."""

from __future__ import annotations

import threading
import time

import zmq

from actors.bus import Bus, ReceiveLoop, ipc_endpoint
from actors.messages import AccountRisk, FillMsg, HeldEvent, Stamps, decode, encode
from actors.position_service import PositionService
from actors.position_shard import PositionShard
from risk.model import RiskModel


class ListRecorder:
    def __init__(self) -> None:
        self.samples: list[tuple[str, int]] = []

    def record(self, stage: str, start_ns: int, end_ns: int) -> None:
        self.samples.append((stage, end_ns - start_ns))


def _wait(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_service_publishes_account_risk_for_fills_models_and_held_events(book_parts, tmp_path) -> None:
    model = RiskModel(*book_parts)
    shard = PositionShard(0, 1, model)
    shard.add_account("A", model.params.profiles["span"], 1e6)
    bus = Bus(zmq.Context())
    recorder = ListRecorder()
    events, risk = ipc_endpoint("ev", tmp_path), ipc_endpoint("risk", tmp_path)
    service = PositionService(shard, bus, events, risk, recorder=recorder).start()
    sub = bus.socket(zmq.SUB, risk, bind=False)
    push = bus.socket(zmq.PUSH, events, bind=False)
    got: list = []
    lock = threading.Lock()

    def on_risk(frame: bytes) -> None:
        with lock:
            got.append(decode(frame))

    listener = ReceiveLoop({sub: on_risk}, name="risk-sub", context=bus.context).start()
    time.sleep(0.2)  # let the SUB connect (slow joiner) before publishing
    try:
        now = time.monotonic_ns()
        for i in range(20):
            stamps = Stamps(read_ns=now, parsed_ns=now + 1000, routed_ns=time.monotonic_ns())
            push.send(encode(FillMsg(f"X{i}", "trade", "A", "ES", 1.0, 6900.0, "o", "c", "", i + 1, stamps)))
        push.send(b"not msgpack")
        push.send(encode(FillMsg("Y1", "trade", "LATE", "ES", 2.0, 6900.0, "o", "c", "", 99, Stamps())))
        _wait(lambda: any(isinstance(m, HeldEvent) for m in got)
              and any(isinstance(m, AccountRisk) and m.last_seq == 20 for m in got))
        fills = [m for m in got if isinstance(m, AccountRisk)]
        # A burst is published once per account (coalesced), never out of order.
        seqs = [m.last_seq for m in fills]
        assert 1 <= len(fills) <= 20 and seqs == sorted(seqs) and seqs[-1] == 20
        assert fills[-1].stamps.read_ns == now and fills[-1].stamps.published_ns >= fills[-1].stamps.applied_ns
        held = [m for m in got if isinstance(m, HeldEvent)]
        assert held and held[0].account == "LATE" and held[0].reason == "unknown account"
        assert {s for s, _ in recorder.samples} == {"fix_parse", "route", "position_update"}
        assert all(v >= 0 for _, v in recorder.samples)
        assert service.malformed == 1

        expected_im = shard.accounts["A"].initial_margin()
        assert fills[-1].initial_margin == expected_im
        service.add_account("LATE", model.params.profiles["span"], 1e6)
        _wait(lambda: any(isinstance(m, AccountRisk) and m.account == "LATE" for m in got))
        got.clear()
        service.update_model(model, 7)
        _wait(lambda: {m.account for m in got if isinstance(m, AccountRisk)} == {"A", "LATE"})
        assert all(m.model_version == 7 for m in got if isinstance(m, AccountRisk))
    finally:
        listener.stop()
        service.stop()
        bus.close()
