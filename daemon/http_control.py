"""Bodies of the daemon's control requests: parsed and checked field by field.

One job: turn the JSON body of each ``POST`` route of :mod:`daemon.http_api` into
the value the daemon acts on, or an :class:`HttpError` (400) naming the field and
the value that is wrong. Nothing here touches the daemon.

- ``POST /collateral``: ``{"account": str, "cash": number}`` (cash in the account's currency);
- ``POST /killswitch``: ``{"scope": "global"|"account"|"underlying", "key": str, "engaged": bool,
  "reason": str, "by": str}`` (``key`` is the account or underlying id; not for ``global``;
  ``reason`` and ``by`` are required: the journal says why and who);
- ``POST /what-if``: ``{"account": str, "instrument": str, "side": "buy"|"sell", "quantity":
  number > 0 (contracts), "limit_price": number > 0 (per unit), "order_id": str (optional),
  "replaces": str (optional), "liquidation": bool (optional)}``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

from actors.pretrade_messages import CheckRequest, KillSwitchCommand

__all__ = ["HttpError", "parse_collateral", "parse_kill_switch", "parse_what_if"]

_what_if_ids = itertools.count(1)


class HttpError(Exception):
    """An answer other than 200, with the message for the client."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


def _object(body: bytes, shape: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    if not body.strip():
        raise HttpError(400, f"body: expected a JSON object {shape}, found an empty body")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; nesting too deep
        raise HttpError(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise HttpError(400, f"body: expected a JSON object, found {type(payload).__name__}")
    for field in required:
        if field not in payload:
            raise HttpError(400, f"field {field!r}: required")
    known = set(required) | set(optional)
    unknown = sorted(set(payload) - known)
    if unknown:
        raise HttpError(400, f"field {unknown[0]!r}: unknown (expected {', '.join(repr(k) for k in sorted(known))})")
    return payload


def _string(payload: dict[str, Any], field: str, *, empty: bool = False) -> str:
    value = payload.get(field, "")
    if not isinstance(value, str) or (not value and not empty):
        raise HttpError(400, f"field {field!r}: expected a {'' if empty else 'non-empty '}string, found {value!r}")
    return value


def _number(payload: dict[str, Any], field: str, *, positive: bool = False) -> float:
    value = payload[field]
    # bool is an int in Python, and "true" as a quantity is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HttpError(400, f"field {field!r}: expected a number, found {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise HttpError(400, f"field {field!r}: expected a finite number, found {value!r}")
    if positive and number <= 0.0:
        raise HttpError(400, f"field {field!r}: expected a number > 0, found {value!r}")
    return number


def _bool(payload: dict[str, Any], field: str, default: bool) -> bool:
    value = payload.get(field, default)
    if not isinstance(value, bool):
        raise HttpError(400, f"field {field!r}: expected true or false, found {value!r}")
    return value


def parse_collateral(body: bytes) -> tuple[str, float]:
    """(account, cash in currency) from a ``POST /collateral`` body."""
    payload = _object(body, '{"account": str, "cash": number}', ("account", "cash"))
    return _string(payload, "account"), _number(payload, "cash")


def parse_kill_switch(body: bytes) -> KillSwitchCommand:
    """The command of a ``POST /killswitch`` body."""
    payload = _object(body, '{"scope", "key", "engaged", "reason", "by"}', ("scope", "engaged", "reason", "by"),
                      ("key",))
    scope = payload["scope"]
    if scope not in ("global", "account", "underlying"):
        raise HttpError(400, f"field 'scope': expected 'global', 'account' or 'underlying', found {scope!r}")
    if scope == "global":
        key = _string(payload, "key", empty=True)
        if key:
            raise HttpError(400, f"field 'key': a global kill switch has no key, found {key!r}")
    else:
        if "key" not in payload:
            raise HttpError(400, f"field 'key': required for scope {scope!r} (the {scope} id)")
        key = _string(payload, "key")
    return KillSwitchCommand(scope, key, _bool(payload, "engaged", True), _string(payload, "reason"),
                             _string(payload, "by"))


def parse_what_if(body: bytes) -> CheckRequest:
    """The what-if check of a ``POST /what-if`` body (``order_id`` defaults to a fresh
    ``what-if-<n>``)."""
    payload = _object(body, '{"account", "instrument", "side", "quantity", "limit_price"}',
                      ("account", "instrument", "side", "quantity", "limit_price"),
                      ("order_id", "replaces", "liquidation"))
    side = payload["side"]
    if side not in ("buy", "sell"):
        raise HttpError(400, f"field 'side': expected 'buy' or 'sell', found {side!r}")
    order_id = _string(payload, "order_id") if "order_id" in payload else f"what-if-{next(_what_if_ids)}"
    return CheckRequest(order_id, _string(payload, "account"), _string(payload, "instrument"),
                        1 if side == "buy" else -1, _number(payload, "quantity", positive=True),
                        _number(payload, "limit_price", positive=True),
                        liquidation=_bool(payload, "liquidation", False),
                        replaces=_string(payload, "replaces", empty=True), what_if=True)
