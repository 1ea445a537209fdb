"""The daemon's TOML configuration, decoded into frozen msgspec Structs.

``load_config(path)`` reads a file (or ``builtin:NAME`` for a TOML shipped in
configs/) and returns a :class:`RiskdConfig`; any bad value raises
:class:`ConfigError` naming the file, the dotted path of the field, what was
expected and what was found. ``riskd config check FILE`` runs exactly this.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from actors.latency_stages import LatencyBudgets
from actors.liquidation_config import LiquidationSettings
from actors.fpga_shadow import FpgaSettings
from actors.pretrade_config import PretradeSettings
from actors.snapshot import DurabilitySettings
from daemon.config_errors import ConfigError, explain
from fix.settings import SessionSettings
from risk.instruments import InstrumentTable, ReferenceDataError
from risk.params import InstrumentSpec, MarginParams, UnderlyingSpec

BUILTIN_PREFIX = "builtin:"
T = TypeVar("T")


class AccountSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An account: its margin profile and its cash or collateral value (currency)."""

    id: Annotated[str, Meta(min_length=1, max_length=64)]
    profile: str
    cash: float = 0.0


class FixConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """FIX sessions, with QuickFIX's setting names (see fix/settings.py).

    ``drop_copy``: the session on which the OMS's drop copy arrives (riskd is
    usually the initiator). ``execution``: the order-entry session liquidation
    orders go out on.
    """

    drop_copy: SessionSettings | None = None
    execution: SessionSettings | None = None


class DaemonSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Processes of ``riskd run``.

    ``shards``: position actors (accounts split by a stable hash of their id).
    ``run_dir``: folder of the ipc:// endpoints and the ingest state ("" = a
    private folder under the system temp dir). ``max_restarts``: Ray restarts of
    a failed actor. ``position_cpus`` / ``ingest_cpus``: CPU ids each actor
    process is pinned to (empty = not pinned); ``position_cpus`` is one list per
    shard or empty. ``market``: ``static`` (the snapshot given at start),
    ``simulate`` (GBM with jumps, for the demo) or ``zmq`` (encoded ticks published
    to ``ticks_endpoint``); ``publish_interval_s``: tick coalescing window;
    ``full_interval_s``: full revaluation interval. ``worker_niceness``: added to the
    daemon's own nice value for the actor processes a local Ray instance starts
    (Ray's own default is 15, under which any busy process at the daemon's priority,
    the OMS included, takes ~28x the CPU share of a shard: CFS weights 1024 vs 36);
    ignored with --address (that cluster's raylets decide).
    """

    shards: Annotated[int, Meta(ge=1, le=256)] = 2
    worker_niceness: Annotated[int, Meta(ge=-20, le=19)] = 0
    run_dir: str = ""
    max_restarts: Annotated[int, Meta(ge=0, le=100)] = 3
    position_cpus: tuple[tuple[int, ...], ...] = ()
    ingest_cpus: tuple[int, ...] = ()
    market: Literal["static", "simulate", "zmq", "replay"] = "static"
    ticks_endpoint: str = ""
    replay_path: str = ""
    replay_speed: Annotated[float, Meta(ge=0.0, le=1e6)] = 1.0
    market_cpus: tuple[int, ...] = ()
    liquidation_cpus: tuple[int, ...] = ()
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Meta(ge=0, le=65535)] = 9464
    latency: LatencyBudgets = LatencyBudgets()
    publish_interval_s: Annotated[float, Meta(gt=0.0, le=60.0)] = 0.05
    full_interval_s: Annotated[float, Meta(gt=0.0, le=3600.0)] = 1.0

    def __post_init__(self) -> None:
        if self.market == "zmq" and not self.ticks_endpoint:
            raise ValueError("ticks_endpoint: required when market = \"zmq\"")
        if self.market == "replay" and not self.replay_path:
            raise ValueError("replay_path: required when market = \"replay\"")
        if self.position_cpus and len(self.position_cpus) != self.shards:
            raise ValueError(f"position_cpus: expected one CPU list per shard ({self.shards}),"
                             f" found {len(self.position_cpus)}")


class RiskdConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole daemon configuration.

    ``history``: optional price-history file (CSV or Parquet, see risk.history) for
    VaR, relative to the config file's folder. ``fix``: the FIX sessions.
    ``pretrade``: the pre-trade hook's limits, staleness bound, reservation TTL and
    client timeout (actors/pretrade_config.py). ``durability``: the drop-copy
    journal's fsync policy, the state folder and the snapshot interval
    (actors/snapshot.py). ``fpga``: the FPGA overlay for the pre-trade hook and the
    pricing actor's Greeks (enabled auto/on/off, bitstream; with an overlay open it
    decides unless shadow = true: actors/fpga_shadow.py, actors/fpga_greeks.py).
    """

    margin: MarginParams
    fix: FixConfig = FixConfig()
    daemon: DaemonSettings = DaemonSettings()
    underlyings: tuple[UnderlyingSpec, ...] = ()
    instruments: tuple[InstrumentSpec, ...] = ()
    accounts: tuple[AccountSpec, ...] = ()
    history: str | None = None
    pretrade: PretradeSettings = PretradeSettings()
    durability: DurabilitySettings = DurabilitySettings()
    #: The liquidation engine (actors/liquidation_config.py).
    liquidation: LiquidationSettings = LiquidationSettings()
    fpga: FpgaSettings = FpgaSettings()


def read_toml(path: str | Path) -> tuple[dict[str, Any], str, Path]:
    """Read a TOML file or ``builtin:NAME``; returns (data, display name, folder for relative paths)."""
    text_path = str(path)
    if text_path.startswith(BUILTIN_PREFIX):
        name = text_path[len(BUILTIN_PREFIX):]
        resource = resources.files("configs").joinpath(name)
        if not resource.is_file():
            raise ConfigError(text_path, "", "no such built-in config")
        data = resource.read_text(encoding="utf-8")
        folder = Path(str(resource)).parent
    else:
        p = Path(text_path)
        try:
            data = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(text_path, "", f"cannot read: {exc.strerror or exc}") from None
        folder = p.resolve().parent
    try:
        return tomllib.loads(data), text_path, folder
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(text_path, "", f"not valid TOML: {exc}") from None


def decode(raw: dict[str, Any], target: type[T], source: str) -> T:
    """Convert raw TOML data to ``target``, raising ConfigError with the field's path."""
    try:
        return msgspec.convert(raw, target)
    except msgspec.ValidationError as exc:
        raise explain(exc, target, raw, source) from None


def check_references(config: RiskdConfig, source: str) -> InstrumentTable:
    """Cross-field checks msgspec cannot do: names that refer to other entries."""
    margin = config.margin
    for i, und in enumerate(config.underlyings):
        if und.grid not in margin.grids:
            raise ConfigError(source, f"underlyings[{i}].grid",
                              f"expected one of the grids {sorted(margin.grids)}, found {und.grid!r}")
    for i, acct in enumerate(config.accounts):
        if acct.profile not in margin.profiles:
            raise ConfigError(source, f"accounts[{i}].profile",
                              f"expected one of the profiles {sorted(margin.profiles)}, found {acct.profile!r}")
    ids = [a.id for a in config.accounts]
    if len(set(ids)) != len(ids):
        dup = next(a for a in ids if ids.count(a) > 1)
        raise ConfigError(source, "accounts", f"account id {dup!r} is defined twice")
    _check_instruments(config, source)
    tiers = margin.tiers
    if config.liquidation.planner.target_ratio >= tiers.partial_liquidation - tiers.hysteresis:
        raise ConfigError(source, "liquidation.planner.target_ratio",
                          f"expected below margin.tiers.partial_liquidation - hysteresis"
                          f" ({tiers.partial_liquidation - tiers.hysteresis:g}), found"
                          f" {config.liquidation.planner.target_ratio:g}")
    try:
        return InstrumentTable(config.underlyings, config.instruments)
    except ReferenceDataError as exc:
        raise ConfigError(source, "instruments", str(exc)) from None


def _check_instruments(config: RiskdConfig, source: str) -> None:
    underlyings = [u.id for u in config.underlyings]
    kinds: dict[str, tuple[str, str]] = {}
    for i, inst in enumerate(config.instruments):
        if inst.id in kinds:
            raise ConfigError(source, f"instruments[{i}].id", f"instrument id {inst.id!r} is defined twice")
        kinds[inst.id] = (inst.kind, inst.underlying)
        if inst.underlying not in underlyings:
            raise ConfigError(source, f"instruments[{i}].underlying",
                              f"expected one of the underlyings {underlyings}, found {inst.underlying!r}")
    for i, inst in enumerate(config.instruments):
        if inst.on_future is not None and kinds.get(inst.on_future) != ("future", inst.underlying):
            futures = [k for k, (kind, und) in kinds.items() if kind == "future" and und == inst.underlying]
            raise ConfigError(source, f"instruments[{i}].on_future",
                              f"expected a future on {inst.underlying} (one of {futures}), found {inst.on_future!r}")


def load_config(path: str | Path) -> RiskdConfig:
    """Load and fully check a riskd config file (or ``builtin:NAME``)."""
    raw, source, folder = read_toml(path)
    config = decode(raw, RiskdConfig, source)
    check_references(config, source)
    if config.history is not None and not config.history.startswith(BUILTIN_PREFIX):
        config = msgspec.structs.replace(config, history=str((folder / config.history).resolve()))
    replay = config.daemon.replay_path
    if replay and not replay.startswith(BUILTIN_PREFIX):
        config = msgspec.structs.replace(config, daemon=msgspec.structs.replace(
            config.daemon, replay_path=str((folder / replay).resolve())))
    return config


def resolve_data_path(reference: str) -> Path:
    """A data file path, or ``builtin:NAME`` for a file shipped in configs/."""
    if reference.startswith(BUILTIN_PREFIX):
        return Path(str(resources.files("configs").joinpath(reference[len(BUILTIN_PREFIX):])))
    return Path(reference)
