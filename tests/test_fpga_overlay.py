"""The PYNQ driver path end to end (issue 8): pynq.Overlay binds the unchanged drivers by
VLNV and they run on the simulated device, whose register reads and writes are AXI4-Lite
transactions and whose buffers the Greeks IP's AXI4 master reads and writes, all in the
Amaranth simulation. Results are compared with the bit-exact models.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("amaranth", reason="amaranth is in the [test] extra (FPGA overlay simulation)")
pynq = pytest.importorskip("pynq", reason="pynq is in the [test] extra (the overlay's driver layer)")

from fpga_overlay import greeks_core as gc  # noqa: E402
from fpga_overlay import risk_filter as rf  # noqa: E402
from fpga_overlay.backend import open_overlay  # noqa: E402
from fpga_overlay.drivers import GreeksDriver, RiskFilterDriver  # noqa: E402
from fpga_overlay.sim_device import SIMULATED_BIT_LABEL, write_placeholder_bitstream  # noqa: E402


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    bit = write_placeholder_bitstream(tmp_path_factory.mktemp("overlay") / "riskd_overlay.bit")
    assert bit.read_bytes().startswith(b"SIMULATED")
    return open_overlay(str(bit), simulate=True)


def test_overlay_binds_the_drivers_by_vlnv(backend) -> None:
    assert isinstance(backend.overlay, pynq.Overlay)
    assert isinstance(backend.filter, RiskFilterDriver) and isinstance(backend.greeks_ip, GreeksDriver)
    assert backend.simulated


def test_greeks_batch_through_axi_master_is_bit_exact(backend) -> None:
    fields = gc.domain_sample(150, seed=21)  # > 2 bursts of 64 records
    out = backend.greeks(fields)
    want = gc.model(fields)
    for name in gc.OUTPUTS:
        assert [int(v) for v in out[name]] == [int(v) for v in want[name]], name
    # one option per clock once full: 150 options in latency + 150 + a few cycles of AXI handshakes
    cycles = backend.greeks_ip.last_cycles
    assert gc.greeks_graph().latency + 150 <= cycles <= gc.greeks_graph().latency + 150 + 16


def test_ctrl_register_follows_the_hls_handshake(backend) -> None:
    ip = backend.greeks_ip
    assert ip.read(0x00) & 0x4  # ap_idle
    fields = gc.domain_sample(3, seed=22)
    backend.greeks(fields)  # polls CTRL until ap_done: that read clears it
    ctrl = ip.read(0x00)
    assert ctrl & 0x4 and not ctrl & 0x2 and not ctrl & 0x1
    empty = backend.greeks({k: v[:0] for k, v in fields.items()})
    assert all(len(v) == 0 for v in empty.values())


def _records(n: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    out: dict[str, list[int]] = {}
    for name, (bits, _) in rf.FIELDS.items():
        lo, hi = rf.field_range(name)
        if bits == 1:
            out[name] = [int(rng.random() < (0.1 if name.startswith("kill") else 0.5)) for _ in range(n)]
        else:
            out[name] = [min(max(rng.getrandbits(rng.randint(1, bits)) * rng.choice((-1, 1)), lo), hi)
                         for _ in range(n)]
    return out


def test_filter_check_through_axi_lite_matches_model(backend) -> None:
    fields = _records(12, seed=5)
    want = rf.model({k: np.asarray(v, dtype=object) for k, v in fields.items()})
    for i in range(12):
        d = backend.check({k: v[i] for k, v in fields.items()})
        assert d.accepted == bool(want["accept"][i])
        assert d.reason == rf.FilterReason.ALL[int(want["code"][i])]
        assert d.im_after == int(want["im_after"][i]) / 2.0 ** rf.MONEY_FRAC
        assert d.cycles <= rf.latency_bound()


def test_no_device_means_software_path(tmp_path) -> None:
    bit = tmp_path / "real.bit"
    bit.write_bytes(b"\x00" * 16)
    assert open_overlay(None) is None
    assert open_overlay(str(bit)) is None  # no board here
    with pytest.raises(ValueError, match="not a simulated placeholder"):
        open_overlay(str(bit), simulate=True)
    assert SIMULATED_BIT_LABEL.startswith(b"SIMULATED")
