"""The daemon's HTTP port: ``/metrics``, ``/status``, collateral, kill switches and what-if checks.

One job: :class:`HttpApi`, a small threaded WSGI server (stdlib ``wsgiref``) over a
:class:`DaemonView` of the running daemon. Off the hot path: every request reads
caches the daemon keeps anyway (stage snapshots, latest AccountRisk, health).

Routes (JSON bodies are UTF-8; errors are ``{"error": "message"}``):

- ``GET /metrics``: Prometheus text, produced by prometheus-client from the
  :class:`~daemon.metrics.Metrics` registry: per-stage latency vs budget,
  ``riskd_account_*`` gauges, ``riskd_budget_alerts_total``,
  ``riskd_health_value`` (names, labels and units in :mod:`daemon.metrics`).
- ``GET /status``: ``{"at_wall_time", "stages", "accounts", "alerts", "health"}``::

      stages:   {stage: {count, window_count, p50_us, p99_us, p999_us, max_us,
                         budget_us, breached, anomalies}}        latencies in us
      accounts: [{account, equity, initial_margin, maintenance_margin,
                  initial_margin_with_orders, margin_ratio, tier, binding_underlying,
                  binding_scenario, top_driver, last_seq, model_version}]
                                                  money in currency, ratio a fraction
      alerts:   [{stage, p99_us, budget_us, count, at_wall_time, state}]  most recent last
      kill_switches: as GET /killswitch (null without the pre-trade hook)
      health:   the daemon's health dict, as is

  ``at_wall_time``: float seconds since the Unix epoch. JSON has no NaN or
  infinity, so non-finite floats are encoded as: NaN -> ``null`` (no value: an
  empty latency window, a margin that could not be computed), +inf -> ``"inf"``,
  -inf -> ``"-inf"`` (e.g. ``margin_ratio`` when equity <= 0).
- ``POST /collateral`` with ``Content-Type: application/json`` and body
  ``{"account": str, "cash": number}`` (cash in the account's currency): 200
  ``{"ok": true}``; 400 bad JSON, missing, unknown or ill-typed field, non-finite
  cash (the message names the field); 404 unknown account; 413 body over
  ``max_body_bytes``; 415 another content type. JSON only because a browser cannot
  send it cross-site without a CORS preflight, which this server never grants: a
  web page the operator happens to open cannot change collateral.
- ``GET /killswitch``: the engaged kill switches ``{"global": {...}|null, "accounts": {id: {...}},
  "underlyings": {id: {...}}}`` (each ``{scope, key, reason, by, since}``, since in wall-clock s).
- ``POST /killswitch`` (JSON, body in :mod:`daemon.http_control`): engage or clear one
  switch; journaled before it takes effect, then applied on every position shard.
  200 ``{"changed": bool, "kill_switches": {...}, "shards": {"applied": n, "failed": [...]}}``;
  400 a bad field; 404 an unknown account or underlying.
- ``POST /what-if`` (JSON): the pre-trade decision an order would get now, from its
  account's shard, without reserving anything: 200 with the Decision's fields
  (reason code, message, margin before/after, binding scenario).
- The three POST routes take JSON only, bodies up to ``max_body_bytes`` (413 over,
  415 another content type); without the pre-trade hook the kill-switch and
  what-if routes answer 404.
- Any other path: 404; a known path with another method: 405 with ``Allow``.
  A handler exception answers 500 with its message and is logged; the server goes on.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import numbers
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec
from prometheus_client import make_wsgi_app

from actors.latency import BudgetBreach, StageStats
from actors.messages import AccountRisk
from actors.pretrade_messages import CheckRequest, Decision, KillSwitchCommand
from daemon.http_control import HttpError, parse_collateral, parse_kill_switch, parse_what_if
from daemon.metrics import Metrics

__all__ = ["DaemonView", "HttpApi", "URL_FILE", "to_json_value", "status_document"]

log = logging.getLogger("riskd.http")

#: Name of the file in the daemon's run_dir holding its HTTP base URL (``riskd status`` reads it).
URL_FILE = "http.url"

StartResponse = Callable[..., Any]
_ROUTES: dict[str, tuple[str, ...]] = {"/metrics": ("GET",), "/status": ("GET",), "/collateral": ("POST",),
                                       "/killswitch": ("GET", "POST"), "/what-if": ("POST",)}
_ROUTE_LIST = "GET /metrics, GET /status, POST /collateral, GET|POST /killswitch, POST /what-if"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error"}


class DaemonView(Protocol):
    """What the running daemon shows the HTTP server. Every method is called on a
    server thread, concurrently with the daemon: return cached state, never block
    on the hot path."""

    def stage_snapshot(self) -> Mapping[str, StageStats]:
        """Per-stage latency stats (us), merged over all actors."""
        ...

    def accounts(self) -> Sequence[AccountRisk]:
        """The latest AccountRisk of every account."""
        ...

    def alerts(self) -> Sequence[BudgetBreach]:
        """Recent latency budget alerts, most recent last."""
        ...

    def health(self) -> Mapping[str, Any]:
        """JSON-able per-actor counters (cached: cheap to call)."""
        ...

    def set_collateral(self, account: str, cash: float) -> None:
        """Set an account's cash / collateral value (currency); KeyError if unknown."""
        ...


class PretradeControlView(Protocol):
    """The daemon's pre-trade controls (daemon.pretrade_control.PretradeControl)."""

    def kill_switches(self) -> dict[str, Any]:
        """The engaged kill switches (KillSwitches.state)."""
        ...

    def set_kill_switch(self, command: KillSwitchCommand) -> dict[str, Any]:
        """Journal and apply ``command`` on every shard; KeyError for an unknown key."""
        ...

    def what_if(self, request: CheckRequest) -> Decision:
        """The shard's decision on ``request`` (a what-if: nothing is reserved)."""
        ...


class _Server(ThreadingMixIn, WSGIServer):
    # Request threads are fire-and-forget: a stuck client must not block stop().
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # wsgiref writes every request to stderr; the daemon's log is the place, at debug.
        log.debug("%s - %s", self.address_string(), format % args)


class HttpApi:
    """The daemon's HTTP server over ``view``.

    ``host``/``port``: where to listen (``port=0``: any free port; read :attr:`url`
    after :meth:`start`). Listening on every interface (``0.0.0.0``, ``::``, "")
    exposes positions and the collateral control to the network, so it needs
    ``allow_any_interface=True``. ``metrics``: the registry served on /metrics (a
    new :class:`Metrics` if None); the view's stages, accounts, alerts and health
    are registered on it here, so do not register those sources yourself.
    ``max_body_bytes``: the largest POST body accepted.
    """

    def __init__(self, view: DaemonView, host: str = "127.0.0.1", port: int = 0, metrics: Metrics | None = None,
                 *, allow_any_interface: bool = False, max_body_bytes: int = 64 * 1024,
                 control: PretradeControlView | None = None) -> None:
        if _is_any_interface(host) and not allow_any_interface:
            raise ValueError(f"refusing to listen on every interface (host {host!r}): /status and /collateral "
                             "expose positions and change collateral; bind 127.0.0.1 or a specific address, "
                             "or pass allow_any_interface=True")
        if not 0 <= port <= 65535:
            raise ValueError(f"port: expected 0..65535, found {port}")
        self.view = view
        self.control = control
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.add_stage_source(view.stage_snapshot)
        self.metrics.add_account_source(view.accounts)
        self.metrics.add_alert_source(view.alerts)
        self.metrics.add_health_source(view.health)
        self._prometheus = make_wsgi_app(self.metrics.registry)
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._url_file: Path | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> str:
        """Bind and serve in a daemon thread; return :attr:`url`. OSError if the port is taken."""
        with self._lock:
            if self._server is not None or self._stopped:
                raise RuntimeError("HttpApi.start: already started (an HttpApi serves once)")
            server_class = _Server6 if ":" in self.host else _Server
            server = make_server(self.host, self.port, self, server_class=server_class, handler_class=_QuietHandler)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name="riskd-http", daemon=True)
            thread.start()
            self._server, self._thread = server, thread
        log.info("HTTP API on %s", self.url, extra={"event": "http_started", "url": self.url})
        return self.url

    @property
    def url(self) -> str:
        """``http://host:port`` actually bound (IPv6 hosts in brackets)."""
        if self._server is None:
            raise RuntimeError("HttpApi.url: not started")
        host, port = self._server.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def publish_url(self, run_dir: str | Path) -> Path:
        """Write :attr:`url` to ``run_dir/http.url`` (atomically, mode 0600) for
        ``riskd status``; :meth:`stop` removes it. Returns the file's path."""
        path = Path(run_dir) / URL_FILE
        tmp = path.with_name(f".{URL_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.url + "\n")
        os.replace(tmp, path)  # a reader never sees a half-written URL
        self._url_file = path
        return path

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._stopped = True
            self._thread = None
            url_file, self._url_file = self._url_file, None
        if url_file is not None:
            try:
                # Only our own URL: a newer daemon may have replaced the file.
                if server is not None and url_file.read_text().strip() == self.url:
                    url_file.unlink()
            except OSError:
                pass
        if thread is None or server is None:
            return
        server.shutdown()  # returns once serve_forever has left its loop
        server.server_close()
        thread.join()

    def __enter__(self) -> HttpApi:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- WSGI

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application (usable without the server, e.g. under another WSGI host)."""
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        try:
            allowed = _ROUTES.get(path)
            if allowed is None:
                raise HttpError(404, f"no route {path!r}; routes: {_ROUTE_LIST}")
            if method not in allowed:
                raise HttpError(405, f"{method} not allowed on {path}; use {', '.join(allowed)}",
                                 [("Allow", ", ".join(allowed))])
            if path == "/metrics":
                return self._prometheus(environ, start_response)
            if path == "/status":
                return _json(start_response, 200, status_document(self.view, self.control))
            if path == "/killswitch" and method == "GET":
                return _json(start_response, 200, self._control().kill_switches())
            body = self._body(environ)
            if path == "/collateral":
                return _json(start_response, 200, self._collateral(body))
            if path == "/killswitch":
                return _json(start_response, 200, self._kill_switch(body))
            return _json(start_response, 200, self._what_if(body))
        except HttpError as exc:
            return _json(start_response, exc.status, {"error": str(exc)}, exc.headers)
        except Exception as exc:
            log.exception("HTTP %s %s failed", method, path, extra={"event": "http_error", "path": path})
            return _json(start_response, 500, {"error": f"internal error: {type(exc).__name__}: {exc}"})

    def _body(self, environ: dict[str, Any]) -> bytes:
        """The JSON body of a POST (413 over ``max_body_bytes``, 415 not JSON)."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HttpError(400, f"Content-Length: expected an integer, found {environ['CONTENT_LENGTH']!r}") from None
        if length > self.max_body_bytes:
            raise HttpError(413, f"body: {length} bytes, the limit is {self.max_body_bytes}")
        # Read before any other refusal: an unread body can reset the connection
        # before the client has read our answer.
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(415, f"Content-Type: expected application/json, found {content_type or 'none'!r}")
        return body

    def _control(self) -> "PretradeControlView":
        if self.control is None:
            raise HttpError(404, "the pre-trade hook is not running on this daemon (no kill switches or what-if)")
        return self.control

    def _kill_switch(self, body: bytes) -> dict[str, Any]:
        control = self._control()
        command = parse_kill_switch(body)
        try:
            return control.set_kill_switch(command)
        except KeyError as exc:
            raise HttpError(404, f"field 'key': unknown {command.scope} {exc.args[0]!r}") from None
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None

    def _what_if(self, body: bytes) -> dict[str, Any]:
        control = self._control()
        request = parse_what_if(body)
        return msgspec.structs.asdict(control.what_if(request))

    def _collateral(self, body: bytes) -> dict[str, Any]:
        account, cash = parse_collateral(body)
        try:
            self.view.set_collateral(account, cash)
        except KeyError:
            raise HttpError(404, f"field 'account': unknown account {account!r}") from None
        except ValueError as exc:  # the daemon refused the value itself
            raise HttpError(400, f"field 'cash': {exc}") from None
        log.info("collateral of %s set to %r", account, cash,
                 extra={"event": "collateral_set", "account": account, "cash": cash})
        return {"ok": True}


# --------------------------------------------------------------------------- helpers

def status_document(view: DaemonView, control: "PretradeControlView | None" = None) -> dict[str, Any]:
    """The ``/status`` JSON object (JSON-valid: see :func:`to_json_value`)."""
    stages = {stage: msgspec.structs.asdict(stats) for stage, stats in view.stage_snapshot().items()}
    accounts = [{k: v for k, v in msgspec.structs.asdict(risk).items() if k != "stamps"} for risk in view.accounts()]
    alerts = [msgspec.structs.asdict(alert) for alert in view.alerts()]
    kill_switches = control.kill_switches() if control is not None else None
    return to_json_value({"at_wall_time": time.time(), "stages": stages, "accounts": accounts, "alerts": alerts,
                          "kill_switches": kill_switches, "health": view.health()})


def to_json_value(value: Any) -> Any:
    """``value`` with every float JSON-valid: NaN -> None, +-inf -> "inf"/"-inf".

    Mappings become dicts (keys as str), sequences lists, msgspec Structs dicts,
    integer and real number types (NumPy's too) int/float; anything else its str().
    """
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(value, msgspec.Struct):
        return to_json_value(msgspec.structs.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json_value(v) for v in value]
    return str(value)


def _json(start_response: StartResponse, status: int, body: Any,
          headers: Sequence[tuple[str, str]] = ()) -> list[bytes]:
    # allow_nan=False: a non-finite float that escaped to_json_value is a bug, not invalid JSON on the wire.
    data = json.dumps(to_json_value(body), allow_nan=False).encode()
    start_response(f"{status} {_REASONS.get(status, '')}".rstrip(),
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                    ("Cache-Control", "no-store"), *headers])
    return [data]


def _is_any_interface(host: str) -> bool:
    """True for hosts that mean every interface ("", 0.0.0.0, ::, and their spellings)."""
    if host.strip() in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False  # a hostname: resolved by bind
