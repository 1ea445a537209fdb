"""``riskd check`` and ``riskd kill-switch``: the pre-trade hook from the command line.

``riskd check -c CONFIG ACCOUNT INSTRUMENT buy|sell QTY PRICE`` asks the account's
position shard, through the same client library the OMS uses
(:class:`actors.pretrade_client.PretradeClient`, endpoints from the config's
``daemon.run_dir`` and shard count), whether the order may go, and prints the
decision: reason code, message, margin before and after (currency), the binding
scenario. By default it is a what-if (nothing reserved); ``--reserve`` makes it a
real check that reserves margin like any accepted order (until the drop copy
reports the order or the TTL runs out). Exit codes: 0 accepted, 1 rejected, 2 no
answer could be had (bad arguments, config).

``riskd kill-switch engage|clear (--global | --account ID | --underlying ID)
--reason TEXT --by WHO`` posts the command to the daemon's ``/killswitch``
(journaled there, then applied on every shard) and prints the engaged switches.
The daemon is found as ``riskd status`` finds it. Exit codes: 0 done, 2 refused or
no daemon.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

import msgspec

from actors.bus import default_run_dir
from actors.pretrade_client import PretradeClient
from actors.pretrade_messages import CheckRequest, Decision
from daemon.http_api import to_json_value
from daemon.pretrade_control import pretrade_endpoints
from daemon.status_cmd import StatusError, error_text, resolve_url

__all__ = ["run_check", "run_kill_switch", "render_decision"]


def run_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``riskd check``: 0 accepted, 1 rejected, 2 unusable arguments."""
    from daemon.config import load_config

    config = load_config(args.config)
    if not (0.0 < args.quantity < math.inf):
        print(f"riskd check: QTY: expected contracts > 0, found {args.quantity}", file=err)
        return 2
    if not (0.0 < args.price < math.inf):
        print(f"riskd check: PRICE: expected a per-unit price > 0, found {args.price}", file=err)
        return 2
    run_dir = Path(config.daemon.run_dir) if config.daemon.run_dir else default_run_dir()
    endpoints = pretrade_endpoints(run_dir, config.daemon.shards)
    timeout_us = args.timeout_us if args.timeout_us is not None else max(config.pretrade.timeout_us, 100_000.0)
    order_id = args.order_id or f"riskd-check-{os.getpid()}-{time.time_ns()}"
    request = CheckRequest(order_id, args.account, args.instrument, 1 if args.side == "buy" else -1,
                           float(args.quantity), float(args.price), liquidation=args.liquidation,
                           replaces=args.replaces or "", what_if=not args.reserve)
    client = PretradeClient(endpoints, timeout_us=timeout_us)
    try:
        decision = client.check(request)
    finally:
        client.close()
    render_decision(decision, out, as_json=args.json, what_if=not args.reserve)
    return 0 if decision.accepted else 1


def render_decision(decision: Decision, out: TextIO, *, as_json: bool = False, what_if: bool = True) -> None:
    """One decision, as text for people or as a JSON object (NaN figures as null)."""
    if as_json:
        print(json.dumps(to_json_value(msgspec.structs.asdict(decision)), allow_nan=False), file=out)
        return
    verdict = "ACCEPTED" if decision.accepted else "REJECTED"
    print(f"{decision.order_id}: {verdict} ({decision.reason}){' [what-if: nothing reserved]' if what_if else ''}",
          file=out)
    if decision.message:
        print(f"  {decision.message}", file=out)
    if not math.isnan(decision.im_before):
        print(f"  initial margin {decision.im_before:,.2f} -> {decision.im_after:,.2f}"
              f" (order adds {decision.marginal_im:,.2f}); limit {decision.limit:,.2f} of equity"
              f" {decision.equity:,.2f}", file=out)
    if decision.binding_scenario:
        print(f"  binding scenario: {decision.binding_scenario}", file=out)
    if decision.tier:
        print(f"  account tier: {decision.tier}", file=out)
    if decision.decided_ns and decision.received_ns:
        print(f"  decided in {(decision.decided_ns - decision.received_ns) / 1000:.1f} us on the shard", file=out)


def run_kill_switch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``riskd kill-switch``: 0 done, 2 refused or no daemon."""
    if args.global_:
        scope, key = "global", ""
    elif args.account:
        scope, key = "account", args.account
    else:
        scope, key = "underlying", args.underlying
    body = {"scope": scope, "engaged": args.action == "engage", "reason": args.reason, "by": args.by}
    if key:
        body["key"] = key
    try:
        base = resolve_url(args.url, args.config)
    except StatusError as exc:
        print(f"riskd kill-switch: {exc}", file=err)
        return 2
    request = urllib.request.Request(base.rstrip("/") + "/killswitch", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the daemon is local: no proxy
    try:
        with opener.open(request, timeout=args.timeout) as response:
            answer = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        message = error_text(exc)
        print(f"riskd kill-switch: the daemon at {base} refused (HTTP {exc.code}): {message}", file=err)
        return 2
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"riskd kill-switch: no daemon answering at {base} ({getattr(exc, 'reason', exc)})", file=err)
        return 2
    where = "global" if scope == "global" else f"{scope} {key}"
    shards = answer.get("shards", {})
    print(f"kill switch {where}: {'engaged' if args.action == 'engage' else 'cleared'}"
          f"{'' if answer.get('changed') else ' (no change: it already was)'};"
          f" applied on {shards.get('applied', '?')} shards", file=out)
    for failure in shards.get("failed") or []:
        print(f"  shard {failure.get('shard')} did not apply it now ({failure.get('error')}): it reads the"
              " journal when it restarts", file=out)
    print("engaged: " + json.dumps(answer.get("kill_switches"), sort_keys=True), file=out)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``check`` and ``kill-switch`` on the ``riskd`` subcommand parser."""
    check = sub.add_parser("check", help="ask the pre-trade hook whether an order may go (what-if by default)")
    check.add_argument("-c", "--config", required=True, help="the running daemon's config (endpoints, shards)")
    check.add_argument("account")
    check.add_argument("instrument")
    check.add_argument("side", choices=("buy", "sell"))
    check.add_argument("quantity", type=float, help="contracts (> 0)")
    check.add_argument("price", type=float, help="limit price per unit (> 0)")
    check.add_argument("--order-id", default=None, help="the order's id (default: a fresh riskd-check-* id)")
    check.add_argument("--replaces", default=None, help="the order id this one replaces")
    check.add_argument("--liquidation", action="store_true", help="a liquidation order (liquidation tiers)")
    check.add_argument("--reserve", action="store_true",
                       help="a real check: an accepted order reserves margin (default: what-if, nothing reserved)")
    check.add_argument("--timeout-us", type=float, default=None,
                       help="budget in us before failing closed (default: max(pretrade.timeout_us, 100000))")
    check.add_argument("--json", action="store_true", help="print the decision as JSON")
    check.set_defaults(func=lambda args: run_check(args, sys.stdout, sys.stderr))

    kill = sub.add_parser("kill-switch", help="engage or clear a kill switch on the running daemon (journaled)")
    kill.add_argument("action", choices=("engage", "clear"))
    scope = kill.add_mutually_exclusive_group(required=True)
    scope.add_argument("--global", dest="global_", action="store_true", help="every order of every account")
    scope.add_argument("--account", default=None, help="every order of this account")
    scope.add_argument("--underlying", default=None, help="every order on this underlying's instruments")
    kill.add_argument("--reason", required=True, help="why (journaled, shown in riskd status)")
    kill.add_argument("--by", required=True, help="who (journaled, shown in riskd status)")
    kill.add_argument("--url", default=None, help="the daemon's HTTP base URL (default: as riskd status)")
    kill.add_argument("-c", "--config", default=None, help="riskd config (finds the daemon as riskd status does)")
    kill.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the daemon (default 15)")
    kill.set_defaults(func=lambda args: run_kill_switch(args, sys.stdout, sys.stderr))
