"""The overlay decides, on the simulated device (issue 8): the risk filter in the Amaranth
simulation, reached through pynq.Overlay and the unchanged RiskFilterDriver.

Scripted orders (one per check the filter implements, and the software-only ones
around them) decided by the "fpga" path against a software-only twin shard; then a
real shard's pre-trade endpoint (ROUTER, the client library) with the overlay
deciding, and the same endpoint when the device fails (rejected fail closed, the
shard's state naming the path and counting the error). About 0.3-1 s per check
in the simulation: a dozen checks in all.
"""

from __future__ import annotations

import msgspec
import pytest
import zmq

pytest.importorskip("pynq")
pytest.importorskip("amaranth")

from actors.bus import Bus, ipc_endpoint  # noqa: E402
from actors.fpga_decide import FPGA_ERROR  # noqa: E402
from actors.fpga_shadow import FpgaPath, FpgaSettings  # noqa: E402
from actors.kill_switch import KillSwitches  # noqa: E402
from actors.position_service import PositionService  # noqa: E402
from actors.position_shard import PositionShard  # noqa: E402
from actors.pretrade import PreTradeChecker  # noqa: E402
from actors.pretrade_client import PretradeClient  # noqa: E402
from actors.pretrade_config import PretradeLimits, PretradeSettings  # noqa: E402
from actors.pretrade_messages import CheckRequest, ReasonCode  # noqa: E402
from fpga_overlay.backend import open_overlay  # noqa: E402
from risk.tiers import Tier  # noqa: E402
from tests.test_fpga_decide import FailingBackend, Twins, assert_same_decision, model_27  # noqa: E402


@pytest.fixture(scope="module")
def simulated():
    """One simulated overlay for the module (building the simulation takes seconds)."""
    backend = open_overlay(None, simulate=True)
    assert backend is not None and backend.simulated
    assert type(backend.filter).__name__ == "RiskFilterDriver"  # bound by VLNV through pynq.Overlay
    return backend


def test_scripted_orders_through_the_simulation_decide_like_the_software_hook(book_parts, simulated) -> None:
    model = model_27(book_parts)
    twins = Twins(model, simulated, seed=4, n_accounts=3, cash=[1e6, 1e6, 2e4],
                  fills=False)  # flat accounts, A2 short of margin
    ix = model.table.index
    es, c7000 = float(model.valuation.mark[ix["ES"]]), float(model.valuation.mark[ix["C7000"]])
    twins.configure(msgspec.structs.replace(twins.settings, limits=PretradeLimits(
        max_order_qty=20, max_order_notional=20 * es * 50, price_collar=0.05, max_position_instrument=12,
        max_position_underlying=40)))
    script = [
        (CheckRequest("s1", "A1", "ES", 1, 2.0, es), None),
        (CheckRequest("s2", "A1", "ES", 1, 25.0, es), ReasonCode.MAX_ORDER_QTY),
        (CheckRequest("s3", "A1", "ES", -1, 15.0, es * 1.2), ReasonCode.PRICE_COLLAR),
        (CheckRequest("s4", "A1", "C7000", 1, 3.0, c7000 * 1.01), None),
        (CheckRequest("s4b", "A1", "ES", 1, 19.0, es * 1.06), ReasonCode.MAX_ORDER_NOTIONAL),
        (CheckRequest("s5", "A1", "ES", 1, 11.0, es), ReasonCode.MAX_POSITION_INSTRUMENT),
        (CheckRequest("s6", "A1", "C7000", -1, 2.0, c7000, what_if=True), None),
        (CheckRequest("s7", "A2", "C7000", -1, 5.0, c7000), ReasonCode.MARGIN),
    ]
    reasons = []
    for request, want in script:
        soft, hard = twins.decide(request)
        assert_same_decision(request, soft, hard, twins.by_software)
        if want is not None:
            assert hard.reason == want, (request, hard)
        reasons.append(hard.reason)
    twins.tier("A1", Tier.REDUCE_ONLY)  # software-only: the tier check, after the filter's kill switches
    soft, hard = twins.decide(CheckRequest("s8", "A1", "ES", 1, 1.0, es))
    assert_same_decision(CheckRequest("s8", "A1", "ES", 1, 1.0, es), soft, hard)
    assert hard.reason == ReasonCode.REDUCE_ONLY
    twins.kill("underlying", "SPX", True)
    soft, hard = twins.decide(CheckRequest("s9", "A1", "ES", 1, 1.0, es))
    assert hard.reason == soft.reason == ReasonCode.KILL_SWITCH_UNDERLYING
    assert "(fpga risk filter)" in hard.message
    twins.assert_same_books()
    assert ReasonCode.ACCEPTED in reasons
    state = twins.path.state()
    assert state["path"] == "fpga" and state["decided"] == 10 and state["device_errors"] == 0, state


def _service(book_parts, tmp_path, settings: PretradeSettings, path: FpgaPath):
    model = model_27(book_parts)
    shard = PositionShard(0, 1, model)
    for a in ("A", "OPEN"):
        shard.add_account(a, model.params.profiles["span"], 2e5)
    checker = PreTradeChecker(shard, settings, KillSwitches())
    bus = Bus(zmq.Context())
    names = {k: ipc_endpoint(k, tmp_path) for k in ("events", "risk", "pretrade")}
    service = PositionService(shard, bus, names["events"], names["risk"],
                              pretrade=(names["pretrade"], checker, 1e7)).start()
    service.pretrade.fpga = path
    return service, bus, names, model


def test_the_shard_endpoint_decides_on_the_overlay_and_fails_closed(book_parts, tmp_path, simulated) -> None:
    settings = PretradeSettings(limits=PretradeLimits(max_order_qty=5), fail_open_accounts=("OPEN",))
    path = FpgaPath(FpgaSettings(simulate=True), settings, simulated)
    service, bus, names, model = _service(book_parts, tmp_path, settings, path)
    price = float(model.valuation.mark[model.table.index["ES"]])
    client = PretradeClient([names["pretrade"]], timeout_us=2e7, context=bus.context)
    try:
        decisions = [client.check(CheckRequest(f"O{k}", "A", "ES", 1, qty, price))
                     for k, qty in enumerate((2.0, 9.0, 5.0))]
        # 2 ES reserve ~58k of 200k; 9 > the limit; 5 more would need ~203k of IM
        assert [d.reason for d in decisions] == ["accepted", "max_order_qty", "margin"], decisions
        assert "O0" in service.shard.accounts["A"].orders  # the accepted order reserved its margin
        assert path.state()["decided"] == 3
        # the device fails: rejected, fail closed; a fail-open account is decided in software
        path.backend = FailingBackend(TimeoutError("RiskFilterDriver: ap_done not seen after 1000 polls of CTRL"))
        failed = client.check(CheckRequest("O9", "A", "ES", -1, 1.0, price))
        assert (failed.accepted, failed.reason) == (False, FPGA_ERROR) and "fail closed" in failed.message
        opened = client.check(CheckRequest("P1", "OPEN", "ES", 1, 1.0, price))
        assert (opened.accepted, opened.reason) == (True, ReasonCode.ACCEPTED)
        state = path.state()
        assert (state["path"], state["device_errors"], state["failed_open"]) == ("fpga", 2, 1)
        assert "TimeoutError" in state["last_error"]
    finally:
        client.close()
        service.stop()
        bus.close()


def test_open_names_the_deciding_path() -> None:
    path = FpgaPath.open(FpgaSettings(enabled="on", simulate=True), PretradeSettings())
    try:
        assert path.path == "fpga" and path.mode.startswith("fpga (simulated overlay decides")
        assert path.state()["path"] == "fpga" and not path.state()["shadow"]
    finally:
        path.stop()
