"""The drop-copy journal: round trip, segments, fsync policies, torn tails, corruption.

Every expectation is checked against what was appended (the records kept aside in
the test) or against the bytes on disk (offsets read back before damaging them).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest

from fix.journal import (HEADER_SIZE, MAGIC, MSG, NOTE, Journal, JournalCorruptError, JournalError, JournalSettings,
                         read_journal, read_segment, segment_paths)


def _records(n: int, seed: int = 1, start: int = 1) -> list[tuple[int, int, bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        raw = b"8=FIX.4.4\x019=%d\x0135=8\x0134=%d\x01" % (i, start + i) + bytes(rng.randrange(256)
                                                                                  for _ in range(rng.randrange(200)))
        extra = bytes(rng.randrange(256) for _ in range(rng.randrange(120)))
        out.append((start + i, 10_000 + i, raw, extra))
    return out


def _write(folder: Path, records, settings: JournalSettings = JournalSettings(fsync="none"), batch: int = 7) -> Journal:
    journal = Journal(folder, settings)
    for i, (seq, ns, raw, extra) in enumerate(records):
        journal.append(seq, ns, raw, extra)
        if i % batch == batch - 1:
            journal.commit()
    journal.commit()
    return journal


def _as_tuples(records) -> list[tuple[int, int, bytes, bytes]]:
    return [(r.seq, r.recv_ns, r.raw, r.extra) for r in records]


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    records = _records(300)
    _write(tmp_path, records).close()
    assert _as_tuples(read_journal(tmp_path)) == records
    journal = Journal(tmp_path, JournalSettings(fsync="none"))
    assert journal.last_seq == 300 and journal.truncated_bytes == 0
    more = _records(5, seed=2, start=301)
    for seq, ns, raw, extra in more:
        journal.append(seq, ns, raw, extra)
    journal.append(305, 1, b"", b"collateral", kind=NOTE)
    journal.close()
    read = list(read_journal(tmp_path))
    assert _as_tuples(read[:-1]) == records + more
    assert (read[-1].kind, read[-1].seq, read[-1].extra) == (NOTE, 305, b"collateral")


def test_sequence_numbers_must_increase_and_rollback_forgets(tmp_path: Path) -> None:
    journal = Journal(tmp_path, JournalSettings(fsync="none"))
    journal.append(5, 0, b"a")
    with pytest.raises(JournalError, match="seq 5 is not above the last journaled 5"):
        journal.append(5, 0, b"b")
    with pytest.raises(JournalError, match="note must carry"):
        journal.append(4, 0, b"", b"x", kind=NOTE)
    mark = journal.mark()
    journal.append(6, 0, b"c")
    journal.rollback(mark)
    assert journal.last_seq == 5
    journal.append(6, 0, b"d")
    journal.close()
    assert [(r.seq, r.raw) for r in read_journal(tmp_path)] == [(5, b"a"), (6, b"d")]


def test_segments_rotate_and_reading_from_a_seq_starts_there(tmp_path: Path) -> None:
    big = [(s, 0, b"R" * 50_000 + b"%d" % s, b"") for s in range(1, 121)]
    journal = _write(tmp_path, big, JournalSettings(fsync="none", segment_mb=1), batch=3)
    journal.close()
    paths = segment_paths(tmp_path)
    assert len(paths) >= 5
    assert [int(p.stem) for p in paths] == sorted(int(p.stem) for p in paths)
    for from_seq in (1, 2, 37, int(paths[2].stem), int(paths[2].stem) + 1, 120, 121):
        assert [r.seq for r in read_journal(tmp_path, from_seq)] == list(range(from_seq, 121))
    assert Journal(tmp_path, JournalSettings(fsync="none", segment_mb=1)).last_seq == 120


@pytest.mark.parametrize("policy", ["none", "interval", "batch", "every"])
def test_fsync_policies(tmp_path: Path, policy: str) -> None:
    records = _records(40)
    journal = _write(tmp_path, records, JournalSettings(fsync=policy, fsync_interval_ms=1.0), batch=10)
    commits = journal.commits
    if policy == "interval":
        import time

        deadline = time.monotonic() + 5
        while journal.fsyncs == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
    expected = {"none": 0, "batch": commits, "every": len(records)}
    if policy in expected:
        assert journal.fsyncs == expected[policy]
    else:
        assert journal.fsyncs >= 1
    assert commits == (len(records) if policy == "every" else 4)
    journal.close()
    assert _as_tuples(read_journal(tmp_path)) == records


def _segment(tmp_path: Path) -> Path:
    (path,) = segment_paths(tmp_path)
    return path


@pytest.mark.parametrize("cut", ["partial_header", "partial_payload", "bad_last_checksum", "zero_tail"])
def test_torn_tail_is_truncated_with_a_warning(tmp_path: Path, caplog, cut: str) -> None:
    records = _records(50)
    _write(tmp_path, records).close()
    path = _segment(tmp_path)
    offsets = [r.offset for r in read_segment(path, last=True)]
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if cut == "partial_header":  # a crash wrote a few bytes of one more record
            f.seek(0, os.SEEK_END)
            f.write(b"\x01\x02\x03\x04\x05")
            kept = 50
        elif cut == "partial_payload":  # the last record's write was cut short
            f.truncate(size - 3)
            kept = 49
        elif cut == "bad_last_checksum":  # the last record's bytes did not all reach the disk
            f.seek(offsets[-1] + HEADER_SIZE + 2)
            byte = f.read(1)
            f.seek(offsets[-1] + HEADER_SIZE + 2)
            f.write(bytes([byte[0] ^ 0x40]))
            kept = 50 - 1
        else:  # power loss: the file grew but the blocks are zero
            f.seek(0, os.SEEK_END)
            f.write(b"\0" * 4096)
            kept = 50
    damaged_size = path.stat().st_size
    # A reader (riskd replay on a live journal) stops before the tail and leaves it alone.
    with caplog.at_level(logging.WARNING, logger="riskd.fix.journal"):
        assert _as_tuples(read_journal(tmp_path)) == records[:kept]
    assert any("reading stops there" in r.getMessage() for r in caplog.records)
    assert path.stat().st_size == damaged_size
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="riskd.fix.journal"):
        journal = Journal(tmp_path, JournalSettings(fsync="none"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "torn record at byte offset" in warnings[0] and str(path) in warnings[0]
    assert journal.last_seq == kept and journal.truncated_bytes > 0
    assert path.stat().st_size == (offsets[kept] if kept < 50 else size)
    journal.append(kept + 1, 0, b"after the crash")
    journal.close()
    read = _as_tuples(read_journal(tmp_path))
    assert read[:-1] == records[:kept] and read[-1] == (kept + 1, 0, b"after the crash", b"")


def test_torn_magic_of_a_new_segment(tmp_path: Path) -> None:
    path = tmp_path / f"{1:020d}.jnl"
    path.write_bytes(MAGIC[:3])
    journal = Journal(tmp_path, JournalSettings(fsync="none"))
    assert journal.last_seq == 0
    journal.append(1, 0, b"x")
    journal.close()
    assert [r.raw for r in read_journal(tmp_path)] == [b"x"]


def test_a_flipped_payload_byte_in_the_middle_stops_recovery_with_a_precise_error(tmp_path: Path) -> None:
    records = _records(80)
    _write(tmp_path, records).close()
    path = _segment(tmp_path)
    read = list(read_segment(path, last=True))
    victim = read[40]
    with open(path, "r+b") as f:
        f.seek(victim.offset + HEADER_SIZE + 1)
        byte = f.read(1)
        f.seek(victim.offset + HEADER_SIZE + 1)
        f.write(bytes([byte[0] ^ 0x01]))
    size = path.stat().st_size
    for opener in (lambda: Journal(tmp_path, JournalSettings(fsync="none")), lambda: list(read_journal(tmp_path))):
        with pytest.raises(JournalCorruptError) as caught:
            opener()
        error = caught.value
        assert (error.path, error.offset, error.seq) == (path, victim.offset, victim.seq)
        assert f"{path}: corrupt journal record at byte offset {victim.offset} (seq {victim.seq})" in str(error)
        assert "payload checksum mismatch" in str(error)
    assert path.stat().st_size == size  # nothing truncated, nothing skipped


def test_a_flipped_header_byte_in_the_middle_names_the_record_after_the_last_good_one(tmp_path: Path) -> None:
    records = _records(30)
    _write(tmp_path, records).close()
    path = _segment(tmp_path)
    read = list(read_segment(path, last=True))
    victim = read[12]
    with open(path, "r+b") as f:
        f.seek(victim.offset + 9)  # inside raw_len
        byte = f.read(1)
        f.seek(victim.offset + 9)
        f.write(bytes([byte[0] ^ 0x80]))
    with pytest.raises(JournalCorruptError) as caught:
        Journal(tmp_path, JournalSettings(fsync="none"))
    error = caught.value
    assert (error.offset, error.seq, error.after_seq) == (victim.offset, None, read[11].seq)
    assert f"the record after seq {read[11].seq}" in str(error) and "header checksum mismatch" in str(error)


def test_corruption_in_a_closed_segment_is_an_error_even_at_its_end(tmp_path: Path) -> None:
    big = [(s, 0, b"R" * 300_000, b"") for s in range(1, 11)]
    _write(tmp_path, big, JournalSettings(fsync="none", segment_mb=1), batch=1).close()
    first = segment_paths(tmp_path)[0]
    with open(first, "r+b") as f:
        f.truncate(first.stat().st_size - 10)
    with pytest.raises(JournalCorruptError, match="closed segment"):
        list(read_journal(tmp_path))


def test_reading_from_a_seq_skips_copies_not_checks(tmp_path: Path) -> None:
    big = [(s, 0, b"R" * 50_000 + b"%d" % s, b"E%d" % s) for s in range(1, 121)]
    _write(tmp_path, big, JournalSettings(fsync="none", segment_mb=1), batch=3).close()
    paths = segment_paths(tmp_path)
    # raw=False: the records' derived bytes without their FIX message.
    assert [(r.seq, r.raw, r.extra) for r in read_journal(tmp_path, 50, raw=False)] == [
        (s, b"", b"E%d" % s) for s in range(50, 121)]
    # A record before from_seq, in the segment that holds it, is verified though not returned.
    third = paths[2]
    offsets = [r.offset for r in read_segment(third, last=False)]
    data = bytearray(third.read_bytes())
    data[offsets[0] + HEADER_SIZE + 10] ^= 0x01  # payload of the segment's first record
    third.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match=f"{third}: corrupt journal record at byte offset {offsets[0]}"):
        list(read_journal(tmp_path, int(third.stem) + 2))


def test_reading_from_a_segment_boundary_still_checks_the_order_across_segments(tmp_path: Path) -> None:
    big = [(s, 0, b"R" * 50_000 + b"%d" % s, b"") for s in range(1, 61)]
    _write(tmp_path, big, JournalSettings(fsync="none", segment_mb=1), batch=3).close()
    paths = segment_paths(tmp_path)
    for path in paths[2:]:
        path.unlink()
    last = [r.seq for r in read_segment(paths[1], last=False)][-1]
    # A segment named just above the second one's last seq, holding a seq the second one has.
    stray = Journal(tmp_path / "stray", JournalSettings(fsync="none"))
    stray.append(last - 1, 0, b"old")
    stray.close()
    segment_paths(tmp_path / "stray")[0].rename(tmp_path / f"{last + 1:020d}.jnl")
    # Nothing of the second segment is returned, but its last seq still bounds the next one's.
    with pytest.raises(JournalCorruptError, match=f"not above the previous \\({last}\\)"):
        list(read_journal(tmp_path, last + 1))


def test_opening_reads_only_the_last_segment_and_checks_its_name(tmp_path: Path) -> None:
    big = [(s, 0, b"R" * 50_000 + b"%d" % s, b"") for s in range(1, 61)]
    _write(tmp_path, big, JournalSettings(fsync="none", segment_mb=1), batch=3).close()
    paths = segment_paths(tmp_path)
    for path in paths[:-1]:  # damage every closed segment: the open does not read them
        data = bytearray(path.read_bytes())
        data[len(MAGIC) + HEADER_SIZE + 5] ^= 0x01
        path.write_bytes(bytes(data))
    assert Journal(tmp_path, JournalSettings(fsync="none", segment_mb=1)).last_seq == 60
    # A last segment whose first record is below its name (not what the writer names): refused.
    last = paths[-1]
    last.rename(last.with_name(f"{int(last.stem) + 1:020d}.jnl"))
    with pytest.raises(JournalCorruptError, match="not above the previous"):
        Journal(tmp_path, JournalSettings(fsync="none", segment_mb=1))


def test_a_last_segment_of_notes_only_takes_the_last_message_from_before_it(tmp_path: Path) -> None:
    big = [(s, 0, b"R" * 50_000 + b"%d" % s, b"") for s in range(1, 31)]
    journal = _write(tmp_path, big, JournalSettings(fsync="none", segment_mb=1), batch=3)
    while journal._size < journal._segment_bytes:  # fill the segment up to its limit with notes
        journal.append(30, 0, b"", b"N" * 50_000, kind=NOTE)
        journal.commit()
    journal.append(30, 0, b"", b"last note", kind=NOTE)  # opens a segment of its own
    journal.close()
    last = segment_paths(tmp_path)[-1]
    assert [(r.kind, r.seq) for r in read_segment(last, last=True)] == [(NOTE, 30)]
    assert Journal(tmp_path, JournalSettings(fsync="none", segment_mb=1)).last_seq == 30


@pytest.mark.parametrize("last_in_closed_segment", [False, True])
def test_reopening_finds_the_last_msgseqnum_behind_the_positions(tmp_path: Path, last_in_closed_segment: bool) -> None:
    """Positions (record seqs) run on across a sequence reset; the MsgSeqNum in the last
    message's raw bytes gives the session's next expected number and the offset."""
    from fix.journaled_app import JournaledApplication

    first = _records(40)  # positions 1..40, MsgSeqNum 1..40
    # after a reset at position 40: MsgSeqNum 2..31 at positions 42..71
    second = [(40 + 2 + i, 1, b"8=FIX.4.4\x019=5\x0135=8\x0134=%d\x0158=x\x01" % (2 + i), b"") for i in range(30)]
    settings = JournalSettings(fsync="none", segment_mb=1)
    journal = _write(tmp_path, first + second, settings)
    if last_in_closed_segment:  # a segment holding only a note after the messages
        journal._new_segment(71)
        journal.append(71, 2, b"", b"collateral", kind=NOTE)
        journal.commit()
    journal.close()
    reopened = Journal(tmp_path, settings)
    assert (reopened.last_seq, reopened.last_msg_seq_num) == (71, 31)

    class Inner:
        seq_offset = 0
        max_position = 0

    app = JournaledApplication(Inner(), reopened)
    assert app.offset == 40 and app.inner.seq_offset == 40 and app.inner.max_position == 71
    reopened.close()
