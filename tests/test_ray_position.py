"""Position actors under a real local Ray: fills in over ZeroMQ, AccountRisk out, restart on kill."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

ray = pytest.importorskip("ray")

from actors.bus import Bus, ReceiveLoop, ipc_endpoint  # noqa: E402
from actors.messages import AccountRisk, FillMsg, Stamps, decode, encode  # noqa: E402
from actors.position_shard import shard_of  # noqa: E402
from actors.ray_position import ShardSpec, position_actor_class  # noqa: E402
from daemon.book import load_book  # noqa: E402
from daemon.config import resolve_data_path  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _wait(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_position_actors_apply_routed_fills_and_restart_after_a_kill(ray_local, tmp_path) -> None:
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    accounts = [f"ACC{i}" for i in range(8)]
    bus = Bus(zmq.Context())
    risk_endpoint = ipc_endpoint("risk", tmp_path)
    sub = bus.socket(zmq.SUB, risk_endpoint, bind=True)
    got: list[AccountRisk] = []
    lock = threading.Lock()

    def on_risk(frame: bytes) -> None:
        message = decode(frame)
        if isinstance(message, AccountRisk):
            with lock:
                got.append(message)

    listener = ReceiveLoop({sub: on_risk}, name="risk-sub", context=bus.context).start()
    actor_class = position_actor_class(max_restarts=2, num_cpus=0.5)
    actors, pushes = [], []
    for shard in range(2):
        mine = tuple((a, "span", 1e6) for a in accounts if shard_of(a, 2) == shard)
        spec = ShardSpec(shard=shard, n_shards=2, params=config.margin, underlyings=config.underlyings,
                         instruments=config.instruments, market=book.market, accounts=mine,
                         events_endpoint=ipc_endpoint(f"events-{shard}", tmp_path), risk_endpoints=(risk_endpoint,))
        actors.append(actor_class.remote(spec))
        pushes.append(bus.socket(zmq.PUSH, spec.events_endpoint, bind=False))
    try:
        health = ray.get([a.health.remote() for a in actors], timeout=60)
        assert [h["shard"] for h in health] == [0, 1]
        time.sleep(0.3)  # PUB/SUB slow joiner
        truth: dict[tuple[str, str], float] = {}
        last_seq: dict[str, int] = {}
        for i in range(400):
            acct = accounts[i % len(accounts)]
            qty = float((i % 5) - 2 or 1)
            msg = FillMsg(f"X{i}", "trade", acct, "ESZ6", qty, 6900.0, "o", "c", "", i + 1, Stamps())
            pushes[shard_of(acct, 2)].send(encode(msg))
            truth[(acct, "ESZ6")] = truth.get((acct, "ESZ6"), 0.0) + qty
            last_seq[acct] = i + 1

        def covered() -> bool:  # AccountRisk is coalesced per burst: wait for each account's last fill
            with lock:
                seen = {r.account: r.last_seq for r in got}
            return all(seen.get(a, 0) >= s for a, s in last_seq.items())
        try:
            _wait(covered)
        except AssertionError:
            raise AssertionError((len(got), listener.errors, ray.get([a.health.remote() for a in actors])))
        positions = {}
        for a in actors:
            for acct, held in ray.get(a.positions.remote(), timeout=30).items():
                for symbol, qty in held.items():
                    positions[(acct, symbol)] = qty
        assert positions == {k: v for k, v in truth.items() if v}
        assert all(r.tier == "normal" for r in got)

        pid_before = ray.get(actors[0].health.remote(), timeout=30)["pid"]
        ray.kill(actors[0], no_restart=False)
        _wait(lambda: _alive_pid(actors[0]) not in (None, pid_before), 60)
        # Rebuilt from its spec: empty until the drop copy is replayed to it (durability is issue 7).
        assert ray.get(actors[0].health.remote(), timeout=30)["accounts"] == len(
            [a for a in accounts if shard_of(a, 2) == 0])
    finally:
        listener.stop()
        for a in actors:
            ray.kill(a, no_restart=True)
        bus.close()


def _alive_pid(actor) -> int | None:
    try:
        return ray.get(actor.health.remote(), timeout=2)["pid"]
    except Exception:
        return None


def test_a_shard_connects_its_account_risk_pub_only_after_its_subscriber_actors_are_up(ray_local, tmp_path) -> None:
    """The daemon starts the shards while the liquidation actor starts; a shard must not
    publish before that actor's SUB is bound (ShardSpec.subscribers)."""
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))

    class SlowSubscriber:  # binds its SUB at the end of a slow start, as the liquidation actor does
        def __init__(self, endpoint: str, delay_s: float) -> None:
            time.sleep(delay_s)
            self.bus = Bus(zmq.Context())
            self.sub = self.bus.socket(zmq.SUB, endpoint, bind=True)
            self.bound_at = time.time()

        def health(self) -> float:
            return self.bound_at

    endpoint = ipc_endpoint("risk-slow", tmp_path)
    name = f"slow-subscriber-{id(tmp_path):x}"
    subscriber = ray.remote(num_cpus=0)(SlowSubscriber).options(name=name).remote(endpoint, 4.0)
    spec = ShardSpec(shard=0, n_shards=1, params=config.margin, underlyings=config.underlyings,
                     instruments=config.instruments, market=book.market, accounts=(("ACC0", "span", 1e6),),
                     events_endpoint=ipc_endpoint("events-slow", tmp_path), risk_endpoints=(endpoint,),
                     subscribers=(name,))
    shard = position_actor_class(max_restarts=0, num_cpus=0.5).remote(spec)
    try:
        startup = ray.get(shard.health.remote(), timeout=60)["startup"]
        bound_at = ray.get(subscriber.health.remote(), timeout=10)
        assert startup["subscribers_up"] >= bound_at
        assert startup["service_started"] >= bound_at
        assert startup["accounts_added"] < bound_at  # it loaded meanwhile, not after
    finally:
        ray.kill(shard, no_restart=True)
        ray.kill(subscriber, no_restart=True)
