"""The shard's action stream (PositionService ``action_endpoints``): the liquidation
actor gets every AccountRisk of an account outside the normal tier and every tier
change, and nothing else; the full stream still gets everything.

Reference: the rule applied in the test to the sequence of (account, tier) the
shard is made to publish, against what two real SUB sockets receive.
"""

from __future__ import annotations

import random
import time

import zmq

from actors.bus import Bus, ipc_endpoint
from actors.messages import AccountRisk, HeldEvent, Stamps, decode
from actors.position_service import PositionService
from actors.position_shard import PositionShard
from risk.model import RiskModel
from risk.tiers import Tier

TIERS = [t.name.lower() for t in Tier]


def _risk(account: str, tier: str, n: int) -> AccountRisk:
    return AccountRisk(account, 1e6, 1e5, 8e4, 1e5, 0.08, tier, "ES", "up3", "", n, 1, Stamps())


def _drain(sock: zmq.Socket, timeout_s: float = 2.0, quiet_s: float = 0.3) -> list:
    out, deadline, last = [], time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
        if sock.poll(50):
            out.append(decode(sock.recv()))
            last = time.monotonic()
    return out


def test_the_action_stream_carries_non_normal_tiers_and_changes_only(book_parts, tmp_path) -> None:
    model = RiskModel(*book_parts)
    shard = PositionShard(0, 1, model)
    context = zmq.Context()
    bus = Bus(context)
    endpoints = {name: ipc_endpoint(name, tmp_path) for name in ("events", "risk", "action")}
    everything = context.socket(zmq.SUB)
    everything.setsockopt(zmq.SUBSCRIBE, b"")
    everything.bind(endpoints["risk"])
    action = context.socket(zmq.SUB)
    action.setsockopt(zmq.SUBSCRIBE, b"")
    action.bind(endpoints["action"])
    svc = PositionService(shard, bus, endpoints["events"], endpoints["risk"], bind_risk=False,
                          action_endpoints=(endpoints["action"],))
    try:
        probe = 0  # slow joiner: publish until both subscribers hear it
        while not (everything.poll(20) and action.poll(20)):
            svc._publish(_risk("PROBE", "margin_call", probe))
            probe += 1
            assert probe < 500, "subscribers never connected"
        _drain(everything, quiet_s=0.1), _drain(action, quiet_s=0.1)

        rng = random.Random(7)
        sent, expected, last = [], [], {}
        for n in range(400):
            account = f"A{rng.randrange(6)}"
            # mostly normal, with excursions: the interesting cases are the changes
            tier = "normal" if rng.random() < 0.7 else rng.choice(TIERS)
            sent.append((account, n))
            if tier != "normal" or last.get(account) != tier:
                expected.append((account, n))
            last[account] = tier
            svc._publish(_risk(account, tier, n))
            if n % 50 == 0:
                time.sleep(0.01)  # below the HWM, nothing is dropped
        svc._publish(HeldEvent("unknown account", "X1", "NOBODY", "ES", 1))  # type: ignore[call-arg]
        got_all = [(m.account, m.last_seq) for m in _drain(everything) if isinstance(m, AccountRisk)]
        got_action = _drain(action)
        assert got_all == sent
        assert all(isinstance(m, AccountRisk) for m in got_action)  # held events: the full stream only
        assert [(m.account, m.last_seq) for m in got_action] == expected
        assert 0 < len(expected) < len(sent)  # the filter both passed and dropped
    finally:
        svc._loop._wake_rx.close(0)  # never started: only its wake pair to close
        svc._loop._wake_tx.close(0)
        everything.close(0)
        action.close(0)
        bus.close()
        context.term()
