"""Per-session message store: sequence numbers and sent messages, kept across restarts.

:class:`FileStore` keeps, under ``FileStorePath``, for the session
(SenderCompID, TargetCompID):

- ``<S>-<T>.seqnums``: the next sender and next target sequence numbers, a
  fixed-width text record rewritten in place (one small ``pwrite``). The sender
  number is written before each message goes out (a restart must never reuse
  one); the target number is written by :meth:`FileStore.flush`, once per TCP
  read, after the application has flushed its own records, so after a crash it
  can only lag, and the lag is re-delivered by the counterparty (and deduplicated
  by ExecID), never skipped;
- ``<S>-<T>.body``: every sent message, appended as ``seq (u32) | length (u32) |
  raw bytes``, read back by offset for a ResendRequest. A record torn by a crash
  at the tail is ignored at open (its message was never fully written, so it was
  never acknowledged by the counterparty either).

Writes go to the OS page cache without fsync: they survive the process being
killed, not a power loss. (The drop-copy journal, with its fsync policy, is the
system of record for inbound messages.) :class:`MemoryStore` is the same
interface without files.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Protocol

_RECORD = struct.Struct("<II")
_SEQNUMS_FORMAT = b"%010d : %010d\n"


class MessageStore(Protocol):
    """What a session needs persisted."""

    next_sender_seq: int
    next_target_seq: int
    creation_time: float

    def set_next_sender_seq(self, value: int) -> None: ...
    def set_next_target_seq(self, value: int) -> None: ...
    def flush(self) -> None: ...
    def save_sent(self, seq: int, raw: bytes) -> None: ...
    def sent_range(self, begin: int, end: int) -> list[tuple[int, bytes]]: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """A MessageStore in memory: for tests and for sessions with no FileStorePath."""

    def __init__(self) -> None:
        self.next_sender_seq = 1
        self.next_target_seq = 1
        self.creation_time = time.time()
        self._sent: dict[int, bytes] = {}

    def set_next_sender_seq(self, value: int) -> None:
        self.next_sender_seq = value

    def set_next_target_seq(self, value: int) -> None:
        self.next_target_seq = value

    def flush(self) -> None:
        pass

    def save_sent(self, seq: int, raw: bytes) -> None:
        self._sent[seq] = raw

    def sent_range(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Sent messages with begin <= seq <= end, in order."""
        return [(s, self._sent[s]) for s in sorted(self._sent) if begin <= s <= end]

    def reset(self) -> None:
        self.next_sender_seq = self.next_target_seq = 1
        self._sent.clear()
        self.creation_time = time.time()

    def close(self) -> None:
        pass


class FileStore:
    """A MessageStore in files under ``folder`` (see the module docstring)."""

    def __init__(self, folder: str | Path, sender_comp_id: str, target_comp_id: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"{sender_comp_id}-{target_comp_id}"
        self._seq_path = self.folder / f"{stem}.seqnums"
        self._body_path = self.folder / f"{stem}.body"
        self._index: dict[int, tuple[int, int]] = {}
        self._target_dirty = False
        self._persisted_target = 1
        self.creation_time = time.time()
        self.next_sender_seq, self.next_target_seq = self._read_seqnums()
        self._persisted_target = self.next_target_seq
        self._seq_fd = os.open(self._seq_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._body_fd = os.open(self._body_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._body_end = self._load_index()
        self._write_seqnums()

    def _read_seqnums(self) -> tuple[int, int]:
        try:
            text = self._seq_path.read_bytes().decode("ascii").split(":")
            return int(text[0]), int(text[1])
        except FileNotFoundError:
            return 1, 1
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self._seq_path}: corrupt sequence-number file ({exc}); "
                             "restore it or reset the session explicitly") from None

    def _load_index(self) -> int:
        size = os.fstat(self._body_fd).st_size
        offset = 0
        while offset + _RECORD.size <= size:
            seq, length = _RECORD.unpack(os.pread(self._body_fd, _RECORD.size, offset))
            if offset + _RECORD.size + length > size:
                break  # torn tail record
            self._index[seq] = (offset + _RECORD.size, length)
            offset += _RECORD.size + length
        if offset != size:
            os.ftruncate(self._body_fd, offset)
        return offset

    def _write_seqnums(self) -> None:
        # The target number on disk moves only in flush(): a message sent in the
        # middle of a read (a Heartbeat, a ResendRequest) must not persist a target
        # ahead of what the application has flushed.
        os.pwrite(self._seq_fd, _SEQNUMS_FORMAT % (self.next_sender_seq, self._persisted_target), 0)

    def set_next_sender_seq(self, value: int) -> None:
        self.next_sender_seq = value
        self._write_seqnums()

    def set_next_target_seq(self, value: int) -> None:
        self.next_target_seq = value
        self._target_dirty = True

    def flush(self) -> None:
        """Persist the target sequence number if it moved since the last flush."""
        if self._target_dirty:
            self._persisted_target = self.next_target_seq
            self._target_dirty = False
            self._write_seqnums()

    def save_sent(self, seq: int, raw: bytes) -> None:
        os.pwrite(self._body_fd, _RECORD.pack(seq, len(raw)) + raw, self._body_end)
        self._index[seq] = (self._body_end + _RECORD.size, len(raw))
        self._body_end += _RECORD.size + len(raw)

    def sent_range(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Sent messages with begin <= seq <= end, in order."""
        return [(seq, os.pread(self._body_fd, length, offset))
                for seq, (offset, length) in sorted(self._index.items()) if begin <= seq <= end]

    def reset(self) -> None:
        os.ftruncate(self._body_fd, 0)
        self._body_end = 0
        self._index.clear()
        self.next_sender_seq = self.next_target_seq = self._persisted_target = 1
        self._target_dirty = False
        self.creation_time = time.time()
        self._write_seqnums()

    def close(self) -> None:
        try:
            self.flush()
        except OSError:
            pass
        for fd in (self._seq_fd, self._body_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def open_store(file_store_path: str, sender_comp_id: str, target_comp_id: str) -> MessageStore:
    """A FileStore when a path is configured, else a MemoryStore."""
    if file_store_path:
        return FileStore(file_store_path, sender_comp_id, target_comp_id)
    return MemoryStore()
