"""The drop-copy ExecID store loaded in bulk at start-up: fix.dropcopy.ExecIdStore, opened faster.

A restart after a day of 1,000,000 fills opens an ExecID store of 1,000,000
records, and the ingest cannot log on before it is loaded. ExecIdStore replays its
file record by record through ``_apply`` (a set and three dict updates each, plus
the decode): about 2.7 s of CPU here with the cyclic collector off. Nearly every
record of a day is a plain first delivery (a trade, no ExecRefID), whose
``_apply`` only writes: the key into the seen set, the day-scoped key under its
plain ExecID, the trade as its own chain and as that chain's current version. A
run of such records is put into the four maps with one ``update`` per map, in file
order (the last write wins, as one by one); every other record (a bust, a
correction, a non-trade report: they read the chains written before them) goes
through the store's own ``_apply`` in its place, after the run before it. Same
maps, same torn-tail rule (a record cut short at the end of the file is dropped and
truncated, with a warning), same errors.

A loaded trade's version is kept as its msgpack bytes (``msgspec.Raw``, a view of
the file's bytes) and decoded when :meth:`current` is asked for it (a bust or a
correction naming it): the five strings of each of a million trades are never
built. Measured on the recovery bench's store (1,000,000 trades, gc off, CPU
seconds, side by side on a loaded host): 3.0-4.2 one by one, 2.6-3.2 with the runs,
2.0-2.8 with the runs and the raw versions.

Coupled to ExecIdStore's private maps and record format (``_seen``, ``_latest``,
``_chain_of``, ``_current``, ``_decoder``, ``_LEN``): tests/test_recovery_execids.py
compares every map with the store's own replay on a day of trades, busts,
corrections, non-trade reports and a torn tail.
"""

from __future__ import annotations

import logging
import os
import struct

import msgspec

from fix.dropcopy import KEY_SEPARATOR, ExecIdStore, _TradeRecord

log = logging.getLogger("riskd.fix.dropcopy")

#: A record with its trade left encoded (a nil trade is the one byte 0xc0).
_RECORD_RAW = msgspec.msgpack.Decoder(tuple[str, str, msgspec.Raw])
_TRADE = msgspec.msgpack.Decoder(_TradeRecord)


class BulkLoadedExecIdStore(ExecIdStore):
    """An :class:`fix.dropcopy.ExecIdStore` whose file is replayed in bulk (see the module docstring)."""

    def _replay(self) -> None:
        assert self._fd is not None
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        if self._LEN != 4:  # the format changed under us: the store's own replay
            return super()._replay()
        unpack = struct.Struct("<I").unpack_from
        view = memoryview(data)
        decode = _RECORD_RAW.decode
        keys: list[str] = []
        trades: list[msgspec.Raw] = []
        n = len(data)
        offset = 0
        while offset + 4 <= n:
            (size,) = unpack(data, offset)
            end = offset + 4 + size
            if end > n:
                break
            exec_id, ref, trade = decode(view[offset + 4:end])
            if not ref and len(trade) > 1:
                keys.append(exec_id)
                trades.append(trade)
            else:
                self._put_trades(keys, trades)
                self._apply(*self._decoder.decode(view[offset + 4:end]))
            offset = end
        self._put_trades(keys, trades)
        if offset != n:
            log.warning("ExecID store: torn record at offset %d dropped", offset)
            os.ftruncate(self._fd, offset)

    def current(self, exec_id: str) -> _TradeRecord | None:
        trade = super().current(exec_id)
        if isinstance(trade, msgspec.Raw):
            return _TRADE.decode(trade)
        return trade

    def _put_trades(self, keys: list[str], trades: list[msgspec.Raw]) -> None:
        """``_apply(key, "", trade)`` for each, in order, one update per map (the trades
        left encoded: :meth:`current` decodes)."""
        if not keys:
            return
        self._seen.update(keys)
        self._latest.update(zip([k.partition(KEY_SEPARATOR)[2] or k for k in keys], keys))
        self._chain_of.update(zip(keys, keys))
        self._current.update(zip(keys, trades))
        keys.clear()
        trades.clear()
