"""The pre-trade hook over its sockets: a position shard's ROUTER answered on the shard's
thread, the client library routing by account and failing closed.

The reservation case runs end to end: two orders each within the margin limit
alone, beyond it together; the second is rejected until the drop copy (on the
shard's events socket) cancels the first. Expected limits come from a fresh
account (tests/test_pretrade_checks.im_of), not from the service.
"""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from actors.bus import Bus, ReceiveLoop, ipc_endpoint
from actors.kill_switch import KillSwitches
from actors.messages import AccountRisk, OrderMsg, Stamps, decode, encode
from actors.position_service import PositionService
from actors.position_shard import PositionShard
from actors.pretrade import PreTradeChecker
from actors.pretrade_client import PretradeClient
from actors.pretrade_config import PretradeSettings
from actors.pretrade_messages import CheckRequest, Decision
from actors.pretrade_messages import decode as decode_pretrade
from actors.pretrade_messages import encode as encode_pretrade
from risk.model import RiskModel
from tests.test_pretrade_checks import im_of


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def service(book_parts, tmp_path):
    model = RiskModel(*book_parts)
    price = float(model.valuation.mark[model.table.index["ES"]])
    shard = PositionShard(0, 1, model)
    # Cash such that one 2-lot ES order fits under equity x max utilization, two do not.
    cash = 1.5 * im_of(model, {}, {"ES": 2.0}) / model.params.profiles["span"].max_utilization
    shard.add_account("A", model.params.profiles["span"], cash)
    shard.add_account("B", model.params.profiles["span"], cash)
    checker = PreTradeChecker(shard, PretradeSettings(reservation_ttl_s=60.0), KillSwitches())
    bus = Bus(zmq.Context())
    endpoints = {name: ipc_endpoint(name, tmp_path) for name in ("events", "risk", "pretrade")}
    svc = PositionService(shard, bus, endpoints["events"], endpoints["risk"],
                          pretrade=(endpoints["pretrade"], checker, 1e6)).start()
    yield svc, bus, endpoints, price
    svc.stop()
    bus.close()


def test_reservation_blocks_the_second_order_until_the_drop_copy_cancels_the_first(service) -> None:
    svc, bus, endpoints, price = service
    client = PretradeClient([endpoints["pretrade"]], timeout_us=5e6, context=bus.context)
    push = bus.socket(zmq.PUSH, endpoints["events"], bind=False)
    risks: list[AccountRisk] = []
    lock = threading.Lock()

    def on_risk(frame: bytes) -> None:
        message = decode(frame)
        if isinstance(message, AccountRisk):
            with lock:
                risks.append(message)
    sub = bus.socket(zmq.SUB, endpoints["risk"], bind=False)
    listener = ReceiveLoop({sub: on_risk}, name="risk", context=bus.context).start()
    time.sleep(0.2)
    try:
        first = client.check(CheckRequest("O1", "A", "ES", 1, 2.0, price))
        assert first.accepted and first.reason == "accepted"
        assert first.im_after == pytest.approx(first.im_before + first.marginal_im)
        second = client.check(CheckRequest("O2", "A", "ES", 1, 2.0, price))
        assert not second.accepted and second.reason == "margin"
        assert second.im_after > second.limit and "margin" in second.message
        # The accepted order's reservation is published as the account's IM with orders.
        _wait(lambda: any(r.account == "A" and r.initial_margin_with_orders == pytest.approx(first.im_after)
                          for r in risks))
        push.send(encode(OrderMsg("X1", "canceled", "A", "ES", 1, 2.0, 0.0, 0.0, price, "O1", "C1", "", 1,
                                  Stamps())))
        _wait(lambda: "O1" not in svc.shard.accounts["A"].orders)
        again = client.check(CheckRequest("O2", "A", "ES", 1, 2.0, price))
        assert again.accepted, again.message
    finally:
        listener.stop()
        client.close()


def test_stopped_shard_fails_closed_and_fail_open_accounts_pass_loudly(service) -> None:
    svc, bus, endpoints, price = service
    svc.stop()
    client = PretradeClient([endpoints["pretrade"]], timeout_us=200_000, fail_open=("B",), context=bus.context)
    try:
        closed = client.check(CheckRequest("O1", "A", "ES", 1, 1.0, price))
        assert not closed.accepted and closed.reason == "timeout"
        opened = client.check(CheckRequest("O2", "B", "ES", 1, 1.0, price))
        assert opened.accepted and opened.reason == "timeout_fail_open"
        assert client.timeouts == 2
    finally:
        client.close()


def test_a_request_older_than_the_client_timeout_is_refused_unchecked(service, book_parts) -> None:
    svc, bus, endpoints, price = service
    dealer = bus.socket(zmq.DEALER, endpoints["pretrade"], bind=False)
    stale = CheckRequest("LATE", "A", "ES", 1, 1.0, price, sent_ns=time.monotonic_ns() - 10**10)  # 10 s ago
    dealer.send_multipart([b"", encode_pretrade(stale)])
    dealer.send_multipart([b"", b"garbage"])
    assert dealer.poll(10_000)
    late = decode_pretrade(dealer.recv_multipart()[-1])
    assert isinstance(late, Decision) and late.reason == "timeout" and not late.accepted
    assert "LATE" not in svc.shard.accounts["A"].orders  # no margin reserved for it
    assert dealer.poll(10_000)
    bad = decode_pretrade(dealer.recv_multipart()[-1])
    assert bad.reason == "bad_request" and not bad.accepted
    assert svc.pretrade is not None and svc.pretrade.late == 1


def test_a_sub_millisecond_budget_is_waited_for_in_full_before_failing_closed(tmp_path) -> None:
    """pyzmq truncates poll timeouts to whole ms: a 0.8 ms budget must be waited out
    asleep, not by spinning on poll(0) (which starves the shard on a 2-core host), then
    fail closed. Both bounds are one-sided: machine load can only help them."""
    context = zmq.Context()
    endpoint = ipc_endpoint("silent", tmp_path)
    silent = context.socket(zmq.ROUTER)  # connected, never answers
    silent.bind(endpoint)
    client = PretradeClient([endpoint], timeout_us=800.0, context=context)
    try:
        wall, cpu = time.monotonic(), time.process_time()
        for i in range(50):
            start = time.monotonic_ns()
            decision = client.check(CheckRequest(f"S{i}", "A", "ES", 1, 1.0, 100.0))
            assert decision.reason == "timeout" and not decision.accepted
            assert time.monotonic_ns() - start >= 800_000
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        assert cpu < 0.5 * wall, f"the client spun: {cpu * 1e3:.1f} ms CPU in {wall * 1e3:.1f} ms"
    finally:
        client.close()
        silent.close(0)
        context.term()


def test_reservation_only_republishes_are_bounded_per_flush_and_all_arrive(book_parts, tmp_path) -> None:
    """After a burst of accepted orders on 40 accounts, each flush (one runs after every
    check) republishes at most RESERVED_BATCH of them, and every account arrives once,
    carrying its IM with the order reserved."""
    from actors.position_service import RESERVED_BATCH

    model = RiskModel(*book_parts)
    price = float(model.valuation.mark[model.table.index["ES"]])
    shard = PositionShard(0, 1, model)
    accounts = [f"A{i:02d}" for i in range(40)]
    for account in accounts:
        shard.add_account(account, model.params.profiles["span"], 1e8)
    checker = PreTradeChecker(shard, PretradeSettings(reservation_ttl_s=60.0), KillSwitches())
    bus = Bus(zmq.Context())
    endpoints = {name: ipc_endpoint(name, tmp_path) for name in ("events", "risk", "pretrade")}
    svc = PositionService(shard, bus, endpoints["events"], endpoints["risk"],
                          pretrade=(endpoints["pretrade"], checker, 1e6))  # not started: flushes driven here
    published: list[list[AccountRisk]] = []
    svc._publish = lambda message: published[-1].append(message)  # type: ignore[method-assign]
    try:
        for i, account in enumerate(accounts):
            decision = checker.check(CheckRequest(f"O{i}", account, "ES", 1, 1.0, price))
            assert decision.accepted, decision.message
            svc._mark_reserved(account)
        for _ in range(5):
            published.append([])
            svc._flush()
        assert max(len(batch) for batch in published) <= RESERVED_BATCH
        seen = [m.account for batch in published for m in batch]
        assert sorted(seen) == accounts  # each exactly once
        for message in (m for batch in published for m in batch):
            account = shard.accounts[message.account]
            assert message.initial_margin_with_orders == account.initial_margin_with_orders()
            assert message.initial_margin_with_orders > account.initial_margin()  # the order's reservation
    finally:
        svc._loop._wake_rx.close(0)  # never started: only its wake pair to close
        svc._loop._wake_tx.close(0)
        bus.close()


def test_a_waiting_check_goes_before_reservation_only_republishes(book_parts, tmp_path) -> None:
    """With a check queued on the ROUTER, a flush republishes one reserved account (the
    queue always drains) and stops; once no check waits, up to RESERVED_BATCH go per
    flush; every account arrives once, with its IM with orders as the shard has it."""
    from actors.position_service import RESERVED_BATCH

    model = RiskModel(*book_parts)
    price = float(model.valuation.mark[model.table.index["ES"]])
    shard = PositionShard(0, 1, model)
    accounts = [f"A{i:02d}" for i in range(2 * RESERVED_BATCH + 3)]
    for account in accounts:
        shard.add_account(account, model.params.profiles["span"], 1e8)
    checker = PreTradeChecker(shard, PretradeSettings(reservation_ttl_s=60.0), KillSwitches())
    context = zmq.Context()
    bus = Bus(context)
    endpoints = {name: ipc_endpoint(name, tmp_path) for name in ("events", "risk", "pretrade")}
    svc = PositionService(shard, bus, endpoints["events"], endpoints["risk"],
                          pretrade=(endpoints["pretrade"], checker, 1e6))  # not started: flushes driven here
    published: list[list[AccountRisk]] = []
    svc._publish = lambda message: published[-1].append(message)  # type: ignore[method-assign]
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoints["pretrade"])
    try:
        for i, account in enumerate(accounts):
            assert checker.check(CheckRequest(f"O{i}", account, "ES", 1, 1.0, price)).accepted
            svc._mark_reserved(account)
        assert svc.pretrade is not None
        router = svc.pretrade.socket
        dealer.send_multipart([b"", encode_pretrade(CheckRequest("W", accounts[0], "ES", 1, 1.0, price))])
        _wait(lambda: router.getsockopt(zmq.EVENTS) & zmq.POLLIN)
        for _ in range(3):  # the check stays queued: one republish per flush
            published.append([])
            svc._flush()
            assert len(published[-1]) == 1
        router.recv_multipart()  # the check is taken
        while len(sum(published, [])) < len(accounts):
            published.append([])
            svc._flush()
            assert 1 <= len(published[-1]) <= RESERVED_BATCH
        assert len(published[-1]) <= RESERVED_BATCH and max(len(b) for b in published) == RESERVED_BATCH
        seen = [m.account for batch in published for m in batch]
        assert sorted(seen) == accounts  # each exactly once
        for message in sum(published, []):
            assert message.initial_margin_with_orders == shard.accounts[message.account].initial_margin_with_orders()
    finally:
        dealer.close(0)
        svc._loop._wake_rx.close(0)  # never started: only its wake pair to close
        svc._loop._wake_tx.close(0)
        bus.close()
