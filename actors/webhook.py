"""Alerts to a webhook: HTTP POST of JSON, retried with backoff, off the hot path.

``WebhookSender.post(payload)`` only puts the payload on a bounded queue (never
blocks: when the queue is full the payload is dropped and counted, and the
alert still went to the log and /metrics). One background thread sends them in
order with ``urllib`` (stdlib; one POST at a time is all an alert rate needs),
retrying a failed POST (connection error, timeout, HTTP 5xx or 429) with
exponential backoff; a 4xx other than 429 is not retried (the receiver refuses
the payload, resending will not change that).
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.request
from typing import Annotated, Any, Callable
from urllib.parse import urlparse

import msgspec
from msgspec import Meta

log = logging.getLogger("riskd.webhook")


class WebhookSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``url``: where alerts are POSTed ("" = off; http or https). ``timeout_s``: per
    attempt, seconds. ``max_attempts``: tries per alert. ``backoff_s``: first retry
    delay, seconds, doubled each retry up to ``max_backoff_s``. ``queue_size``:
    alerts waiting at most (further ones are dropped and counted)."""

    url: str = ""
    timeout_s: Annotated[float, Meta(gt=0.0, le=60.0)] = 2.0
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 5
    backoff_s: Annotated[float, Meta(ge=0.0, le=60.0)] = 0.5
    max_backoff_s: Annotated[float, Meta(ge=0.0, le=600.0)] = 30.0
    queue_size: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000

    def __post_init__(self) -> None:
        if self.url and urlparse(self.url).scheme not in ("http", "https"):
            raise ValueError(f"url: expected an http:// or https:// URL, found {self.url!r}")


_ENCODER = msgspec.json.Encoder()


class WebhookSender:
    """A bounded queue and the thread that POSTs it (see the module docstring)."""

    def __init__(self, settings: WebhookSettings, *, sleep: Callable[[float], None] | None = None) -> None:
        self.settings = settings
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=settings.queue_size)
        self._stop = threading.Event()
        self._sleep = sleep or (lambda s: self._stop.wait(s))
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self.last_error = ""
        self._thread: threading.Thread | None = None
        if settings.url:
            self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._thread is not None

    def post(self, payload: Any) -> bool:
        """Queue ``payload`` (a msgspec-encodable object) for POSTing; False if off or full."""
        if self._thread is None:
            return False
        try:
            self._queue.put_nowait(_ENCODER.encode(payload))
            return True
        except queue.Full:
            self.dropped += 1
            log.error("webhook queue full (%d): alert dropped", self.settings.queue_size,
                      extra={"event": "webhook_dropped"})
            return False

    def pending(self) -> int:
        return self._queue.qsize()

    def stats(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "retries": self.retries, "pending": self.pending(), "last_error": self.last_error}

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread; alerts still queued after ``timeout_s`` are not sent."""
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout_s)
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            if body is None or self._stop.is_set():
                return
            self._deliver(body)

    def _deliver(self, body: bytes) -> None:
        s = self.settings
        delay = s.backoff_s
        for attempt in range(1, s.max_attempts + 1):
            retry = self._attempt(body)
            if retry is None:
                self.sent += 1
                return
            if not retry or attempt == s.max_attempts:
                break
            self.retries += 1
            self._sleep(delay)
            if self._stop.is_set():
                break
            delay = min(delay * 2.0, s.max_backoff_s)
        self.failed += 1
        log.error("webhook %s: alert not delivered: %s", s.url, self.last_error, extra={"event": "webhook_failed"})

    def _attempt(self, body: bytes) -> bool | None:
        """None if delivered; else True when worth retrying, False when not."""
        request = urllib.request.Request(self.settings.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                response.read()
            return None
        except urllib.error.HTTPError as exc:
            self.last_error = f"HTTP {exc.code}"
            return exc.code >= 500 or exc.code == 429
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            self.last_error = str(getattr(exc, "reason", exc))
            return True

