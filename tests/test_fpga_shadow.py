"""The FPGA overlay beside the software pre-trade hook (issue 8, daemon integration).

Shadow mode on a real shard (PositionService with its ROUTER endpoint, the client
library) and the overlay's risk filter on the simulated pynq device: the software
decides; the overlay's answers on the same records agree with it; a deliberately
different limit on the overlay's side shows up as mismatches; the path the shard
runs is named in its state, and "on" without a device refuses to start.
"""

from __future__ import annotations

import pytest
import zmq

pytest.importorskip("pynq")
pytest.importorskip("amaranth")

from actors.bus import Bus, ipc_endpoint  # noqa: E402
from actors.fpga_shadow import FpgaPath, FpgaSettings, FpgaUnavailable  # noqa: E402
from actors.kill_switch import KillSwitches  # noqa: E402
from actors.position_service import PositionService  # noqa: E402
from actors.position_shard import PositionShard  # noqa: E402
from actors.pretrade import PreTradeChecker  # noqa: E402
from actors.pretrade_client import PretradeClient  # noqa: E402
from actors.pretrade_config import PretradeLimits, PretradeSettings  # noqa: E402
from actors.pretrade_messages import CheckRequest  # noqa: E402
from risk.model import RiskModel  # noqa: E402
from tests.test_pretrade_checks import im_of  # noqa: E402

SIMULATED = FpgaSettings(enabled="on", simulate=True, shadow=True)


@pytest.fixture(scope="module")
def overlay_path():
    """One simulated overlay for the module (opening it builds the simulation)."""
    path = FpgaPath.open(SIMULATED, PretradeSettings())
    yield path
    path.stop()


def _service(book_parts, tmp_path, settings: PretradeSettings, cash_orders: float):
    model = RiskModel(*book_parts)
    shard = PositionShard(0, 1, model)
    cash = cash_orders * im_of(model, {}, {"ES": 1.0}) / model.params.profiles["span"].max_utilization
    shard.add_account("A", model.params.profiles["span"], cash)
    checker = PreTradeChecker(shard, settings, KillSwitches())
    bus = Bus(zmq.Context())
    names = {k: ipc_endpoint(k, tmp_path) for k in ("events", "risk", "pretrade")}
    service = PositionService(shard, bus, names["events"], names["risk"],
                              pretrade=(names["pretrade"], checker, 1e6)).start()
    return service, bus, names, float(model.valuation.mark[model.table.index["ES"]])


def test_shadow_on_the_simulated_overlay_agrees_and_catches_a_difference(book_parts, tmp_path, overlay_path) -> None:
    settings = PretradeSettings(limits=PretradeLimits(max_order_qty=5))
    service, bus, names, price = _service(book_parts, tmp_path, settings, cash_orders=4.5)
    # The shard's path: the checker's own settings, the simulated overlay's backend.
    same = FpgaPath(SIMULATED, settings, overlay_path.backend)
    service.pretrade.fpga = same
    client = PretradeClient([names["pretrade"]], timeout_us=5e6, context=bus.context)
    try:
        decisions = [client.check(CheckRequest(f"O{k}", "A", "ES", 1, qty, price))
                     for k, qty in enumerate((1.0, 2.0, 9.0, 2.0))]
        reasons = [d.reason for d in decisions]
        assert reasons == ["accepted", "accepted", "max_order_qty", "margin"], reasons
        assert same.drain(300.0)
        state = same.state()
        assert state["compared"] == 4 and state["mismatches"] == 0, state
        assert state["max_im_error"] <= settings.im_tolerance
        assert "overlay shadows" in state["mode"]
        # The overlay told a limit the software does not have: its answers now differ.
        other = FpgaPath(SIMULATED, PretradeSettings(limits=PretradeLimits(max_order_qty=1)), overlay_path.backend)
        service.pretrade.fpga = other
        assert client.check(CheckRequest("O9", "A", "ES", -1, 2.0, price)).accepted
        assert other.drain(300.0)
        assert other.state()["mismatches"] == 1 and "max_order_qty" in other.state()["last_mismatch"]
    finally:
        same.stop()
        if "other" in locals():
            other.stop()
        client.close()
        service.stop()
        bus.close()


def test_the_path_is_named_and_on_without_a_device_refuses() -> None:
    off = FpgaPath.open(FpgaSettings(enabled="off"), PretradeSettings())
    assert off.backend is None and off.mode == "software (fpga off)"
    auto = FpgaPath.open(FpgaSettings(), PretradeSettings())
    assert auto.backend is None and "no bitstream configured" in auto.mode
    with pytest.raises(FpgaUnavailable, match="bitstream"):
        FpgaPath.open(FpgaSettings(enabled="on"), PretradeSettings())
    with pytest.raises(ValueError, match="shadow_every"):
        FpgaSettings(shadow_every=0)
