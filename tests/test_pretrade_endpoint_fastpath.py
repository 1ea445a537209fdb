"""The endpoint's fast paths: the Cython-level send of a real pyzmq ROUTER, and the
FPGA path skipped when it has no overlay (and only then)."""

from __future__ import annotations

import msgspec
import zmq

from actors.fpga_shadow import FpgaPath, FpgaSettings
from actors.latency import StageRecorder
from actors.pretrade_config import PretradeSettings
from actors.pretrade_endpoint import PretradeEndpoint
from actors.pretrade_messages import Decision, decode, encode
from tests.test_pretrade_checks import make, req


def _pair(name: str) -> tuple[zmq.Context, zmq.Socket, zmq.Socket]:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"inproc://{name}")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"inproc://{name}")
    return ctx, router, dealer


def _same_decisions(a: Decision, b: Decision) -> bool:
    """Equal but for the timestamps (NaN figures compared as bits)."""
    fa, fb = msgspec.structs.astuple(a)[:-2], msgspec.structs.astuple(b)[:-2]
    return repr(fa) == repr(fb)


def test_a_real_router_answers_through_the_raw_send_with_the_checkers_decisions(book_parts) -> None:
    from risk.model import RiskModel

    model = RiskModel(*book_parts)
    requests = [req(f"O{k}", qty=float(k % 3 + 1), side=1 if k % 2 else -1, model=model) for k in range(6)]
    requests.append(req("BIG", qty=1e6, model=model))  # a rejection goes the same way
    _, reference, _ = make(model, cash=2e6)
    expected = [reference.check(r) for r in requests]
    ctx, router, dealer = _pair("raw-send")
    try:
        _, checker, _ = make(model, cash=2e6)
        endpoint = PretradeEndpoint(checker, router, StageRecorder(), lambda account: None, timeout_us=1e6)
        assert endpoint._send.__self__ is router and endpoint._send != router.send  # the Cython send itself
        for r, want in zip(requests, expected):
            dealer.send_multipart([b"", encode(r)])
            endpoint.on_request(router.recv_multipart())
            empty, payload = dealer.recv_multipart()
            assert empty == b"" and _same_decisions(decode(payload), want)
    finally:
        ctx.destroy(linger=0)


class _Recorder:
    def __init__(self) -> None:
        self.stages: list[str] = []

    def record(self, stage: str, start: int, end: int) -> None:
        self.stages.append(stage)


class _Socket:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes, flags: int = 0) -> None:
        self.frames.append(frame)


class _Overlay:
    """An FpgaPath stand-in on an overlay path: counts the checks put to it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.calls = 0

    def check(self, checker, request, received_ns):  # noqa: ANN001, ANN201
        self.calls += 1
        return checker.check(request, received_ns)


def test_the_fpga_path_is_skipped_only_without_an_overlay(book_parts) -> None:
    from risk.model import RiskModel

    model = RiskModel(*book_parts)
    software = FpgaPath(FpgaSettings(enabled="off"), PretradeSettings())
    assert software.path == "software"
    for fpga, called in ((None, False), (software, False), (_Overlay("fpga"), True), (_Overlay("fpga-shadow"), True)):
        _, checker, _ = make(model)
        _, plain, _ = make(model)
        socket = _Socket()
        endpoint = PretradeEndpoint(checker, socket, _Recorder(), lambda account: None, timeout_us=1e6)
        endpoint.fpga = fpga
        assert endpoint.fpga is fpga
        request = req("O1", model=model)
        endpoint.on_request([b"id", b"", encode(request)])
        assert _same_decisions(decode(socket.frames[-1]), plain.check(request))
        assert (getattr(fpga, "calls", 0) == 1) == called
        # The software path's own check gives the same decision as the checker.
        (_, other, _), (_, fresh, _) = make(model), make(model)
        assert _same_decisions(software.check(other, req("O2", model=model)), fresh.check(req("O2", model=model)))
