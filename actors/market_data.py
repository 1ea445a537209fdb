"""Market data: re-exports of the tick schema, market state, simulator and replay.

Kept so that ``from actors.market_data import ...`` keeps working; the code lives in
one module per job:

- :mod:`actors.ticks`: :class:`Tick`, :class:`VolPoint`, :func:`encode_tick`,
  :class:`TickDecoder`, :func:`validate_tick`, ``MAX_VOL``, ``MAX_ABS_RATE`` (the
  tick schema, its wire format and validation);
- :mod:`actors.market_state`: :class:`MarketState` and the vol-surface
  interpolation (pricing snapshots from ticks);
- :mod:`actors.market_sim`: :class:`GbmUnderlying`, :class:`GbmMarket` (simulator);
- :mod:`actors.market_replay`: :class:`ReplaySource`, :class:`ReplayError`,
  :class:`ReplayFileError`, :func:`write_replay_csv`, :func:`write_replay_parquet`,
  ``REPLAY_COLUMNS`` (the CSV/Parquet replay format).

Everything here is synchronous and clock-free (time is passed in or injected), so the
market-data ingest actor can wrap it in a thread and tests can drive it directly.
"""

from __future__ import annotations

from actors.market_replay import (REPLAY_COLUMNS, ReplayError, ReplayFileError, ReplaySource, write_replay_csv,
                                  write_replay_parquet)
from actors.market_sim import GbmMarket, GbmUnderlying
from actors.market_state import MarketState
from actors.ticks import MAX_ABS_RATE, MAX_VOL, Tick, TickDecoder, VolPoint, encode_tick, validate_tick

__all__ = [
    "MAX_ABS_RATE", "MAX_VOL", "REPLAY_COLUMNS",
    "VolPoint", "Tick", "encode_tick", "TickDecoder", "validate_tick",
    "MarketState", "GbmUnderlying", "GbmMarket",
    "ReplayError", "ReplayFileError", "ReplaySource", "write_replay_csv", "write_replay_parquet",
]
