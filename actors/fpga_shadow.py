"""The FPGA overlay beside the software pre-trade hook: which path decides, and shadow mode.

One job: :class:`FpgaPath`, built from the ``[fpga]`` config section
(:class:`FpgaSettings`), and the endpoint's one call into it, :meth:`FpgaPath.check`.
``enabled = "off"`` keeps the software path and says so; ``"auto"`` opens the
overlay (:func:`fpga_overlay.backend.open_overlay`) and falls back to software when
there is no device or no pynq; ``"on"`` refuses to start without one. With an
overlay open, ``shadow`` chooses what it does (:attr:`FpgaPath.path`):

- ``shadow = false``: path ``"fpga"``, the overlay's risk filter decides the checks
  it implements (:data:`FILTER_CODES`: kill switches, static limits, margin) and
  the software hook the others, in the hook's order (actors/fpga_decide.py);
- ``shadow = true``: path ``"fpga-shadow"``, the software hook decides and every
  ``shadow_every``-th check of an account the filter can judge (scenario-only
  margin, figures that fit its formats) is also put to the overlay's risk filter,
  off the shard's thread, and the answers are compared: decisions and reason codes
  must be identical wherever the software's first failing check is one the filter
  implements, and IM after within ``im_tolerance`` of the software's. Mismatches,
  the maximum IM difference and the checks skipped are counted for /metrics
  (``riskd_health_value`` under ``shards.N.fpga``) and ``riskd status``.

Without an overlay the path is ``"software"``. In shadow mode the filter's record
is built on the shard's thread before the check (the account's state at decision
time, open orders included); the device call runs on a background thread behind a
bounded queue, so a slow or stuck overlay never delays a decision (a full queue
counts the check as skipped).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from actors.pretrade_config import PretradeSettings
from actors.pretrade_messages import CheckRequest, Decision, ReasonCode
from risk.account import Account

if TYPE_CHECKING:  # the checker module stays out of the config loader's imports
    from actors.pretrade import PreTradeChecker

log = logging.getLogger("riskd.fpga")

#: Software reason codes the risk filter implements: comparable decisions.
FILTER_CODES = frozenset({
    ReasonCode.ACCEPTED, ReasonCode.KILL_SWITCH_GLOBAL, ReasonCode.KILL_SWITCH_ACCOUNT,
    ReasonCode.KILL_SWITCH_UNDERLYING, ReasonCode.MAX_ORDER_QTY, ReasonCode.MAX_ORDER_NOTIONAL,
    ReasonCode.PRICE_COLLAR, ReasonCode.MAX_POSITION_INSTRUMENT, ReasonCode.MAX_POSITION_UNDERLYING,
    ReasonCode.MARGIN})
#: Checks waiting for the overlay at most; more are skipped (counted).
SHADOW_QUEUE = 1024


class FpgaSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``[fpga]`` section.

    ``enabled``: ``auto`` (use a device if one is present), ``on`` (refuse to start
    without one), ``off``. ``bitstream``: the overlay's .bit path (its .hwh beside
    it). ``shadow``: false (the default): with an overlay open, it decides (the
    pre-trade filter's checks, the pricing actor's option Greeks); true: the
    software decides and the overlay runs beside it, compared (mismatches and
    maximum errors exported). ``shadow_every``: one check in this many is shadowed
    (>= 1). ``simulate``: run the drivers on the simulated device (the Amaranth
    simulation: about 0.3-1 s per check; tests and demonstrations only; with shadow
    off every check waits for it, so the client's ``pretrade.timeout_us`` must allow
    seconds).
    A device error or timeout while the overlay decides rejects the order
    (``fpga_error``, fail closed), except for the accounts of
    ``pretrade.fail_open_accounts``, whose order the software hook then decides.
    """

    enabled: Literal["auto", "on", "off"] = "auto"
    bitstream: str = ""
    shadow: bool = False
    shadow_every: int = 1
    simulate: bool = False

    def __post_init__(self) -> None:
        if self.shadow_every < 1:
            raise ValueError(f"shadow_every: expected an integer >= 1, found {self.shadow_every}")


class FpgaUnavailable(RuntimeError):
    """``enabled = "on"`` and no overlay could be opened."""


def open_backend(settings: FpgaSettings) -> tuple[Any, str]:
    """(the opened overlay or None, why none); FpgaUnavailable when ``on`` and none opens.
    Shared by the pre-trade path and the pricing actor (actors/fpga_greeks.py)."""
    if settings.enabled == "off":
        return None, "disabled"
    if not settings.bitstream and not settings.simulate:
        if settings.enabled == "on":
            raise FpgaUnavailable('fpga.enabled = "on" needs fpga.bitstream (or fpga.simulate = true)')
        return None, "no bitstream configured"
    backend, why = None, ""
    try:
        from fpga_overlay.backend import open_overlay

        backend = open_overlay(settings.bitstream or None, simulate=settings.simulate)
        why = "no device or no pynq" if backend is None else ""
    except Exception as exc:  # a bad bitstream or driver: say why, stay on software
        why = f"{type(exc).__name__}: {exc}"
        log.error("fpga overlay did not open: %s", why)
    if backend is None and settings.enabled == "on":
        raise FpgaUnavailable(f"fpga.enabled = \"on\" but the overlay did not open ({why});"
                              f" bitstream {settings.bitstream!r}")
    return backend, why


def path_of(settings: FpgaSettings, backend: Any) -> str:
    """``"fpga"`` (the overlay decides), ``"fpga-shadow"`` (software decides, overlay
    compared) or ``"software"`` (no overlay)."""
    return "software" if backend is None else "fpga-shadow" if settings.shadow else "fpga"


class FpgaPath:
    """Which path decides on this shard, the deciding path's counters, the shadow comparison.

    ``backend``: an opened :class:`fpga_overlay.backend.FpgaBackend` (or anything with
    its ``check(record)`` and ``simulated``; None: software only); built by :meth:`open`.
    ``path``: see :func:`path_of`. Counters of the deciding path (``"fpga"``):
    ``decided`` (orders whose filter checks the overlay decided), ``fallback`` (orders
    the filter cannot hold, decided by the software hook: a VaR profile, > 27
    scenarios, a figure outside its formats), ``device_errors`` (the device raised or
    timed out: rejected ``fpga_error``, or decided in software for a fail-open account,
    ``failed_open``), ``software_only`` (decided before the filter is needed: request
    sanity).
    """

    def __init__(self, settings: FpgaSettings, pretrade: PretradeSettings, backend: Any = None,
                 why: str = "") -> None:
        self.settings = settings
        self.pretrade = pretrade
        self.backend = backend
        self.path = path_of(settings, backend)
        where = "simulated overlay" if backend is not None and backend.simulated else "overlay"
        self.mode = ("software (fpga off)" if settings.enabled == "off" else
                     f"software (no overlay: {why})" if backend is None else
                     f"fpga-shadow (software decides, {where} shadows)" if settings.shadow else
                     f"fpga ({where} decides kill switches, static limits and margin; software the rest)")
        self.shadowed = 0
        self.compared = 0
        self.mismatches = 0
        self.max_im_error = 0.0
        self.skipped = 0
        self.unsupported = 0
        self.errors = 0
        self.last_mismatch = ""
        self.decided = 0
        self.fallback = 0
        self.device_errors = 0
        self.failed_open = 0
        self.software_only = 0
        self.last_error = ""
        self.last_fallback = ""
        self._seen = 0
        self._queue: queue.Queue[tuple[dict[str, int], Decision] | None] = queue.Queue(SHADOW_QUEUE)
        self._thread: threading.Thread | None = None
        if self.path == "fpga":
            from actors.fpga_decide import decide

            self._decide = decide
        if self.path == "fpga-shadow":
            self._thread = threading.Thread(target=self._run, name="fpga-shadow", daemon=True)
            self._thread.start()

    @classmethod
    def open(cls, settings: FpgaSettings, pretrade: PretradeSettings) -> "FpgaPath":
        """Open the overlay as configured; FpgaUnavailable when ``on`` and none opens."""
        backend, why = open_backend(settings)
        path = cls(settings, pretrade, backend, why)
        log.info("pre-trade path: %s", path.mode, extra={"event": "fpga_path", "path": path.path, "mode": path.mode})
        return path

    def check(self, checker: "PreTradeChecker", request: CheckRequest, received_ns: int = 0) -> Decision:
        """Decide ``request`` on this path (the endpoint's one call when an FpgaPath is set)."""
        if self._thread is None and self.backend is None:  # no overlay: the software hook alone
            return checker.check(request, received_ns)
        if self.path == "fpga":
            return self._decide(self, checker, request, received_ns)
        record = self.before_check(checker.shard.accounts.get(request.account), request, checker.kill_switches)
        decision = checker.check(request, received_ns)
        if record is not None:
            self.after_check(record, decision)
        return decision

    # ----- on the shard's thread ------------------------------------------------
    def before_check(self, account: Account | None, request: CheckRequest, switches: Any) -> dict[str, int] | None:
        """The filter's record of ``request`` if this check is shadowed (else None).
        ``switches``: the shard's actors.kill_switch.KillSwitches."""
        if self._thread is None or account is None or request.what_if:
            return None
        self._seen += 1
        if (self._seen - 1) % self.settings.shadow_every:
            return None
        from fpga_overlay.risk_filter_host import FilterLimits, KillFlags, order_fields

        model = account.model
        row = model.table.index.get(request.instrument)
        if row is None or request.side not in (1, -1):
            return None
        underlying = model.table.underlying_ids[int(model.block_of[row])]
        kills = (switches.engaged_global() is not None, switches.engaged_account(account.id) is not None,
                 switches.engaged_underlying(underlying) is not None)
        limits = self.pretrade.limits_for(account.id)
        try:
            return order_fields(account, row, request.side * request.quantity, request.limit_price,
                                FilterLimits(max_order_qty=limits.max_order_qty,
                                             max_order_notional=limits.max_order_notional,
                                             price_collar=limits.price_collar,
                                             max_position_instrument=limits.max_position_instrument,
                                             max_position_underlying=limits.max_position_underlying),
                                KillFlags(global_=kills[0], account=kills[1], underlying=kills[2]),
                                self.pretrade.im_tolerance)
        except ValueError:
            self.unsupported += 1  # a VaR profile, or a figure outside the formats: software only
            return None

    def after_check(self, record: dict[str, int] | None, decision: Decision) -> None:
        """Queue the overlay's judgement of a shadowed check (never blocks)."""
        if record is None:
            return
        if decision.reason not in FILTER_CODES:
            self.unsupported += 1  # decided by a check the filter does not have (tier, staleness...)
            return
        try:
            self._queue.put_nowait((record, decision))
            self.shadowed += 1
        except queue.Full:
            self.skipped += 1

    # ----- the shadow thread ------------------------------------------------------
    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            record, software = item
            try:
                hardware = self.backend.check(record)
            except Exception as exc:
                self.errors += 1
                log.error("fpga shadow check failed: %s", exc)
                continue
            self.compared += 1
            error = 0.0
            if software.reason == ReasonCode.MARGIN or software.accepted:
                error = abs(hardware.im_after - software.im_after) if math.isfinite(software.im_after) else 0.0
                self.max_im_error = max(self.max_im_error, error)
            if (hardware.accepted != software.accepted or hardware.reason != software.reason
                    or error > max(self.pretrade.im_tolerance, 1e-6 * abs(software.im_after))):
                self.mismatches += 1
                self.last_mismatch = (f"{software.order_id}: software {software.reason} (IM after"
                                      f" {software.im_after:.2f}), overlay {hardware.reason} (IM after"
                                      f" {hardware.im_after:.2f})")
                log.error("fpga shadow mismatch: %s", self.last_mismatch)

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until every queued check was compared (tests, shutdown)."""
        import time

        deadline = time.monotonic() + timeout_s
        while self.compared + self.errors < self.shadowed:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(5.0)

    def state(self) -> dict[str, Any]:
        """For health, /metrics and ``riskd status``."""
        return {"path": self.path, "mode": self.mode, "shadow": self._thread is not None,
                "shadowed": self.shadowed, "compared": self.compared, "mismatches": self.mismatches,
                "max_im_error": self.max_im_error, "skipped": self.skipped, "unsupported": self.unsupported,
                "errors": self.errors, "last_mismatch": self.last_mismatch,
                "decided": self.decided, "fallback": self.fallback, "device_errors": self.device_errors,
                "failed_open": self.failed_open, "software_only": self.software_only,
                "last_error": self.last_error, "last_fallback": self.last_fallback}
