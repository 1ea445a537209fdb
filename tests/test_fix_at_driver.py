"""Unit tests of the FIX acceptance-test driver (tests/fix_at/driver.py) against a fake acceptor.

The fake acceptor is a scripted asyncio server. It reads the driver's messages and writes
canned bytes, so these tests need no FIX engine. The tests that read QuickFIX's scripts from
shared/fix-conformance (beside the checkout) skip when that folder is absent.
This product includes software developed by quickfixengine.org (http://www.quickfixengine.org/).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from tests.fix_at import conformance_dir
    from tests.fix_at import driver as drv
except ImportError:  # plain `pytest` puts tests/ (not the repo root) on sys.path
    from fix_at import conformance_dir
    from fix_at import driver as drv

SOH = "\x01"
AT_DIR = conformance_dir()
FIX44 = AT_DIR / "fix44"
needs_scripts = pytest.mark.skipif(not FIX44.is_dir(), reason="QuickFIX acceptance scripts not available")

CANNED_TIME = "20240102-03:04:05.678"
FIXED_NOW = dt.datetime(2024, 1, 2, 3, 4, 5, 250_000, tzinfo=dt.timezone.utc)


def soh(text: str) -> str:
    return text.replace("|", SOH)


def build(body: str, begin: str = "FIX.4.4") -> bytes:
    """A well-formed message from its body fields ('|' for SOH), computed independently of the driver."""
    b = soh(body)
    head = f"8={begin}{SOH}9={len(b)}{SOH}"
    cs = sum((head + b).encode("latin-1")) % 256
    return f"{head}{b}10={cs:03d}{SOH}".encode("latin-1")


def fields(msg: bytes | str) -> list[tuple[str, str]]:
    text = msg.decode("latin-1") if isinstance(msg, bytes) else msg
    return [tuple(f.split("=", 1)) for f in text.split(SOH) if f]  # type: ignore[misc]


def field_value(msg: bytes, tag: str) -> str:
    return dict(fields(msg))[tag]


def engine(body_after_type: str, msg_type: str, seq: int) -> bytes:
    """A message from ISLD to TW44 like QuickFIX writes it (header order 35,34,49,52,56)."""
    tail = f"|{body_after_type}" if body_after_type else ""
    return build(f"35={msg_type}|34={seq}|49=ISLD|52={CANNED_TIME}|56=TW44{tail}|")


LOGON_REPLY = engine("98=0|108=30", "A", 1)
LOGOUT_REPLY_2 = engine("", "5", 2)

LOGON = "I8=FIX.4.4|35=A|34=1|49=TW44|52=<TIME>|56=ISLD|98=0|108=30|"
E_LOGON = "E8=FIX.4.4|9=63|35=A|34=1|49=ISLD|52=00000000-00:00:00.000|56=TW44|98=0|108=30|10=0|"
LOGOUT = "I8=FIX.4.4|35=5|34=2|49=TW44|52=<TIME>|56=ISLD|"
E_LOGOUT = "E8=FIX.4.4|9=51|35=5|34=2|49=ISLD|52=00000000-00:00:00.000|56=TW44|10=0|"


def write_script(tmp_path: Path, text: str, name: str = "t.def") -> Path:
    path = tmp_path / name
    path.write_bytes(soh(text).encode("latin-1"))
    return path


# ---------------------------------------------------------------------------------------------
# fake acceptor


@dataclass
class Recv:
    """Read one complete message from the driver and record it."""


@dataclass
class Send:
    data: bytes


@dataclass
class Sleep:
    seconds: float


@dataclass
class Close:
    """Close the connection; rst=True aborts it with a TCP reset."""
    rst: bool = False


class FakeAcceptor:
    """Accepted connection k follows plans[k]; after its plan it waits for the driver to hang up."""

    def __init__(self, *plans: list[object]) -> None:
        self.plans = list(plans)
        self.received: list[list[bytes]] = [[] for _ in plans]
        self.errors: list[str] = []
        self.accepted = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._on_conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for w in self._writers:  # handlers still reading see EOF and return
            w.close()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.server.wait_closed()

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        self._writers.append(writer)
        idx = self.accepted
        self.accepted += 1
        plan = self.plans[idx] if idx < len(self.plans) else [Close()]
        try:
            for action in plan:
                if isinstance(action, Recv):
                    head = await reader.readuntil(b"\x0110=")
                    tail = await reader.readuntil(b"\x01")
                    self.received[idx].append(head + tail)
                elif isinstance(action, Send):
                    writer.write(action.data)
                    await writer.drain()
                elif isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                elif isinstance(action, Close):
                    if action.rst:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                    else:
                        writer.close()
                    return
                else:  # pragma: no cover
                    raise TypeError(action)
            while await reader.read(65536):  # hold the connection until the driver hangs up
                pass
            writer.close()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.errors.append(f"connection {idx}: {exc!r}")
            writer.close()


def run_against(tmp_path: Path, script: str, *plans: list[object], timeout: float = 2.0,
                **kwargs: object) -> tuple[drv.ScriptResult, FakeAcceptor]:
    path = write_script(tmp_path, script)
    return run_path_against(path, *plans, timeout=timeout, **kwargs)


def run_path_against(path: Path, *plans: list[object], timeout: float = 2.0,
                     **kwargs: object) -> tuple[drv.ScriptResult, FakeAcceptor]:
    async def main() -> tuple[drv.ScriptResult, FakeAcceptor]:
        fake = FakeAcceptor(*plans)
        await fake.start()
        try:
            result = await drv.run_script_async(path, "127.0.0.1", fake.port, timeout, **kwargs)
        finally:
            await fake.stop()
        return result, fake

    return asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# parsing


def test_parse_commands_connections_comments(tmp_path: Path) -> None:
    text = "\r\n".join([
        "# a comment",
        "",
        "   ",
        "iCONNECT",
        LOGON,
        E_LOGON,
        "i2,CONNECT",
        "I2,8=FIX.4.4|35=0|",
        "E2,8=FIX.4.4|35=0|",
        "e2,DISCONNECT",
        "I35=0|8=FIX.4.4|9=29|34=2|10=121|",
        "i1,DISCONNECT",
        "eDISCONNECT",
        "iDISCONNECT",
    ])
    steps = drv.parse_script(write_script(tmp_path, text))
    assert [(s.kind, s.conn) for s in steps] == [
        ("connect", 1), ("send", 1), ("expect", 1), ("connect", 2), ("send", 2), ("expect", 2),
        ("expect_disconnect", 2), ("send", 1), ("disconnect", 1), ("expect_disconnect", 1), ("disconnect", 1),
    ]
    assert steps[1].message == soh(LOGON[1:])
    assert steps[4].message == soh("8=FIX.4.4|35=0|")
    assert steps[7].message == soh("35=0|8=FIX.4.4|9=29|34=2|10=121|")
    assert steps[0].line_no == 4 and steps[1].line_no == 5
    assert all("\r" not in s.message for s in steps)


@pytest.mark.parametrize("line", ["X8=FIX.4.4|", "iFOO", "eCONNECT", "I", "e1,CONNECTED"])
def test_parse_rejects_unknown_lines(tmp_path: Path, line: str) -> None:
    with pytest.raises(drv.ScriptSyntaxError):
        drv.parse_script(write_script(tmp_path, f"iCONNECT\n{line}\n"))


@needs_scripts
def test_parse_every_shared_script() -> None:
    scripts = sorted(FIX44.glob("*.def"))
    assert len(scripts) > 50
    for path in scripts:
        steps = drv.parse_script(path)
        assert steps and steps[0].kind == "connect", path.name
        for s in steps:
            if s.kind in ("send", "expect"):
                assert SOH in s.message and "|" not in s.message, path.name
    dup = drv.parse_script(FIX44 / "1b_DuplicateIdentity.def")
    assert [(s.kind, s.conn) for s in dup] == [
        ("connect", 1), ("send", 1), ("expect", 1), ("connect", 2), ("send", 2),
        ("expect_disconnect", 2), ("disconnect", 1)]
    t2 = drv.parse_script(FIX44 / "2t_FirstThreeFieldsOutOfOrder.def")
    assert any(s.kind == "send" and s.message.startswith("35=0" + SOH + "8=FIX.4.4") for s in t2)


# ---------------------------------------------------------------------------------------------
# placeholders, BodyLength, CheckSum


def test_substitute_time_placeholders() -> None:
    text = "52=<TIME>|122=<TIME-1>|60=<TIME+10>|52=<TIME-121>|x=<TIME>"
    assert drv.substitute_time(text, FIXED_NOW) == (
        "52=20240102-03:04:05|122=20240102-03:04:04|60=20240102-03:04:15|52=20240102-03:02:04|x=20240102-03:04:05")
    midnight = dt.datetime(2023, 12, 31, 23, 59, 55, tzinfo=dt.timezone.utc)
    assert drv.substitute_time("<TIME+10>", midnight) == "20240101-00:00:05"
    # a non-UTC clock is converted to UTC
    cet = FIXED_NOW.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert drv.substitute_time("<TIME>", cet) == "20240102-03:04:05"
    assert drv.substitute_time("no placeholder", FIXED_NOW) == "no placeholder"


def test_fixify_inserts_body_length_and_checksum() -> None:
    body = "35=A|34=1|49=TW44|52=20240102-03:04:05|56=ISLD|98=0|108=30|"
    out = drv.fixify(soh("8=FIX.4.4|" + body))
    assert out.encode("latin-1") == build(body)
    assert out.split(SOH)[1] == f"9={len(body)}"
    # the engine's logon answer as script 2d writes it (no 9, no 10): BodyLength is QuickFIX's 63
    e = drv.fixify(soh("8=FIX.4.4|35=A|34=1|49=ISLD|52=00000000-00:00:00.000|56=TW44|98=0|108=30|"))
    assert e.split(SOH)[1] == "9=63"
    assert e.endswith(SOH) and e.split(SOH)[-2] == "10=" + drv.checksum(e[: e.rindex("10=")])


def test_fixify_keeps_fields_written_in_the_line() -> None:
    garbled = soh("8=FIX.4.4|9=52|35=0|34=2|4garbled9=TW|52=20240102-03:04:05|56=ISLD|10=0|")
    assert drv.fixify(garbled) == garbled  # 2d: both present, sent as written
    # 3b: wrong checksum kept, BodyLength inserted right after 8=
    bad_cs = drv.fixify(soh("8=FIX.4.4|35=0|34=2|49=TW44|52=X|56=ISLD|10=256|"))
    assert bad_cs == soh("8=FIX.4.4|9=31|35=0|34=2|49=TW44|52=X|56=ISLD|10=256|")
    # 1d: wrong BodyLength kept, checksum computed over what is sent
    bad_len = drv.fixify(soh("8=FIX.4.4|9=40|35=A|34=1|"))
    assert bad_len.startswith(soh("8=FIX.4.4|9=40|35=A|34=1|10="))
    assert bad_len.split(SOH)[-2] == "10=" + drv.checksum(soh("8=FIX.4.4|9=40|35=A|34=1|"))
    # 2t: field order kept; 9 goes right after 8 even when 34 precedes 35
    reordered = drv.fixify(soh("8=FIX.4.4|34=3|35=0|"))
    assert reordered.startswith(soh("8=FIX.4.4|9=10|34=3|35=0|10="))
    # a line that does not start with 8= is sent exactly as written
    first35 = soh("35=0|8=FIX.4.4|9=29|34=2|49=TW44|52=X|56=ISLD|10=121|")
    assert drv.fixify(first35) == first35
    # BeginString is not checked: 2i sends FIX.4.1
    assert drv.fixify(soh("8=FIX.4.1|35=1|")).startswith(soh("8=FIX.4.1|9=5|35=1|10="))


def test_checksum_is_three_digits() -> None:
    assert drv.checksum(b"\x01") == "001"
    assert drv.checksum("A" * 3) == f"{(65 * 3) % 256:03d}"


# ---------------------------------------------------------------------------------------------
# comparison


EXPECTED_LOGON = drv.prepare(soh(E_LOGON[1:]), FIXED_NOW)


@pytest.mark.parametrize("sending_time", ["20240102-03:04:05.678", "20240102-03:04:05"])
def test_compare_matches_52_by_pattern(sending_time: str) -> None:
    received = build(f"35=A|34=1|49=ISLD|52={sending_time}|56=TW44|98=0|108=30|").decode("latin-1")
    if sending_time.endswith("05"):  # BodyLength is compared exactly: 4 bytes shorter than the script's 63
        assert "Value in field (9)" in (drv.compare_messages(EXPECTED_LOGON, received) or "")
        received = received.replace(f"{SOH}9=59{SOH}", f"{SOH}9=63{SOH}")
    assert drv.compare_messages(EXPECTED_LOGON, received) is None  # 10=0 in the E line: any 3 digits


@pytest.mark.parametrize("bad_time", ["2024-01-02 03:04:05.678", "Tue Jan  2 03:04:05 2024", "20240102-3:04:05.678x"])
def test_compare_rejects_malformed_sending_time(bad_time: str) -> None:
    received = soh(f"8=FIX.4.4|9=63|35=A|34=1|49=ISLD|52={bad_time}|56=TW44|98=0|108=30|10=123|")
    for fullmatch in (False, True):
        reason = drv.compare_messages(EXPECTED_LOGON, received, fullmatch=fullmatch)
        assert reason is not None and "Field (52)" in reason and "pattern" in reason


@pytest.mark.parametrize("sloppy_time", ["20240102-03:04:05.678x", "20240102-03:04:05.6789"])
def test_search_rule_vs_fullmatch(sloppy_time: str) -> None:
    """Ruby's `regexp === value` searches; fullmatch=True is stricter (BodyLength still catches length)."""
    received = soh(f"8=FIX.4.4|9=63|35=A|34=1|49=ISLD|52={sloppy_time}|56=TW44|98=0|108=30|10=123|")
    assert drv.compare_messages(EXPECTED_LOGON, received) is None
    assert "Field (52)" in (drv.compare_messages(EXPECTED_LOGON, received, fullmatch=True) or "")


def test_compare_checksum_and_orig_sending_time_patterns() -> None:
    exp = soh("8=FIX.4.4|35=4|122=00000000-00:00:00.000|10=0|")
    assert drv.compare_messages(exp, soh("8=FIX.4.4|35=4|122=20240102-03:04:05|10=007|")) is None
    assert "Field (10)" in drv.compare_messages(exp, soh("8=FIX.4.4|35=4|122=20240102-03:04:05|10=7|"))
    assert "Field (122)" in drv.compare_messages(exp, soh("8=FIX.4.4|35=4|122|10=007|"))
    assert "Field (122)" in drv.compare_messages(exp, soh("8=FIX.4.4|35=4|122=0102-03:04:05|10=007|"))
    # OrigSendingTime with milliseconds, as the 8_* and 20 scripts' BodyLengths require, passes
    # under Ruby's search rule although fields.fmt's 122 pattern has no milliseconds
    with_ms = soh("8=FIX.4.4|35=4|122=20240102-03:04:05.123|10=007|")
    assert drv.compare_messages(exp, with_ms) is None
    assert "Field (122)" in drv.compare_messages(exp, with_ms, fullmatch=True)


@needs_scripts
def test_gap_fill_from_8_only_admin_messages_needs_millisecond_122() -> None:
    steps = drv.parse_script(FIX44 / "8_OnlyAdminMessages.def")
    gap_fill = next(s for s in steps if s.kind == "expect" and "35=4" in s.message)
    ok = build(f"35=4|34=1|43=Y|49=ISLD|52={CANNED_TIME}|56=TW44|122={CANNED_TIME}|36=5|123=Y|")
    assert field_value(ok, "9") == "93"
    assert drv.compare_messages(drv.prepare(gap_fill.message), ok.decode("latin-1")) is None


def test_compare_exact_values_order_and_count() -> None:
    exp = soh("8=FIX.4.4|35=0|34=2|58=a=b|10=0|")
    assert drv.compare_messages(exp, soh("8=FIX.4.4|35=0|34=2|58=a=b|10=001|")) is None
    assert drv.compare_messages(exp, soh("8=FIX.4.4|35=0|34=3|58=a=b|10=001|")) == (
        "Value in field (34) should be (2) but was (3)")
    assert "expected field (34) but found field (58)" in drv.compare_messages(
        exp, soh("8=FIX.4.4|35=0|58=a=b|34=2|10=001|"))
    assert "Number of fields" in drv.compare_messages(exp, soh("8=FIX.4.4|35=0|34=2|58=a=b|99=1|10=001|"))
    assert "Value in field (58)" in drv.compare_messages(exp, soh("8=FIX.4.4|35=0|34=2|58=a=c|10=001|"))
    # an empty value is not the same as a missing '='
    assert drv.compare_messages(soh("8=FIX.4.4|56=|"), soh("8=FIX.4.4|56|")) is not None


def test_fields_fmt_loaded_from_shared_folder_matches_builtin() -> None:
    if not (AT_DIR / "fields.fmt").is_file():
        pytest.skip("fields.fmt not available")
    loaded = drv.load_field_patterns(AT_DIR / "fields.fmt")
    assert {k: v.pattern for k, v in loaded.items()} == {k: v.pattern for k, v in drv.DEFAULT_FIELD_PATTERNS.items()}
    assert sorted(loaded, key=int) == ["10", "42", "52", "60", "122"]


def test_extract_message_framing() -> None:
    a, b = LOGON_REPLY, LOGOUT_REPLY_2
    assert drv.extract_message(a[:-1]) == (None, a[:-1])
    assert drv.extract_message(a[: a.index(b"\x0110=") + 2]) == (None, a[: a.index(b"\x0110=") + 2])
    msg, rest = drv.extract_message(a + b + b"8=FIX")
    assert msg == a and rest == b + b"8=FIX"
    assert drv.extract_message(rest) == (b, b"8=FIX")


# ---------------------------------------------------------------------------------------------
# running against the fake acceptor


def test_logon_logout_roundtrip_passes(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", LOGON, E_LOGON, "", "# logout", LOGOUT, E_LOGOUT, "eDISCONNECT", ""])
    plan = [Recv(), Send(LOGON_REPLY), Recv(), Send(LOGOUT_REPLY_2), Close()]
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    result, fake = run_against(tmp_path, script, plan)
    after = dt.datetime.now(dt.timezone.utc)
    assert result.passed, result.report()
    assert result.failure is None and result.steps_run == result.steps_total == 6
    logon, logout = fake.received[0]
    # <TIME> became the current UTC time; 9 and 10 are what an independent builder computes
    sent = dt.datetime.strptime(field_value(logon, "52"), "%Y%m%d-%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    assert before - dt.timedelta(seconds=1) <= sent <= after
    assert logon == build(f"35=A|34=1|49=TW44|52={field_value(logon, '52')}|56=ISLD|98=0|108=30|")
    assert logout == build(f"35=5|34=2|49=TW44|52={field_value(logout, '52')}|56=ISLD|")
    directions = [d for d, _ in result.transcript]
    assert directions == ["event", "send", "recv", "send", "recv", "event"]
    assert result.transcript[2] == ("recv", "[1] " + LOGON_REPLY.decode().replace(SOH, "|"))
    assert "closed by peer" in result.transcript[-1][1]


def test_clock_offsets_are_applied_when_the_line_is_sent(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", "I8=FIX.4.4|35=0|34=2|52=<TIME-121>|122=<TIME+10>|", "eDISCONNECT"])
    result, fake = run_against(tmp_path, script, [Recv(), Close()], clock=lambda: FIXED_NOW)
    assert result.passed, result.report()
    assert fake.received[0][0] == build("35=0|34=2|52=20240102-03:02:04|122=20240102-03:04:15|")


def test_garbled_line_is_sent_as_written(tmp_path: Path) -> None:
    line = "I8=FIX.4.4|9=52|35=0|34=2|4garbled9=TW|52=<TIME>|56=ISLD|10=0|"
    script = "\n".join(["iCONNECT", line, "eDISCONNECT"])
    result, fake = run_against(tmp_path, script, [Recv(), Close()], clock=lambda: FIXED_NOW)
    assert result.passed, result.report()
    sent = "8=FIX.4.4|9=52|35=0|34=2|4garbled9=TW|52=20240102-03:04:05|56=ISLD|10=0|"
    assert fake.received[0][0] == soh(sent).encode()


def test_mismatch_is_detected_and_reported(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", LOGON, E_LOGON, LOGOUT, E_LOGOUT, "eDISCONNECT"])
    wrong = engine("98=0|108=30", "A", 2)  # MsgSeqNum 2 instead of 1
    result, _ = run_against(tmp_path, script, [Recv(), Send(wrong)])
    assert not result.passed
    assert result.steps_run == 2 and result.failed_step is not None and result.failed_step.line_no == 3
    msg = result.failure or ""
    assert "line 3" in msg and "Value in field (34) should be (1) but was (2)" in msg
    assert "expected: 8=FIX.4.4|9=63|35=A|34=1|49=ISLD|" in msg
    assert "received: " + wrong.decode().replace(SOH, "|") in msg
    assert "    !  3  34=1" in msg and "34=2" in msg  # the field table marks the offending field
    assert "    ~  5  52=00000000-00:00:00.000" in msg
    assert SOH not in msg
    assert "FAILED" in result.report()


def test_expect_times_out(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", LOGON, E_LOGON])
    result, _ = run_against(tmp_path, script, [Recv()], timeout=0.5)
    assert not result.passed and "timed out after 0.5s" in (result.failure or "")


def test_disconnect_while_expecting_fails(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", LOGON, E_LOGON])
    result, _ = run_against(tmp_path, script, [Recv(), Close()])
    assert not result.passed and "Was disconnected" in (result.failure or "")


def test_heartbeat_then_reply_split_and_coalesced(tmp_path: Path) -> None:
    """Framing across TCP segments: one message in two writes, then two messages in one write."""
    script = "\n".join([
        "iCONNECT", LOGON, E_LOGON,
        "I8=FIX.4.4|35=1|34=2|49=TW44|52=<TIME>|56=ISLD|112=HELLO|",
        "E8=FIX.4.4|9=51|35=0|34=2|49=ISLD|52=00000000-00:00:00.000|56=TW44|10=0|",
        "E8=FIX.4.4|9=61|35=0|34=3|49=ISLD|52=00000000-00:00:00.000|56=TW44|112=HELLO|10=0|",
    ])
    hb, reply = engine("", "0", 2), engine("112=HELLO", "0", 3)
    cut = LOGON_REPLY.index(b"\x0110=") + 2
    plan = [Recv(), Send(LOGON_REPLY[:cut]), Sleep(0.1), Send(LOGON_REPLY[cut:]), Recv(), Send(hb + reply)]
    result, _ = run_against(tmp_path, script, plan)
    assert result.passed, result.report()


def test_expect_disconnect_succeeds_on_silent_close(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", "I8=FIX.4.4|35=A|34=1|49=WT|52=<TIME>|56=ISLD|98=0|108=30|", "eDISCONNECT"])
    result, fake = run_against(tmp_path, script, [Recv(), Close()])
    assert result.passed, result.report()
    assert len(fake.received[0]) == 1


def test_expect_disconnect_accepts_a_reset(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", LOGON, "eDISCONNECT"])
    result, _ = run_against(tmp_path, script, [Recv(), Close(rst=True)])
    assert result.passed, result.report()
    assert "reset by peer" in result.transcript[-1][1]


def test_expect_disconnect_fails_on_unlisted_logout(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", "I8=FIX.4.4|35=A|34=1|49=WT|52=<TIME>|56=ISLD|98=0|108=30|", "eDISCONNECT"])
    logout = engine("58=bad CompID", "5", 1)
    result, _ = run_against(tmp_path, script, [Recv(), Send(logout), Close()])
    assert not result.passed
    msg = result.failure or ""
    assert "Expected disconnection, got data; then the peer closed the connection" in msg
    assert "received: " + logout.decode().replace(SOH, "|") in msg
    assert result.failed_step is not None and result.failed_step.kind == "expect_disconnect"


def test_expect_disconnect_fails_on_leftover_buffered_data(tmp_path: Path) -> None:
    """A message already buffered behind the last expected one counts as data before the close."""
    script = "\n".join(["iCONNECT", LOGON, E_LOGON, "eDISCONNECT"])
    extra = engine("", "0", 2)
    result, _ = run_against(tmp_path, script, [Recv(), Send(LOGON_REPLY + extra), Close()])
    assert not result.passed and "Expected disconnection, got data" in (result.failure or "")
    assert "35=0|34=2" in (result.failure or "")


def test_expect_disconnect_fails_when_connection_hangs(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", LOGON, "eDISCONNECT"])
    result, _ = run_against(tmp_path, script, [Recv()], timeout=0.5)
    assert not result.passed and "Connection hangs after 0.5 seconds" in (result.failure or "")


def test_two_connections(tmp_path: Path) -> None:
    """AlreadyLoggedOn: a second logon for the same session is dropped, the first carries on."""
    script = "\n".join([
        "i1,CONNECT",
        "I1," + LOGON[1:],
        "E1," + E_LOGON[1:],
        "i2,CONNECT",
        "I2," + LOGON[1:],
        "e2,DISCONNECT",
        "I1," + LOGOUT[1:],
        "E1," + E_LOGOUT[1:],
        "e1,DISCONNECT",
    ])
    plan1 = [Recv(), Send(LOGON_REPLY), Recv(), Send(LOGOUT_REPLY_2), Close()]
    plan2 = [Recv(), Close()]
    result, fake = run_against(tmp_path, script, plan1, plan2)
    assert result.passed, result.report()
    assert fake.accepted == 2
    assert [field_value(m, "35") for m in fake.received[0]] == ["A", "5"]
    assert [field_value(m, "35") for m in fake.received[1]] == ["A"]
    assert [t[:3] for d, t in result.transcript if d == "send"] == ["[1]", "[2]", "[1]"]


def test_send_on_a_connection_that_is_not_open_fails(tmp_path: Path) -> None:
    script = "\n".join(["iCONNECT", "I2," + LOGON[1:]])
    result, _ = run_against(tmp_path, script, [Recv()])
    assert not result.passed and "connection 2 is not open" in (result.failure or "")


def test_connect_refused_is_a_failure(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_script(tmp_path, "iCONNECT\n" + LOGON)
    result = drv.run_script(path, "127.0.0.1", port, timeout=1.0)
    assert not result.passed and result.steps_run == 0 and "could not connect" in (result.failure or "")


@needs_scripts
def test_real_scripts_against_canned_acceptor() -> None:
    """1a and 1c as shipped, against replies that an independent builder makes, as QuickFIX writes them."""
    ok, _ = run_path_against(FIX44 / "1a_ValidLogonWithCorrectMsgSeqNum.def",
                             [Recv(), Send(LOGON_REPLY), Recv(), Send(LOGOUT_REPLY_2), Close()])
    assert ok.passed, ok.report()
    silent, _ = run_path_against(FIX44 / "1c_InvalidSenderCompID.def", [Recv(), Close()])
    assert silent.passed, silent.report()
    # SessionReset's E line carries 52=<TIME> and no 10=: 52 is matched by pattern, 10 computed then ignored
    steps = drv.parse_script(FIX44 / "SessionReset.def")
    hb = next(s for s in steps if s.kind == "expect" and "<TIME>" in s.message)
    assert drv.compare_messages(drv.prepare(hb.message), engine("112=1", "0", 2).decode("latin-1")) is None
