"""``riskd status``: ask a running daemon for ``/status`` and print it.

One job: fetch the daemon's status document (see :mod:`daemon.http_api` for its
fields and units) and print it for people (rich tables: latency per stage against
the p99 budget, pre-trade decisions per reason code, the engaged kill switches,
every account's margin, recent alerts, one health line) or, with
``--json``, as received.

Where the daemon is (first that applies): ``--url``; with ``-c CONFIG``, the URL the
daemon wrote to ``http.url`` in the config's ``daemon.run_dir`` (the default run
folder when run_dir is ""), else ``daemon.http_host``/``daemon.http_port``; else
:data:`DEFAULT_URL`. Exit codes: 0 printed; 2 no daemon answering, or the answer
was not a status document (one line on stderr).
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from actors.pretrade_endpoint import REASON_STAGE_PREFIX
from daemon.http_api import URL_FILE

__all__ = ["DEFAULT_URL", "StatusError", "error_text", "resolve_url", "fetch_status", "render_status", "run_status"]

DEFAULT_URL = "http://127.0.0.1:9464"
#: Alerts shown in the table (the newest).
ALERTS_SHOWN = 10


class StatusError(Exception):
    """No usable answer from the daemon; the message says why."""


def resolve_url(url: str | None, config_path: str | None) -> str:
    """The daemon's base URL (``http://host:port``) from the options; see the module doc.

    Raises :class:`~daemon.config_errors.ConfigError` for a bad config and
    :class:`StatusError` when the config names no reachable port.
    """
    if url:
        return _with_scheme(url)
    if not config_path:
        return DEFAULT_URL
    from actors.bus import default_run_dir
    from daemon.config import load_config

    settings = load_config(config_path).daemon
    run_dir = Path(settings.run_dir) if settings.run_dir else default_run_dir()
    try:
        written = (run_dir / URL_FILE).read_text().strip()
    except OSError:
        written = ""
    if written:
        return _with_scheme(written)
    if settings.http_port == 0:
        raise StatusError(f"{config_path}: daemon.http_port is 0 (any free port) and {run_dir / URL_FILE} "
                          "does not exist: is the daemon running? (or pass --url)")
    return f"http://{_connect_host(settings.http_host)}:{settings.http_port}"


def fetch_status(url: str, timeout_s: float = 5.0) -> tuple[dict[str, Any], str]:
    """(parsed document, raw JSON text) of ``GET url/status``; :class:`StatusError` if none."""
    target = url.rstrip("/") + "/status"
    # No proxies: the daemon is local (or named explicitly); an http_proxy in the
    # environment must not route the request elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(target, timeout=timeout_s) as response:
            text = response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise StatusError(f"the daemon at {url} answered HTTP {exc.code}: {error_text(exc)}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError(f"no daemon answering at {url} ({reason})") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise StatusError(f"the answer from {target} is not JSON ({exc})") from None
    if not isinstance(document, dict) or not {"stages", "accounts"} <= document.keys():
        raise StatusError(f"the answer from {target} is not a riskd status document")
    return document, text


def run_status(url: str | None, config_path: str | None, as_json: bool, out: TextIO, err: TextIO,
               timeout_s: float = 5.0) -> int:
    """``riskd status``: print the daemon's status; returns the exit code (0, or 2)."""
    try:
        base = resolve_url(url, config_path)
        document, text = fetch_status(base, timeout_s)
    except StatusError as exc:
        print(f"riskd status: {exc}", file=err)
        return 2
    if as_json:
        out.write(text if text.endswith("\n") else text + "\n")
    else:
        render_status(document, out, source=base)
    return 0


# --------------------------------------------------------------------------- rendering

def render_status(document: Mapping[str, Any], out: TextIO, source: str = "") -> None:
    """Print a status document as rich tables (stages, accounts), alerts and health."""
    # A pipe gets no terminal width: rich would assume 80 columns and elide cells.
    console = Console(file=out, width=None if out.isatty() else 160, highlight=False)
    stages = document.get("stages") or {}
    console.print(_stage_table({k: v for k, v in stages.items() if not k.startswith(REASON_STAGE_PREFIX)}, source))
    by_reason = {k[len(REASON_STAGE_PREFIX):]: v for k, v in stages.items() if k.startswith(REASON_STAGE_PREFIX)}
    if by_reason:
        console.print(_reason_table(by_reason))
    console.print(_kill_switch_line(document.get("kill_switches")))
    console.print(_fpga_line(document.get("health") or {}))
    console.print(_account_table(document.get("accounts") or []))
    alerts = document.get("alerts") or []
    if alerts:
        console.print(_alert_table(alerts))
    else:
        console.print("alerts: none")
    console.print(f"health: {escape(_health_line(document.get('health') or {}))}", soft_wrap=True)


def _stage_table(stages: Mapping[str, Mapping[str, Any]], source: str) -> Table:
    table = Table(title=f"latency per stage (us){' at ' + source if source else ''}")
    for name in ("stage", "count", "p50", "p99", "p99.9", "budget p99", "status"):
        table.add_column(name, justify="left" if name in ("stage", "status") else "right", overflow="fold")
    for stage, s in stages.items():
        status = "BREACH" if s.get("breached") else ("ok" if s.get("count") else "-")
        table.add_row(escape(stage), str(s.get("count", 0)), _us(s.get("p50_us")), _us(s.get("p99_us")),
                      _us(s.get("p999_us")), _us(s.get("budget_us")),
                      f"[bold red]{status}[/]" if status == "BREACH" else status)
    return table


def _reason_table(by_reason: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(title="pre-trade decisions by reason code (latency in us)")
    for name in ("reason", "decisions", "p50", "p99", "p99.9", "max"):
        table.add_column(name, justify="left" if name == "reason" else "right")
    for reason, s in sorted(by_reason.items(), key=lambda item: -int(item[1].get("count") or 0)):
        table.add_row(escape(reason), str(s.get("count", 0)), _us(s.get("p50_us")), _us(s.get("p99_us")),
                      _us(s.get("p999_us")), _us(s.get("max_us")))
    return table


def _kill_switch_line(switches: Mapping[str, Any] | None) -> str:
    """``kill switches: ...``: every engaged switch with who, why and since when (UTC)."""
    if switches is None:
        return "kill switches: - (no pre-trade hook)"
    engaged = ([switches["global"]] if switches.get("global") else []) + [
        *(switches.get("accounts") or {}).values(), *(switches.get("underlyings") or {}).values()]
    if not engaged:
        return "kill switches: none engaged"
    parts = []
    for s in engaged:
        since = s.get("since")
        stamp = (dt.datetime.fromtimestamp(since, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                 if isinstance(since, (int, float)) else "?")
        where = "GLOBAL" if s.get("scope") == "global" else f"{s.get('scope')} {s.get('key')}"
        parts.append(f"[bold red]{escape(where)}[/] by {escape(str(s.get('by') or '?'))} since {stamp}:"
                     f" {escape(str(s.get('reason') or ''))}")
    return "kill switches ENGAGED: " + "; ".join(parts)


def _fpga_line(health: Mapping[str, Any]) -> str:
    """``pre-trade path: ...``: what decides on each shard (``fpga``, ``fpga-shadow`` or
    ``software``) with its counters, and the pricing actor's Greeks path."""
    shards = health.get("shards") if isinstance(health.get("shards"), list) else []
    parts = []
    for i, shard in enumerate(shards):
        fpga = shard.get("fpga") if isinstance(shard, Mapping) else None
        if not isinstance(fpga, Mapping):
            continue
        text = f"shard {i}: {fpga.get('mode')}"
        if fpga.get("shadow"):
            text += (f" (compared {fpga.get('compared')}, mismatches {fpga.get('mismatches')},"
                     f" max IM error {fpga.get('max_im_error')})")
        elif fpga.get("path") == "fpga":
            text += (f" (decided {fpga.get('decided')}, software fallback {fpga.get('fallback')},"
                     f" device errors {fpga.get('device_errors')})")
        parts.append(text)
    market = health.get("market")
    greeks = market.get("fpga") if isinstance(market, Mapping) else None
    line = "pre-trade path: " + escape("; ".join(parts) if parts else "-")
    if isinstance(greeks, Mapping):
        text = f"{greeks.get('mode')}"
        if greeks.get("path") != "software":
            text += (f" (options {greeks.get('options')}, on software {greeks.get('software_options')},"
                     f" errors {greeks.get('errors')}, max rel err price {greeks.get('max_rel_err_price')},"
                     f" delta {greeks.get('max_rel_err_delta')}, vega {greeks.get('max_rel_err_vega')})")
        line += "\npricing Greeks path: " + escape(text)
    return line


def _account_table(accounts: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=f"accounts ({len(accounts)})")
    for name in ("account", "equity", "IM", "MM", "MM/equity", "tier", "binding scenario", "top driver"):
        table.add_column(name, justify="right" if name in ("equity", "IM", "MM", "MM/equity") else "left",
                         overflow="fold")
    for a in sorted(accounts, key=lambda a: str(a.get("account"))):
        binding = " ".join(str(x) for x in (a.get("binding_underlying"), a.get("binding_scenario")) if x) or "-"
        # Names come from the drop copy and config: escaped, never read as rich markup.
        table.add_row(escape(str(a.get("account"))), _money(a.get("equity")), _money(a.get("initial_margin")),
                      _money(a.get("maintenance_margin")), _percent(a.get("margin_ratio")), escape(str(a.get("tier"))),
                      escape(binding), escape(str(a.get("top_driver") or "-")))
    return table


def _alert_table(alerts: Sequence[Mapping[str, Any]]) -> Table:
    shown = alerts[-ALERTS_SHOWN:]
    table = Table(title=f"recent alerts ({len(shown)} of {len(alerts)}, newest last)")
    for name in ("time (UTC)", "stage", "state", "p99 us", "budget us", "samples"):
        table.add_column(name, justify="right" if name in ("p99 us", "budget us", "samples") else "left")
    for a in shown:
        when = a.get("at_wall_time")
        stamp = (dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                 if isinstance(when, (int, float)) else "-")
        table.add_row(stamp, escape(str(a.get("stage"))), escape(str(a.get("state"))), _us(a.get("p99_us")),
                      _us(a.get("budget_us")), str(a.get("count", "-")))
    return table


def _health_line(health: Mapping[str, Any]) -> str:
    """``actor: key=value ...; ...`` with the scalar counters of each actor."""
    parts = []
    for name, value in health.items():
        if isinstance(value, Mapping):
            parts.append(f"{name}: {_scalars(value)}")
        elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            parts.extend(f"{name}[{i}]: {_scalars(v)}" for i, v in enumerate(value))
        else:
            parts.append(f"{name}={_scalar(value)}")
    return "; ".join(parts) or "-"


def _scalars(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={_scalar(v)}" for k, v in values.items() if not isinstance(v, (Mapping, list))) or "-"


def _scalar(value: Any) -> str:
    return "-" if value is None else str(value)


# /status encodes NaN as null and infinities as "inf" / "-inf" (daemon.http_api).
def _us(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else f"{value:,.1f}"


def _money(value: Any) -> str:
    if value is None:
        return "n/a"
    return value if isinstance(value, str) else f"{value:,.0f}"


def _percent(value: Any) -> str:
    if value is None:
        return "n/a"
    return value if isinstance(value, str) else f"{value:.1%}"


def error_text(exc: urllib.error.HTTPError) -> str:
    """The ``error`` of a JSON error body, else the start of the body, else the reason."""
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return " ".join(body.split())[:200] or str(exc.reason)


def _with_scheme(url: str) -> str:
    return url if "://" in url else f"http://{url}"


def _connect_host(host: str) -> str:
    """Where to connect for a daemon bound on ``host`` (every interface -> loopback)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "127.0.0.1"
    if address.is_unspecified:
        return "[::1]" if address.version == 6 else "127.0.0.1"
    return f"[{host}]" if address.version == 6 else host
