"""The execution session of the liquidation engine: NewOrderSingles out, its order states back.

A FIX initiator (fix.engine on its own event-loop thread) with a FileStore, so a
restarted daemon resumes its sequence numbers and the venue's resend brings the
reports it missed. :meth:`ExecutionLink.send` builds, stores and writes the
NewOrderSingle on the caller's thread, under the session's lock
(actors.liquidation_wire: no hand-off to the FIX thread on the way to the wire);
``on_written(cl_ord_id, ns)`` stamps when its bytes went to the socket
(monotonic ns; later, from the FIX thread, when the socket could not take them at
once). Execution reports are parsed by the
drop-copy application (same ExecutionReport rules, ExecID dedup on disk) and
their order states handed to ``on_report(cl_ord_id, status, cum_qty, exec_id)``
on the FIX thread: the caller hops them to its own thread. Positions are never
taken from here: they come from the drop copy, through the position shards.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from actors.liquidation_wire import LockedSession
from fix.dropcopy import DropCopyApplication, DropCopyEvent, ExecIdStore, OrderEvent
from fix.engine import FixEngine
from fix.order_entry import NewOrder, OrderEntryClient
from fix.settings import SessionSettings
from fix.store import open_store

log = logging.getLogger("riskd.liquidation")


class ExecutionLink:
    """See the module docstring."""

    def __init__(self, settings: SessionSettings, state_dir: str | Path,
                 on_report: Callable[[str, str, float, str], None],
                 on_written: Callable[[str, int], None] | None = None) -> None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        self._on_report = on_report
        self._on_written = on_written
        self.exec_ids = ExecIdStore(Path(state_dir) / "execution-execids")
        self.application = DropCopyApplication(self._on_event, self.exec_ids)
        store = open_store(settings.file_store_path, settings.sender_comp_id, settings.target_comp_id)
        self.session = LockedSession(settings, store, self.application)
        self.client = OrderEntryClient(self.session)
        self.engine = FixEngine()
        self.engine.add(self.session)
        self.sent = 0
        self.errors = 0
        self.last_error = ""
        self.engine.start_in_thread("liquidation-fix")

    def send(self, order: NewOrder) -> None:
        """Send ``order`` now, on this thread (returns once it is written or, when the
        socket is busy, queued behind the bytes before it; a session that is down stores
        it for the venue's resend, or refuses it: see fix.order_entry.NotLoggedOn)."""
        session = self.session
        with session.lock:
            writer = session.writer
            if writer is not None and self._on_written is not None:
                cl_ord_id, on_written = order.cl_ord_id, self._on_written
                writer.stamp = lambda ns: on_written(cl_ord_id, ns)
            try:
                self.client.new_order_single(order)
            except Exception as exc:  # NotLoggedOn: the order is journaled, never resent; next round re-plans
                self.errors += 1
                self.last_error = repr(exc)
                log.error("liquidation order %s not sent: %s", order.cl_ord_id, exc)
                self._on_report(order.cl_ord_id, "rejected", 0.0, "")
                return
            finally:
                if writer is not None:
                    writer.stamp = None
        self.sent += 1

    def _on_event(self, event: DropCopyEvent) -> None:
        if isinstance(event, OrderEvent) and event.cl_ord_id:
            self._on_report(event.cl_ord_id, event.status, event.cum_qty, event.exec_id)

    @property
    def logged_on(self) -> bool:
        return self.session.logged_on

    def stop(self) -> None:
        self.engine.stop_thread()
        self.exec_ids.close()
