"""The drop-copy journal: every inbound business message on disk before its effects are published.

A journal is a folder of segment files (``<first seq, 20 digits>.jnl``), each an
8-byte magic followed by records::

    header_crc u32 | kind u8 | 3 pad | raw_len u32 | extra_len u32 | seq u64 | recv_ns i64 | payload_crc u32
    raw bytes (the FIX message as received) | extra bytes (opaque to fix/)

``header_crc`` is the CRC-32 of the 32 header bytes after it, ``payload_crc`` the
CRC-32 of raw + extra. ``seq``: the message's drop-copy position, its MsgSeqNum plus
an offset that moves up at each sequence reset (fix.journaled_app) (strictly increasing over
MSG records); ``recv_ns``: monotonic ns when its bytes were read. ``extra``: what
the application derived from the message (the ingest stores the data-plane frames
it routes, so a replay needs no FIX parsing and no ExecID state). NOTE records
carry no FIX message (``raw`` empty), only ``extra``, at the seq of the last MSG.

Appends go to an in-memory buffer (one pre-packed header and the bytes: about
1 us); :meth:`Journal.commit` writes the buffer with one ``write`` (group commit)
and syncs it by the fsync policy (:class:`JournalSettings`). Callers publish a
message's effects only after the commit that covers it.

Recovery (:class:`Journal` opening a folder): the last segment is read and
verified; a torn record at its tail (a crash mid-write: too short, or its checksum
fails with nothing after it) is truncated with a warning. A bad record anywhere
else raises :class:`JournalCorruptError` naming the file, the byte offset and the
sequence number: it is never skipped. Knows nothing of margin.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Annotated, Callable, Generator, Iterator, Literal, NamedTuple

import msgspec
from msgspec import Meta


log = logging.getLogger("riskd.fix.journal")

MAGIC = b"RSKDJNL\x01"
#: Record kinds: an inbound FIX message, and a note (no FIX message, ``extra`` only).
MSG, NOTE = 1, 2
_HEADER_CRC = struct.Struct("<I")
_HEADER_BODY = struct.Struct("<B3xIIQqI")
HEADER_SIZE = _HEADER_CRC.size + _HEADER_BODY.size  # 36 bytes
_SUFFIX = ".jnl"
_crc32 = zlib.crc32

FsyncPolicy = Literal["none", "interval", "batch", "every"]


class JournalSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the journal reaches the disk.

    ``fsync``: ``none`` (each commit written to the OS, never fsynced: survives a
    killed process, not a power loss), ``interval`` (written at each commit,
    fdatasync'ed by a background thread every ``fsync_interval_ms``: a power loss
    loses at most that), ``batch`` (written and fdatasync'ed at each commit, i.e.
    once per TCP read, before anything is published) or ``every`` (written and
    fdatasync'ed after every message). ``segment_mb``: a new segment file is
    started once the current one reaches this size (MiB).
    """

    fsync: FsyncPolicy = "batch"
    fsync_interval_ms: Annotated[float, Meta(gt=0.0, le=60_000.0)] = 10.0
    segment_mb: Annotated[int, Meta(ge=1, le=4096)] = 64


class JournalError(RuntimeError):
    """The journal cannot be used (bad folder, sequence going backwards, I/O)."""


class JournalCorruptError(JournalError):
    """A damaged record that is not a torn tail: recovery stops here.

    ``path``: the segment file; ``offset``: byte offset of the record in it;
    ``seq``: the record's seq (drop-copy position) when its header is intact, else None
    (``after_seq`` then names the last good record before it).
    """

    def __init__(self, path: Path, offset: int, reason: str, *, seq: int | None = None, after_seq: int = 0) -> None:
        where = f"seq {seq}" if seq is not None else f"the record after seq {after_seq}"
        super().__init__(f"{path}: corrupt journal record at byte offset {offset} ({where}): {reason}")
        self.path, self.offset, self.seq, self.after_seq, self.reason = path, offset, seq, after_seq, reason


class JournalRecord(NamedTuple):
    """One record as read back. ``offset``: byte offset in ``path``; ``end``: just past it."""

    kind: int
    seq: int
    recv_ns: int
    raw: bytes
    extra: bytes
    path: Path
    offset: int
    end: int


class _Torn(NamedTuple):
    offset: int
    reason: str
    #: The seq of the last good record before it (``previous_seq`` if none).
    after_seq: int = 0


def segment_paths(folder: str | Path) -> list[Path]:
    """The journal's segment files, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    paths = []
    for path in folder.iterdir():
        if path.suffix == _SUFFIX and path.stem.isdigit():
            paths.append((int(path.stem), path))
    return [p for _, p in sorted(paths)]


_HEADER = struct.Struct("<IB3xIIQqI")  # header_crc, then _HEADER_BODY's fields: one unpack per record


def _torn(path: Path, item: _Torn, warn: bool) -> Iterator[_Torn]:
    """A torn tail: yielded to the caller, or (``warn``) logged."""
    if warn:
        log.warning("%s: incomplete record at byte offset %d (%s): reading stops there", path, item.offset,
                    item.reason)
    else:
        yield item


def _scan(path: Path, data: bytes | memoryview, last: bool, previous_seq: int, *, from_seq: int = 0,
          payload: bool = True, raw: bool = True, warn_torn: bool = False
          ) -> Generator[JournalRecord | _Torn, None, int]:
    """Verify and yield the records of one segment's bytes; a torn tail (only possible in
    the ``last`` segment) ends the scan with a :class:`_Torn` (``warn_torn``: with a
    warning in the log instead). Returns (StopIteration's value) the seq of the last
    good record (``previous_seq`` if none).

    Every record is verified (both checksums, sequence order), but only those with
    ``seq >= from_seq`` are yielded; ``payload`` False yields them with ``raw`` and
    ``extra`` empty (no copy: the open of a journal needs offsets and numbers only),
    ``raw`` False with ``raw`` empty (a replay of the derived frames needs ``extra`` only).
    """
    n = len(data)
    if n < len(MAGIC):
        if last and bytes(data) == MAGIC[:n]:
            yield from _torn(path, _Torn(0, "segment shorter than its magic", previous_seq), warn_torn)
            return previous_seq
        raise JournalCorruptError(path, 0, "not a riskd journal segment (short file)", after_seq=previous_seq)
    if bytes(data[:len(MAGIC)]) != MAGIC:
        raise JournalCorruptError(path, 0, f"not a riskd journal segment (magic {bytes(data[:8])!r})",
                                  after_seq=previous_seq)
    view = memoryview(data)
    offset = len(MAGIC)
    seq_floor = previous_seq
    unpack, crc32, header_size = _HEADER.unpack_from, _crc32, HEADER_SIZE
    while offset < n:
        if n - offset < header_size:
            if last:
                item = _Torn(offset, f"{n - offset} bytes of a {header_size}-byte header", seq_floor)
                yield from _torn(path, item, warn_torn)
                return seq_floor
            raise JournalCorruptError(path, offset, "truncated header in a closed segment", after_seq=seq_floor)
        header_crc, kind, raw_len, extra_len, seq, recv_ns, payload_crc = unpack(view, offset)
        if crc32(view[offset + 4:offset + header_size]) != header_crc:
            if last and not any(view[offset:]):  # zero-filled space left by a crash
                yield from _torn(path, _Torn(offset, "zero-filled tail", seq_floor), warn_torn)
                return seq_floor
            raise JournalCorruptError(path, offset, "header checksum mismatch", after_seq=seq_floor)
        start = offset + header_size
        end = start + raw_len + extra_len
        if end > n:
            if last:
                item = _Torn(offset, f"seq {seq}: record runs {end - n} bytes past the end of the file", seq_floor)
                yield from _torn(path, item, warn_torn)
                return seq_floor
            raise JournalCorruptError(path, offset, "record runs past the end of a closed segment", seq=seq)
        if crc32(view[start:end]) != payload_crc:
            if last and end == n:
                item = _Torn(offset, f"seq {seq}: payload checksum mismatch in the last record", seq_floor)
                yield from _torn(path, item, warn_torn)
                return seq_floor
            raise JournalCorruptError(path, offset, "payload checksum mismatch", seq=seq)
        if kind == MSG:
            if seq <= seq_floor:
                raise JournalCorruptError(path, offset, f"sequence number not above the previous ({seq_floor})",
                                          seq=seq)
        elif kind == NOTE:
            if seq < seq_floor:
                raise JournalCorruptError(path, offset, f"note before the previous message ({seq_floor})", seq=seq)
        else:
            raise JournalCorruptError(path, offset, f"unknown record kind {kind}", seq=seq)
        seq_floor = seq
        if seq >= from_seq:
            if payload:
                yield JournalRecord(kind, seq, recv_ns, bytes(view[start:start + raw_len]) if raw else b"",
                                    bytes(view[start + raw_len:end]), path, offset, end)
            else:
                yield JournalRecord(kind, seq, recv_ns, b"", b"", path, offset, end)
        offset = end
    return seq_floor


def read_segment(path: Path, *, last: bool, previous_seq: int = 0, from_seq: int = 0,
                 payload: bool = True, raw: bool = True) -> Generator[JournalRecord, None, int]:
    """Read-only: the verified records of one segment. A torn tail of the ``last`` segment
    (a writer may be appending, or crashed) ends the records with a warning and is left
    in place; corruption raises :class:`JournalCorruptError`. ``from_seq``, ``payload``,
    ``raw``: see :func:`_scan` (records before ``from_seq`` are verified, not yielded). Returns
    (StopIteration's value) the seq of the segment's last good record."""
    return (yield from _scan(path, path.read_bytes(), last, previous_seq, from_seq=from_seq,  # type: ignore[misc]
                             payload=payload, raw=raw, warn_torn=True))


def read_journal(folder: str | Path, from_seq: int = 0, *, raw: bool = True) -> Iterator[JournalRecord]:
    """Read-only: every verified record with ``seq >= from_seq``, in order, across segments.

    Segments wholly before ``from_seq`` are not read (a segment's name is the seq of
    its first record); in the one that holds it, the records before it are verified
    but not copied. ``raw`` False: records without their FIX bytes (``extra`` only).
    """
    paths = segment_paths(folder)
    start = 0
    for i, path in enumerate(paths):
        if int(path.stem) < from_seq:
            start = i  # the last segment starting before from_seq may hold it
    previous = 0
    for i in range(start, len(paths)):
        previous = yield from read_segment(paths[i], last=i == len(paths) - 1, previous_seq=previous,
                                           from_seq=from_seq, raw=raw)


_TAG34 = re.compile(rb"(?:^|\x01)34=(\d+)\x01")


def _tag34(raw: bytes) -> int:
    """MsgSeqNum of a raw FIX message (0 if it has none)."""
    match = _TAG34.search(raw)
    return int(match.group(1)) if match else 0


def _msg_seq_num(data: bytes, offset: int) -> int:
    """MsgSeqNum of the MSG record at ``offset`` of a segment's bytes."""
    raw_len = _HEADER.unpack_from(data, offset)[2]
    start = offset + HEADER_SIZE
    return _tag34(bytes(data[start:start + raw_len]))


class Journal:
    """The writer of a journal folder (one per FIX session); see the module docstring.

    Not thread-safe: append and commit from the thread that reads the session.
    ``last_seq``: the seq (drop-copy position) of the last MSG record appended (0: none).
    """

    def __init__(self, folder: str | Path, settings: JournalSettings = JournalSettings(), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self._segment_bytes = settings.segment_mb << 20
        self._buffer = bytearray()
        self._buffer_first_seq = 0
        self._fd = -1
        self._size = 0
        self._clock = clock
        self.last_seq = 0
        #: The MsgSeqNum (tag 34) in the last MSG record's raw bytes at open (0: none):
        #: ``last_seq`` minus it is the position offset of the sequence in progress.
        self.last_msg_seq_num = 0
        #: Records and commits since open; fsyncs done (all policies).
        self.appended = self.commits = self.fsyncs = 0
        self.truncated_bytes = 0
        self._lock = threading.Lock()
        self._dirty = False
        self._recover()
        self.committed_seq = self.last_seq
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if settings.fsync == "interval":
            self._flusher = threading.Thread(target=self._flush_loop, name="journal-fsync", daemon=True)
            self._flusher.start()

    # ----- open -------------------------------------------------------------------
    def _recover(self) -> None:
        paths = segment_paths(self.folder)
        if not paths:
            return
        path = paths[-1]
        data = path.read_bytes()
        # The writer names a segment by its first record's seq and no earlier record is
        # above it (a note repeats the last message's seq), so the name bounds what came
        # before: the closed segments are read only if this one holds no message.
        previous = int(path.stem) - 1 if len(paths) > 1 else 0
        good_end = len(MAGIC)
        last_seq = last_offset = 0
        for item in _scan(path, data, True, previous, payload=False):
            if isinstance(item, _Torn):
                self.truncated_bytes = len(data) - item.offset
                log.warning("%s: torn record at byte offset %d (%s): %d bytes truncated", path, item.offset,
                            item.reason, self.truncated_bytes)
                good_end = item.offset
                break
            good_end = item.end
            if item.kind == MSG:
                last_seq, last_offset = item.seq, item.offset
        if last_seq:
            self.last_msg_seq_num = _msg_seq_num(data, last_offset)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if good_end < len(MAGIC):  # even the magic was torn
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, MAGIC, 0)
            good_end = len(MAGIC)
        elif good_end < len(data):
            os.ftruncate(self._fd, good_end)
        if good_end != len(data):
            os.fsync(self._fd)
        os.lseek(self._fd, good_end, os.SEEK_SET)
        self._size = good_end
        if not last_seq:
            last_seq, self.last_msg_seq_num = self._last_seq_of(paths[:-1])
        self.last_seq = last_seq

    def _last_seq_of(self, paths: list[Path]) -> tuple[int, int]:
        """(seq, MsgSeqNum) of the last MSG record in these closed segments (newest first,
        reading only as far back as needed)."""
        for i in range(len(paths) - 1, -1, -1):
            seq, raw = 0, b""
            for record in read_segment(paths[i], last=False):
                if record.kind == MSG:
                    seq, raw = record.seq, record.raw
            if seq:
                return seq, _tag34(raw)
        return 0, 0

    # ----- the hot path -----------------------------------------------------------
    def append(self, seq: int, recv_ns: int, raw: bytes, extra: bytes = b"", kind: int = MSG) -> None:
        """Buffer one record (written by the next :meth:`commit`; at once under ``every``).

        MSG records need ``seq`` above :attr:`last_seq`; a NOTE takes ``seq`` = the
        last MSG's. Raises JournalError otherwise (a session reset needs a new journal).
        """
        if kind == MSG:
            if seq <= self.last_seq:
                raise JournalError(f"{self.folder}: seq {seq} is not above the last journaled {self.last_seq}"
                                   " (a sequence reset needs a new journal folder)")
            self.last_seq = seq
        elif seq != self.last_seq:
            raise JournalError(f"{self.folder}: a note must carry the last journaled seq {self.last_seq}, not {seq}")
        body = _HEADER_BODY.pack(kind, len(raw), len(extra), seq, recv_ns, _crc32(extra, _crc32(raw)))
        buffer = self._buffer
        if not buffer:
            self._buffer_first_seq = seq
        buffer += _HEADER_CRC.pack(_crc32(body))
        buffer += body
        buffer += raw
        if extra:
            buffer += extra
        self.appended += 1
        if self.settings.fsync == "every":
            self.commit()

    def mark(self) -> tuple[int, int, int]:
        """A point to :meth:`rollback` to (uncommitted records only)."""
        return len(self._buffer), self.last_seq, self.appended

    def rollback(self, mark: tuple[int, int, int]) -> None:
        """Forget the records buffered since ``mark`` (a message whose processing failed)."""
        del self._buffer[mark[0]:]
        self.last_seq, self.appended = mark[1], mark[2]

    def commit(self) -> None:
        """Write what was appended (one ``write``), fdatasync it under ``batch``/``every``."""
        if not self._buffer:
            return
        if self._fd < 0 or self._size >= self._segment_bytes:
            self._new_segment(self._buffer_first_seq)
        data = self._buffer
        view = memoryview(data)
        written = 0
        with self._lock:
            while written < len(data):
                written += os.write(self._fd, view[written:])
            self._dirty = True
        view.release()
        self._size += len(data)
        self._buffer = bytearray()
        self.commits += 1
        self.committed_seq = self.last_seq
        if self.settings.fsync in ("batch", "every"):
            self.sync()

    def sync(self) -> None:
        """fdatasync the current segment now."""
        with self._lock:
            if self._fd >= 0 and self._dirty:
                os.fdatasync(self._fd)
                self._dirty = False
                self.fsyncs += 1

    def _new_segment(self, first_seq: int) -> None:
        with self._lock:
            if self._fd >= 0:
                if self._dirty:
                    os.fdatasync(self._fd)
                    self._dirty = False
                os.close(self._fd)
            path = self.folder / f"{first_seq:020d}{_SUFFIX}"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(self._fd, MAGIC)
            self._size = len(MAGIC)
            self._dirty = True
        # The new file's name must survive a power loss too.
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _flush_loop(self) -> None:
        interval = self.settings.fsync_interval_ms / 1000.0
        while not self._stop.wait(interval):
            try:
                self.sync()
            except OSError:
                log.exception("journal fsync failed")

    # ----- reading back and closing ---------------------------------------------------
    def records(self, from_seq: int = 0) -> Iterator[JournalRecord]:
        """The committed records with ``seq >= from_seq`` (verified as they are read)."""
        return read_journal(self.folder, from_seq)

    def close(self) -> None:
        """Commit what is buffered, fsync (every policy but ``none``) and close."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(5.0)
        if self._fd < 0 and not self._buffer:
            return
        self.commit()
        if self.settings.fsync != "none":
            self.sync()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
