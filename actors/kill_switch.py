"""Kill switches: global, per account, per underlying; journaled so a restart keeps them.

Every command is appended to a JSON-lines journal (write, flush, fsync) before it
takes effect, and the journal is replayed at construction: a switch engaged
before a crash is still engaged after it. A journal that cannot be read raises
:class:`KillSwitchJournalError` (the daemon must not start without knowing which
switches are engaged); only a torn last line (a crash mid-write: never
acknowledged) is skipped.

Lookups (:meth:`KillSwitches.engaged_global` and friends) are plain attribute and
dict reads: the pre-trade hot path pays nothing for the journal.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import msgspec

from actors.pretrade_messages import KillSwitchCommand

log = logging.getLogger("riskd.kill_switch")

SCOPES = ("global", "account", "underlying")


class KillSwitchJournalError(RuntimeError):
    """The kill-switch journal cannot be read or written: which switches hold is unknown."""


class KillSwitchState(msgspec.Struct, frozen=True):
    """One engaged switch: its scope and key, why, by whom, since when (wall-clock s since the epoch)."""

    scope: str
    key: str
    reason: str
    by: str
    since: float


class KillSwitches:
    """The engaged kill switches, journaled to ``journal`` (None = not journaled: tests, tools).

    ``wall_clock``: seconds since the epoch, for the journal and ``riskd status``.
    ``read_only``: replay ``journal`` but never write it: a position shard's copy of
    the switches, whose journal the daemon writes (one writer per file); commands
    then reach the copy from the daemon after they are journaled.
    """

    def __init__(self, journal: str | Path | None = None, *, wall_clock: Callable[[], float] = time.time,
                 read_only: bool = False) -> None:
        self.journal = Path(journal) if journal is not None else None
        self.read_only = read_only
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        #: The global switch, None when clear.
        self.global_switch: KillSwitchState | None = None
        self.accounts: dict[str, KillSwitchState] = {}
        self.underlyings: dict[str, KillSwitchState] = {}
        if self.journal is not None and self.journal.exists():
            self._replay(self.journal)

    # ----- commands ----------------------------------------------------------
    def apply(self, command: KillSwitchCommand) -> bool:
        """Journal then apply one command; True if it changed the state.

        ValueError for a bad scope or a missing key; KillSwitchJournalError if the
        journal cannot be written (the command then has no effect).
        """
        if command.scope not in SCOPES:
            raise ValueError(f"scope: expected one of {list(SCOPES)}, found {command.scope!r}")
        key = "" if command.scope == "global" else command.key
        if command.scope != "global" and not key:
            raise ValueError(f"key: required for a kill switch of scope {command.scope!r}")
        with self._lock:
            record = {"ts": self._wall_clock(), "scope": command.scope, "key": key, "engaged": command.engaged,
                      "reason": command.reason, "by": command.by}
            if self.journal is not None and not self.read_only:
                self._append(record)
            return self._set(record)

    # ----- lookups (hot path) --------------------------------------------------
    def engaged_global(self) -> KillSwitchState | None:
        return self.global_switch

    def engaged_account(self, account: str) -> KillSwitchState | None:
        return self.accounts.get(account)

    def engaged_underlying(self, underlying: str) -> KillSwitchState | None:
        return self.underlyings.get(underlying)

    def state(self) -> dict[str, object]:
        """The engaged switches, for ``riskd status`` and the HTTP API (JSON-ready)."""
        as_dict = msgspec.structs.asdict
        return {
            "global": as_dict(self.global_switch) if self.global_switch is not None else None,
            "accounts": {k: as_dict(v) for k, v in sorted(self.accounts.items())},
            "underlyings": {k: as_dict(v) for k, v in sorted(self.underlyings.items())},
        }

    # ----- internals ------------------------------------------------------------
    def _set(self, record: dict) -> bool:
        scope, key = record["scope"], record["key"]
        if scope == "global":
            before = self.global_switch
            self.global_switch = self._state(record) if record["engaged"] else None
            return (before is None) != (self.global_switch is None)
        table = self.accounts if scope == "account" else self.underlyings
        if record["engaged"]:
            changed = key not in table
            table[key] = self._state(record)
            return changed
        return table.pop(key, None) is not None

    @staticmethod
    def _state(record: dict) -> KillSwitchState:
        return KillSwitchState(record["scope"], record["key"], str(record.get("reason", "")),
                               str(record.get("by", "")), float(record.get("ts", 0.0)))

    def _append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            with open(self.journal, "a", encoding="utf-8") as f:  # type: ignore[arg-type]
                f.write(line)
                f.flush()
                # Durable before it takes effect: a switch the operator saw engaged
                # must still be engaged after a power loss.
                os.fsync(f.fileno())
        except OSError as exc:
            raise KillSwitchJournalError(f"kill-switch journal {self.journal}: cannot write: {exc}") from exc

    def _replay(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KillSwitchJournalError(f"kill-switch journal {path}: cannot read: {exc}") from exc
        lines = text.split("\n")
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if record["scope"] not in SCOPES or not isinstance(record["engaged"], bool):
                    raise ValueError(f"bad scope or engaged flag in {line!r}")
                record.setdefault("key", "")
                self._set(record)
            except (ValueError, KeyError, TypeError) as exc:
                if n == len(lines) and self.read_only:
                    # The writer may be mid-append: the line is not ours to cut.
                    continue
                if n == len(lines):
                    # No trailing newline: a write torn by a crash, never acknowledged.
                    # Cut it off, so the next append starts on a line of its own.
                    log.warning("kill-switch journal %s: torn last line dropped: %r", path, line)
                    self._truncate(path, len(text.encode("utf-8")) - len(line.encode("utf-8")))
                    continue
                raise KillSwitchJournalError(f"kill-switch journal {path}: line {n}: {exc}") from exc

    @staticmethod
    def _truncate(path: Path, size: int) -> None:
        try:
            os.truncate(path, size)
        except OSError as exc:
            raise KillSwitchJournalError(f"kill-switch journal {path}: cannot drop a torn last line: {exc}") from exc
