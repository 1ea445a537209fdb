"""Webhook alerts against a real HTTP server on loopback: retries, no retry on 4xx, never blocking."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from actors.webhook import WebhookSender, WebhookSettings
from tests.fix_sim import wait_for


class Receiver:
    """An HTTP server answering each POST with the next status of ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int], delay_s: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.bodies: list[object] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                time.sleep(delay_s)
                receiver.attempts += 1
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_retried_with_backoff_until_delivered_once() -> None:
    receiver = Receiver([500, 503])
    delays: list[float] = []
    sender = WebhookSender(WebhookSettings(url=receiver.url, backoff_s=0.01, max_backoff_s=0.02),
                           sleep=delays.append)
    try:
        assert sender.post({"event": "margin_call", "account": "A1", "amount_needed": 1234.5})
        wait_for(lambda: sender.sent == 1, 10.0)
        assert receiver.bodies == [{"event": "margin_call", "account": "A1", "amount_needed": 1234.5}]
        assert receiver.attempts == 3 and sender.retries == 2 and sender.failed == 0
        assert delays == [0.01, 0.02]  # doubled, capped
    finally:
        sender.stop()
        receiver.close()


def test_client_error_is_not_retried_and_order_is_kept() -> None:
    receiver = Receiver([400])
    sender = WebhookSender(WebhookSettings(url=receiver.url, backoff_s=0.0))
    try:
        sender.post({"n": 1})
        sender.post({"n": 2})
        wait_for(lambda: sender.sent + sender.failed == 2, 10.0)
        assert sender.failed == 1 and sender.retries == 0 and sender.last_error == "HTTP 400"
        assert receiver.bodies == [{"n": 2}]
    finally:
        sender.stop()
        receiver.close()


def test_unreachable_receiver_gives_up_after_max_attempts() -> None:
    sender = WebhookSender(WebhookSettings(url="http://127.0.0.1:9/none", max_attempts=3, backoff_s=0.0,
                                           timeout_s=0.5))
    try:
        sender.post({"n": 1})
        wait_for(lambda: sender.failed == 1, 10.0)
        assert sender.retries == 2 and sender.sent == 0
    finally:
        sender.stop()


def test_post_never_blocks_when_the_receiver_is_slow() -> None:
    receiver = Receiver([], delay_s=0.5)
    sender = WebhookSender(WebhookSettings(url=receiver.url, queue_size=2))
    try:
        results = [sender.post({"n": i}) for i in range(10)]  # returns at once: queue, not network
        assert sender.dropped == sum(not r for r in results) and sender.dropped >= 7
        wait_for(lambda: sender.sent == sum(results), 10.0)
        assert [b["n"] for b in receiver.bodies] == [i for i, r in enumerate(results) if r]
    finally:
        sender.stop()
        receiver.close()


def test_off_without_url_and_url_checked() -> None:
    assert not WebhookSender(WebhookSettings()).post({"n": 1})
    with pytest.raises(ValueError, match="url"):
        WebhookSettings(url="ftp://example.org/x")
