"""The market actor without Ray: replay files through it, and bad ticks over ZeroMQ.

Timing-free on purpose (a loaded 2-core CI machine): every wait polls with a
generous deadline, and nothing asserts on how long something took.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Callable

import msgspec
import pytest
import zmq

from actors.bus import Bus, ipc_endpoint
from actors.market_data import ReplayFileError, Tick, encode_tick, write_replay_csv
from actors.messages import MarketUpdate, decode
from actors.ray_market import MarketActorImpl, MarketSpec

DEADLINE_S = 20.0
T0_NS = int(dt.datetime(2026, 11, 23, 14, 30, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000_000


def _at(ns: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=ns // 1000)


def _spec(book_parts, tmp_path: Path, **kw) -> MarketSpec:
    table, market, params = book_parts
    return MarketSpec(params=params, underlyings=table.underlying_specs, instruments=table.specs, initial=market,
                      updates_endpoint=ipc_endpoint("updates", tmp_path), publish_interval_s=0.02,
                      full_interval_s=0.2, **kw)


class Updates:
    """A SUB on the actor's updates endpoint (connected before the actor binds it)."""

    def __init__(self, endpoint: str) -> None:
        self.bus = Bus(zmq.Context())
        self.sub = self.bus.socket(zmq.SUB, endpoint, bind=False)
        self.last: MarketUpdate | None = None

    def wait_for(self, predicate: Callable[[MarketUpdate], bool], *, between: Callable[[], None] = lambda: None,
                 timeout_s: float = DEADLINE_S) -> MarketUpdate:
        """The first update satisfying ``predicate``; ``between`` runs while none is queued."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sub.poll(100):
                message = decode(self.sub.recv())
                assert isinstance(message, MarketUpdate)
                self.last = message
                if predicate(message):
                    return message
            else:
                between()
        raise AssertionError(f"no matching MarketUpdate within {timeout_s} s; last: {self.last!r}")

    def close(self) -> None:
        self.bus.close()
        self.bus.context.term()


@pytest.fixture
def stoppable():
    """Actors and subscribers made by a test, stopped even when it fails."""
    made: list = []
    yield made.append
    for thing in reversed(made):
        thing.stop() if isinstance(thing, MarketActorImpl) else thing.close()


def _recording(path: Path) -> tuple[list[Tick], int]:
    """A replay CSV: SPX and NDX every second, plus one unknown underlying and one
    unparseable row; returns the good ticks and the file's last recorded time (ns)."""
    ticks = []
    for i in range(10):
        t = T0_NS + i * 1_000_000_000
        ticks.append(Tick(underlying="SPX", price=6900.0 + 0.25 * i, event_time_ns=t, seq=0))
        ticks.append(Tick(underlying="NDX", price=24500.0 - 1.5 * i, atm_vol=0.22 + 0.001 * i,
                          event_time_ns=t + 500_000_000, seq=0))
    unknown = Tick(underlying="XYZ", price=10.0, event_time_ns=T0_NS + 3_200_000_000, seq=0)
    write_replay_csv(path, sorted([*ticks, unknown], key=lambda t: t.event_time_ns))
    lines = path.read_text().splitlines()
    lines.insert(5, f"{T0_NS + 2_100_000_000},SPX,not-a-price,,,")
    path.write_text("\n".join(lines) + "\n")
    return ticks, ticks[-1].event_time_ns


def test_replay_publishes_the_recorded_market_at_the_recorded_time(book_parts, tmp_path, stoppable) -> None:
    path = tmp_path / "ticks.csv"
    ticks, last_ns = _recording(path)
    spec = _spec(book_parts, tmp_path, replay_path=str(path), replay_speed=0.0)
    updates = Updates(spec.updates_endpoint)
    stoppable(updates)
    actor = MarketActorImpl(spec)
    stoppable(actor)

    # Full updates come every full_interval_s, so the final market is seen even if the
    # whole replay finished before the subscription was up.
    update = updates.wait_for(lambda u: u.snapshot.as_of == _at(last_ns))
    last = {t.underlying: t for t in ticks}
    assert {u: q.price for u, q in update.snapshot.underlyings.items()} == {u: t.price for u, t in last.items()}
    assert update.snapshot.underlyings["NDX"].vol == last["NDX"].atm_vol
    for uid, tick in last.items():  # each quote stamped with its own last recorded time
        assert update.snapshot.underlyings[uid].updated_at == _at(tick.event_time_ns)

    deadline = time.monotonic() + DEADLINE_S
    while not actor.health()["replay_done"]:
        assert time.monotonic() < deadline, actor.health()
        time.sleep(0.02)
    health = actor.health()
    assert health["source"] == "replay"
    assert (health["replay_emitted"], health["replay_skipped"]) == (len(ticks), 2)
    assert health["ticks"] == len(ticks) and health["malformed"] == 0
    assert len(health["replay_errors"]) == 2
    assert any("price" in e and ":6:" in e for e in health["replay_errors"]), health["replay_errors"]
    assert any("unknown underlying" in e and "XYZ" in e for e in health["replay_errors"]), health["replay_errors"]
    assert health["replay_time"] == _at(last_ns).isoformat()

    # Exhausted, the actor keeps serving the last market.
    version = health["version"]
    again = updates.wait_for(lambda u: u.version > version)
    assert again.snapshot.as_of == _at(last_ns)
    assert again.snapshot.underlyings["SPX"].price == last["SPX"].price


def test_stop_ends_a_paced_replay_mid_wait(book_parts, tmp_path, stoppable) -> None:
    path = tmp_path / "slow.csv"
    hour = 3600 * 1_000_000_000
    write_replay_csv(path, [Tick(underlying="SPX", price=6900.0 + i, event_time_ns=T0_NS + i * hour, seq=0)
                            for i in range(3)])
    actor = MarketActorImpl(_spec(book_parts, tmp_path, replay_path=str(path), replay_speed=1.0))
    stoppable(actor)
    deadline = time.monotonic() + DEADLINE_S
    while actor.health()["ticks"] < 1:  # the first tick is due at once, the next in an hour
        assert time.monotonic() < deadline, actor.health()
        time.sleep(0.02)
    actor.stop()
    assert actor.replay is not None and not actor.replay.reading
    health = actor.health()
    assert health["replay_emitted"] == 1 and not health["replay_done"]


def test_a_missing_replay_file_fails_the_constructor(book_parts, tmp_path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(ReplayFileError, match=re.escape(str(path))):
        MarketActorImpl(_spec(book_parts, tmp_path, replay_path=str(path)))
    bad = tmp_path / "bad.csv"
    bad.write_text("time,underlying,prise\n")
    with pytest.raises(ReplayFileError, match=re.escape(str(bad)) + ".*prise"):
        MarketActorImpl(_spec(book_parts, tmp_path, replay_path=str(bad)))


def test_two_tick_sources_are_refused(book_parts, tmp_path) -> None:
    with pytest.raises(ValueError, match="one"):
        _spec(book_parts, tmp_path, replay_path=str(tmp_path / "x.csv"), ticks_endpoint="ipc:///tmp/x")


def test_bad_zmq_ticks_are_counted_and_later_good_ticks_applied(book_parts, tmp_path, stoppable) -> None:
    spec = _spec(book_parts, tmp_path, ticks_endpoint=ipc_endpoint("ticks", tmp_path))
    updates = Updates(spec.updates_endpoint)
    stoppable(updates)
    actor = MarketActorImpl(spec)
    stoppable(actor)
    feed = Bus(zmq.Context())
    stoppable(type("Closer", (), {"close": lambda self: (feed.close(), feed.context.term())})())
    pub = feed.socket(zmq.PUB, spec.ticks_endpoint, bind=False)
    seq = iter(range(1, 1_000_000))

    def tick(price: float) -> bytes:
        return encode_tick(Tick(underlying="SPX", price=price, event_time_ns=time.time_ns(), seq=next(seq)))

    # A PUB drops what it sends before the SUB's subscription reaches it: resend a good
    # tick until it shows, so the bad ones below are known to arrive.
    updates.wait_for(lambda u: u.snapshot.underlyings["SPX"].price == 6901.0, between=lambda: pub.send(tick(6901.0)))
    assert actor.health()["malformed"] == 0

    pub.send(b"\xc1 not msgpack")
    pub.send(msgspec.msgpack.encode({"underlying": "SPX"}))  # msgpack, but not a tick
    pub.send(tick(-5.0))
    pub.send(tick(6950.0))
    updates.wait_for(lambda u: u.snapshot.underlyings["SPX"].price == 6950.0)
    health = actor.health()
    assert (health["undecodable"], health["refused"], health["malformed"]) == (2, 1, 3), health
    assert "price" in health["last_refused"] and "-5.0" in health["last_refused"]
    assert "undecodable" in health["last_undecodable"]
    assert health["errors"] == []

    pub.send(tick(6960.0))  # and the loop keeps going
    updates.wait_for(lambda u: u.snapshot.underlyings["SPX"].price == 6960.0)

    # The fast path's error is exported once a full revaluation has checked an estimate.
    deadline = time.monotonic() + DEADLINE_S
    while actor.health()["full_revaluations"] < 1:
        assert time.monotonic() < deadline, actor.health()
        time.sleep(0.05)
    health = actor.health()
    assert 0.0 <= health["fast_path_last_max_abs"] <= health["fast_path_max_abs"] < 1.0
    assert 0.0 <= health["fast_path_max_rel"] < 1e-3
