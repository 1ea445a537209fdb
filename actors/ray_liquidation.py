"""The liquidation actor: subscribes to every shard's AccountRisk and tracks tiers.

This is the seat of the liquidation engine (its planner, its orders to execution
and its journal are the liquidation issue's work). Here it binds its own
AccountRisk SUB endpoint (the shards' PUB sockets connect to it, as to the
daemon's), keeps each account's latest tier and margin ratio, and logs every
transition into or out of a tier that will require action (reduce-only and
worse), so the wiring, the fan-out and the restart policy are in place and
measured. Ray carries only lifecycle and health.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import msgspec
import zmq

from actors.bus import Bus, ReceiveLoop
from actors.messages import AccountRisk, decode
from actors.ray_actor import actor_class

log = logging.getLogger("riskd.liquidation")

#: Tiers at which the liquidation engine acts (orders gated or positions cut).
ACTION_TIERS = frozenset({"reduce_only", "partial_liquidation", "full_liquidation"})


class LiquidationSpec(msgspec.Struct, frozen=True, kw_only=True):
    """``risk_endpoint``: the SUB endpoint this actor binds; ``cpus``: CPU ids to pin to."""

    risk_endpoint: str
    cpus: tuple[int, ...] = ()


class LiquidationActorImpl:
    """The actor's body, usable without Ray (tests) or as ``ray.remote(LiquidationActorImpl)``."""

    def __init__(self, spec: LiquidationSpec) -> None:
        if spec.cpus:
            os.sched_setaffinity(0, set(spec.cpus))
        self.spec = spec
        self.bus = Bus()
        self.received = 0
        self.transitions = 0
        self.tiers: dict[str, str] = {}
        self.ratios: dict[str, float] = {}
        socket = self.bus.socket(zmq.SUB, spec.risk_endpoint, bind=True)
        self._loop = ReceiveLoop({socket: self._on_risk}, name="liquidation", context=self.bus.context).start()
        log.info("liquidation actor up on %s", spec.risk_endpoint)

    def _on_risk(self, frame: bytes) -> None:
        message = decode(frame)
        if not isinstance(message, AccountRisk):
            return
        self.received += 1
        before = self.tiers.get(message.account, "normal")
        self.tiers[message.account] = message.tier
        self.ratios[message.account] = message.margin_ratio
        if message.tier != before:
            self.transitions += 1
            if message.tier in ACTION_TIERS or before in ACTION_TIERS:
                log.warning("account %s: tier %s -> %s (MM/equity %.4f); liquidation engine not enabled",
                            message.account, before, message.tier, message.margin_ratio,
                            extra={"event": "tier_transition", "account": message.account, "tier": message.tier,
                                   "previous_tier": before, "margin_ratio": message.margin_ratio})

    def health(self) -> dict[str, Any]:
        """Counters and the accounts at an action tier (a Ray call: never on a hot path)."""
        return {"pid": os.getpid(), "received": self.received, "transitions": self.transitions,
                "errors": self._loop.errors, "last_error": self._loop.last_error,
                "action_accounts": {a: t for a, t in sorted(self.tiers.items()) if t in ACTION_TIERS}}

    def stop(self) -> None:
        self._loop.stop()
        self.bus.close()


def liquidation_actor_class(max_restarts: int = 3, num_cpus: float = 0.0) -> Any:
    """The Ray actor class of :class:`LiquidationActorImpl` (see :func:`actors.ray_actor.actor_class`)."""
    return actor_class(LiquidationActorImpl, max_restarts, num_cpus)
