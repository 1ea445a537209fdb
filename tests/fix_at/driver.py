"""A Python version of QuickFIX's acceptance-test driver, for the FIX 4.4 session scripts.

This product includes software developed by quickfixengine.org
(http://www.quickfixengine.org/).

The scripts in ``/work/shared/fix-conformance/quickfix-at/fix44/*.def`` are QuickFIX's
acceptance tests (see that folder's README.md). QuickFIX runs them with a Ruby driver
(``test/Runner.rb``, ``Reflector.rb``, ``ReflectorClient.rb``, ``FixParser.rb`` and
``Comparator.rb``). This module does the same job in Python with plain blocking sockets.
It plays the initiator (CompID TW44) and talks to the engine under test over TCP only.
It imports nothing from ``fix/``.

API::

    parse_script(path) -> list[Step]
    parse_script_text(text, source="<string>") -> list[Step]
    run_script(path, host, port, timeout=10.0, *, fields_fmt=None, clock=None, fullmatch=False) -> ScriptResult
    run_steps(steps, host, port, timeout=10.0, *, patterns=None, name="<steps>", clock=None,
              fullmatch=False) -> ScriptResult
    async run_script_async(path, host, port, timeout=10.0, **kw) -> ScriptResult
    substitute_time(text, now) -> str      # <TIME>, <TIME+N>, <TIME-N>
    fixify(text) -> str                    # add missing 9= / 10=, like Reflector.fixify!
    prepare(text, now=None) -> str         # substitute_time, then fixify: what an I/E line becomes
    compare_messages(expected, received, patterns=None, *, fullmatch=False) -> str | None  # None: match
    format_diff(expected, received, patterns=None, *, fullmatch=False) -> str
    extract_message(buf) -> (message | None, rest)
    load_field_patterns(path) -> dict[str, re.Pattern]

Validation: with default settings (search rule, timeout 10 s), this driver passes all 59
fix44 scripts against a real QuickFIX 1.16.0 acceptor (PyPI ``quickfix``, built from source).
That acceptor had ISLD/TW44, ResetOnLogon=Y, a FIX44.xml DataDictionary and an application
that echoes 35=D (once per ClOrdID for PossResend=Y) and 35=d. So a failure points at a
difference between the engine under test and QuickFIX, not at the driver.

``fields.fmt`` is looked up in the script's folder and then its parent, the layout of
quickfix-at/. If it is in neither, a built-in copy is used.

``run_script`` blocks. If the engine's acceptor runs on an asyncio loop in the same
thread, call ``await run_script_async(...)``, which runs the driver in a worker thread.

Line handling
-------------
* ``#`` comments and blank lines are skipped. ``iCONNECT``/``iN,CONNECT`` open a connection.
  ``iDISCONNECT``/``iN,DISCONNECT`` close it. ``eDISCONNECT``/``eN,DISCONNECT`` expect the
  peer to close it. ``I``/``IN,`` lines are sent and ``E``/``EN,`` lines are expected. The
  connection number defaults to 1. ``eCONNECT`` starts a script in which the driver is the
  acceptor; no fix44 script does this, so it is rejected as a syntax error.
* Each I or E line is prepared when its step runs, as in ``Reflector.processFile``. The
  driver first replaces every ``<TIME>``, ``<TIME+N>`` and ``<TIME-N>`` with the current UTC
  time, offset by N seconds, written as ``YYYYMMDD-HH:MM:SS``. Then comes ``fixify``: if the
  line starts with ``8=`` and has no ``\\x019=`` field, ``9=<BodyLength>`` goes right after the
  8= field. If it has no trailing ``10=`` field, ``10=<CheckSum>`` (three digits) is appended.
  Anything the line already carries is kept as written, which is how garbled messages are
  written (2d, 2m, 3b, 3c, 1d_InvalidLogonLengthInvalid). Field order is never changed. A
  line that does not start with ``8=`` (2t: ``I35=0|8=FIX.4.4|9=29|...``) is sent exactly as
  written, as Reflector.fixify! does.
* E lines go through the same steps. So an E line without ``9=`` (2d, 3c) expects the
  BodyLength of the expected text, with placeholders such as ``52=00000000-00:00:00.000``
  standing in for the real values (they have the same length). An E line without ``10=``
  (SessionReset, 3b) gets a computed checksum, but 10 is matched by pattern anyway.

Comparison (Comparator.rb)
--------------------------
Both messages are split on SOH, and trailing empty pieces are dropped. The field counts
must be equal. Tags are compared as strings, position by position. For a tag listed in
``fields.fmt`` (10, 42, 52, 60, 122), the *received* value must match that tag's regular
expression and the expected value is ignored. That is why E lines can carry ``10=0``,
``52=00000000-00:00:00.000``, ``52=20040227-19:56:48`` or ``52=<TIME>``. Every other value
must be equal byte for byte. BodyLength (9) is therefore compared exactly as written:
SessionReset's ``E...|9=57|...|52=<TIME>|...`` needs a millisecond SendingTime from the
engine, even though ``<TIME>`` itself has no milliseconds.

Patterns use Ruby's rule, ``regexp === value``: a search anywhere in the value
(``re.search``, ASCII). Full matching (``fullmatch=True``) looks stricter, but it cannot work
with the scripts as shipped. fields.fmt has ``122=\\d{8}-\\d{2}:\\d{2}:\\d{2}``, with no
milliseconds. Yet the BodyLength in the E lines of 8_AdminAndApplicationMessages,
8_OnlyAdminMessages, 8_OnlyApplicationMessages and 20_SimultaneousResendRequest
(``9=93``/``9=132``) only adds up if OrigSendingTime carries milliseconds
(``122=YYYYMMDD-HH:MM:SS.sss``), as QuickFIX writes it. Under fullmatch, no engine could pass
those four. The search rule costs little: 52, 60, 122 and 42 lie inside the body, so any
extra or missing character still fails the exact comparison of 9=. Only 10= (outside the
body) could carry extra digits unnoticed, as it can with QuickFIX's own driver.

This driver also differs from the Ruby one in these ways:

* A field splits on its first ``=``. Ruby's ``split("=")`` drops anything after a second
  ``=``. No script has ``=`` inside a value.
* Framing: an incoming message is everything up to the SOH that follows the first
  ``\\x0110=``. FixParser.rb reads BodyLength bytes instead. With a wrong BodyLength, Ruby
  misframes and this driver does not, but the exact comparison of 9= fails either way.
* Timeouts: each E line must be answered within ``timeout`` seconds (default 10). The Ruby
  driver waits for ever. Heartbeats from a short HeartBtInt (108=2 or 6) are not skipped.
  They are simply the next message, and the scripts that expect them list them.
* The first failure ends the script, as in Runner.rb (errorAction raises). The caller is
  responsible for making sure the acceptor is listening. Runner.rb first probes the port
  with a connect+close, and this driver does not.
* Connection numbers may have more than one digit. Ruby reads ``^[IEie]\\d{1},``.
* A TCP RST counts as a disconnect. In Ruby, ``eof?`` raises ECONNRESET, and the script fails.

eDISCONNECT tolerance: none. A faithful port of ``ReflectorClient.waitDisconnectAction``
waits up to 10 s (``timeout``) for the socket to become readable. It fails with "Connection
hangs" if nothing happens. It also fails with "Expected disconnection, got data" if any
byte arrives before EOF, including bytes already buffered from an earlier read. Nothing is
tolerated, not even a final Logout, and the scripts are written for this:

* When QuickFIX sends a Logout before it drops the connection, the script lists that Logout
  as an E line before the eDISCONNECT: 2c, 10_MsgSeqNumLess, 2i (both parts), 2f, 2k, 2o,
  13b, and every ``logout message and response``.
* In 2i's second part, the driver does not answer the engine's Logout. The engine must then
  close without sending anything more (QuickFIX waits for its LogoutTimeout and drops).
* 1c, 1d and 1e send a bad first message, and AlreadyLoggedOn and 1b open a second session.
  None of these scripts lists a reply, because QuickFIX drops such connections silently. It
  finds no session for an unknown CompID. It rejects a logon before any session exists
  (``generateReject`` throws "Tried to send a reject while not logged on"). It refuses a
  duplicate logon.
* 6_SendTestRequest ends with a silent drop after the TestRequest goes unanswered.

So an engine that sends a Logout in 1c, 1d or 1e, or anything after its Logout in 2i, fails
here as it would under QuickFIX's own driver. When data does arrive, the driver keeps
reading for up to 1 s more, then fails and shows everything it received.

Transcript: ``ScriptResult.transcript`` is a list of ``(direction, text)``, where direction
is ``"send"``, ``"recv"`` or ``"event"``. Text starts with ``[N] ``, the connection number,
and writes SOH as ``|``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

__all__ = [
    "SOH", "DEFAULT_TIMEOUT", "DEFAULT_FIELD_PATTERNS", "Step", "ScriptResult", "ScriptSyntaxError",
    "parse_script", "parse_script_text", "run_script", "run_steps", "run_script_async",
    "substitute_time", "fixify", "prepare", "checksum", "split_fields", "compare_messages", "format_diff",
    "extract_message", "load_field_patterns", "parse_field_patterns", "pretty",
]

SOH = "\x01"
DEFAULT_TIMEOUT = 10.0
#: how long eDISCONNECT keeps reading after unexpected data arrives, to show it all in the report
_UNEXPECTED_DATA_GRACE = 1.0
_TIME_FORMAT = "%Y%m%d-%H:%M:%S"

#: the contents of quickfix-at/fields.fmt; used when no fields.fmt is found next to a script
_FIELDS_FMT_TEXT = (
    "10=\\d{3}\n"
    "42=\\d{8}-\\d{2}:\\d{2}:\\d{2}\n"
    "52=\\d{8}-\\d{2}:\\d{2}:\\d{2}|\\d{8}-\\d{2}:\\d{2}:\\d{2}[.]\\d{3}\n"
    "60=\\d{8}-\\d{2}:\\d{2}:\\d{2}\n"
    "122=\\d{8}-\\d{2}:\\d{2}:\\d{2}\n"
)

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ---------------------------------------------------------------------------------------------
# script parsing


class ScriptSyntaxError(ValueError):
    """A line of a .def script that the driver cannot interpret."""


@dataclass(frozen=True)
class Step:
    """One action of a script.

    kind: "connect" (iCONNECT), "disconnect" (iDISCONNECT), "expect_disconnect" (eDISCONNECT),
    "send" (I line), "expect" (E line). ``message`` is the raw template of an I/E line (real SOH
    bytes, placeholders not yet substituted, 9/10 not yet added), "" for the other kinds.
    """

    kind: str
    conn: int
    message: str
    line_no: int
    line: str

    def describe(self) -> str:
        return f"line {self.line_no}: {pretty(self.line)}"


_LINE_RE = re.compile(r"(?P<code>[IEie])(?:(?P<conn>\d+),)?(?P<body>.*)", re.DOTALL)


def parse_script_text(text: str, source: str = "<string>") -> list[Step]:
    """Parse the text of a .def script (SOH as real \\x01 bytes) into steps."""
    steps: list[Step] = []
    # split on "\n" only: str.splitlines() would also split on \x1c-\x1e and \x85
    for line_no, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE_RE.fullmatch(line)
        if m is None:
            raise ScriptSyntaxError(f"{source}:{line_no}: cannot parse {pretty(line)!r}")
        code, body = m["code"], m["body"]
        conn = int(m["conn"]) if m["conn"] is not None else 1
        if code in "ie":
            command = body.strip()
            if code == "i" and command == "CONNECT":
                kind = "connect"
            elif code == "i" and command == "DISCONNECT":
                kind = "disconnect"
            elif code == "e" and command == "DISCONNECT":
                kind = "expect_disconnect"
            elif code == "e" and command == "CONNECT":
                raise ScriptSyntaxError(f"{source}:{line_no}: eCONNECT (driver as acceptor) is not supported")
            else:
                raise ScriptSyntaxError(f"{source}:{line_no}: unknown command {pretty(line)!r}")
            steps.append(Step(kind, conn, "", line_no, line))
        else:
            if not body:
                raise ScriptSyntaxError(f"{source}:{line_no}: empty message line")
            steps.append(Step("send" if code == "I" else "expect", conn, body, line_no, line))
    return steps


def parse_script(path: str | Path) -> list[Step]:
    """Parse a .def script file into steps (see the module docstring for the line grammar)."""
    p = Path(path)
    return parse_script_text(p.read_bytes().decode("latin-1"), source=str(p))


# ---------------------------------------------------------------------------------------------
# message preparation


_TIME_RE = re.compile(r"<TIME(?:([+-])(\d+))?>")


def substitute_time(text: str, now: dt.datetime | None = None) -> str:
    """Replace <TIME>, <TIME+N>, <TIME-N> by UTC ``YYYYMMDD-HH:MM:SS`` (offset by N seconds)."""
    if now is None:
        now = _utcnow()
    elif now.tzinfo is not None:
        now = now.astimezone(dt.timezone.utc)

    def repl(m: re.Match[str]) -> str:
        t = now
        if m[1]:
            delta = dt.timedelta(seconds=int(m[2]))
            t = t + delta if m[1] == "+" else t - delta
        return t.strftime(_TIME_FORMAT)

    return _TIME_RE.sub(repl, text)


def checksum(data: str | bytes) -> str:
    """FIX CheckSum of ``data`` (sum of bytes mod 256) as three digits."""
    b = data.encode("latin-1") if isinstance(data, str) else data
    return f"{sum(b) % 256:03d}"


_HAS_LENGTH_RE = re.compile("\x019=[^\n]*?\x01")
_TRAILING_CHECKSUM_RE = re.compile("\x0110=[^\n]*\x01$")


def fixify(message: str) -> str:
    """Add 9= BodyLength and 10= CheckSum where a line lacks them (Reflector.fixify!).

    Only a line starting with ``8=`` is touched. BodyLength counts from after the 8= field
    to just before ``10=``, including the SOH that ends the last body field. If the line
    carries 9= or 10=, those values are kept as written.
    """
    if not message.startswith("8="):
        return message
    has_length = _HAS_LENGTH_RE.search(message) is not None
    head_end = message.find(SOH)
    if head_end < 0:
        return message
    head, rest = message[:head_end + 1], message[head_end + 1:]
    trailer = ""
    m = _TRAILING_CHECKSUM_RE.search(rest)
    if m is not None:
        trailer = rest[m.start() + 1:]
        rest = rest[:m.start() + 1]
    length = "" if has_length else f"9={len(rest.encode('latin-1'))}{SOH}"
    if not trailer:
        trailer = f"10={checksum(head + length + rest)}{SOH}"
    return head + length + rest + trailer


def prepare(message: str, now: dt.datetime | None = None) -> str:
    """Placeholders first, then fixify: how an I or E line becomes the bytes on the wire."""
    return fixify(substitute_time(message, now))


def pretty(text: str | bytes) -> str:
    """Text with SOH shown as ``|`` (bytes are decoded as latin-1)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return text.replace(SOH, "|")


# ---------------------------------------------------------------------------------------------
# comparison


def parse_field_patterns(text: str) -> dict[str, re.Pattern[str]]:
    """Parse fields.fmt text: one ``tag=regex`` a line."""
    patterns: dict[str, re.Pattern[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tag, sep, regex = line.partition("=")
        if not sep:
            raise ValueError(f"bad fields.fmt line: {line!r}")
        patterns[tag.strip()] = re.compile(regex, re.ASCII)
    return patterns


def load_field_patterns(path: str | Path) -> dict[str, re.Pattern[str]]:
    return parse_field_patterns(Path(path).read_text(encoding="latin-1"))


DEFAULT_FIELD_PATTERNS: Mapping[str, re.Pattern[str]] = parse_field_patterns(_FIELDS_FMT_TEXT)


def split_fields(message: str) -> list[tuple[str, str | None]]:
    """``[(tag, value)]``; value is None for a piece without '='. Trailing empty pieces are dropped."""
    parts = message.split(SOH)
    while parts and parts[-1] == "":
        parts.pop()
    out: list[tuple[str, str | None]] = []
    for part in parts:
        tag, sep, value = part.partition("=")
        out.append((tag, value if sep else None))
    return out


def _field_text(f: tuple[str, str | None] | None) -> str:
    if f is None:
        return ""
    return f[0] if f[1] is None else f"{f[0]}={f[1]}"


def _pattern_ok(pattern: re.Pattern[str], value: str | None, fullmatch: bool) -> bool:
    if value is None:
        return False
    return (pattern.fullmatch(value) if fullmatch else pattern.search(value)) is not None


def _field_ok(exp: tuple[str, str | None], got: tuple[str, str | None],
              patterns: Mapping[str, re.Pattern[str]], fullmatch: bool = False) -> bool:
    if exp[0] != got[0]:
        return False
    pattern = patterns.get(exp[0])
    if pattern is None:
        return exp[1] == got[1]
    return _pattern_ok(pattern, got[1], fullmatch)


def compare_messages(expected: str, received: str,
                     patterns: Mapping[str, re.Pattern[str]] | None = None, *,
                     fullmatch: bool = False) -> str | None:
    """None if ``received`` matches ``expected`` (Comparator.rb rules), else the first reason.

    The received value of a pattern tag is searched (Ruby ``===``); with ``fullmatch=True``
    it must match as a whole (see the module docstring for why that is not the default).
    """
    if patterns is None:
        patterns = DEFAULT_FIELD_PATTERNS
    exp, got = split_fields(expected), split_fields(received)
    if len(exp) != len(got):
        return f"Number of fields does not match: expected {len(exp)}, received {len(got)}"
    for i, (e, g) in enumerate(zip(exp, got)):
        if e[0] != g[0]:
            return f"Field #{i}: expected field ({e[0]}) but found field ({g[0]})"
        pattern = patterns.get(e[0])
        if pattern is None:
            if e[1] != g[1]:
                return f"Value in field ({e[0]}) should be ({e[1]}) but was ({g[1]})"
        elif not _pattern_ok(pattern, g[1], fullmatch):
            return f"Field ({e[0]}) value ({g[1]}) does not match pattern /{pattern.pattern}/"
    return None


def format_diff(expected: str, received: str,
                patterns: Mapping[str, re.Pattern[str]] | None = None, *, fullmatch: bool = False) -> str:
    """Field-by-field table. Mark ``!`` is a mismatch, ``~`` a value matched by its pattern."""
    if patterns is None:
        patterns = DEFAULT_FIELD_PATTERNS
    exp, got = split_fields(expected), split_fields(received)
    n = max(len(exp), len(got))
    width = max([len("expected")] + [len(_field_text(f)) for f in exp])
    rows = [f"       #  {'expected'.ljust(width)}  received"]
    for i in range(n):
        e = exp[i] if i < len(exp) else None
        g = got[i] if i < len(got) else None
        if e is None or g is None or not _field_ok(e, g, patterns, fullmatch):
            mark = "!"
        elif e[0] in patterns:
            mark = "~"
        else:
            mark = " "
        rows.append(f"    {mark} {i:2d}  {_field_text(e).ljust(width)}  {_field_text(g)}")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# framing and connections


def extract_message(buf: bytes) -> tuple[bytes | None, bytes]:
    """Split one complete message off the front of ``buf``.

    The message ends at the SOH after the first ``\\x0110=``. Returns ``(None, buf)`` when
    no complete message is there yet.
    """
    i = buf.find(b"\x0110=")
    if i < 0:
        return None, buf
    j = buf.find(b"\x01", i + 4)
    if j < 0:
        return None, buf
    return buf[:j + 1], buf[j + 1:]


class _StepFailed(Exception):
    pass


class _Conn:
    def __init__(self, cid: int, sock: socket.socket) -> None:
        self.cid = cid
        self.sock: socket.socket | None = sock
        self.buf = b""
        self.peer_closed = False
        self.reset = False

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _recv(self, deadline: float) -> bytes:
        """Append to the buffer; b"" on EOF/reset; raises TimeoutError at the deadline."""
        assert self.sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionError:  # reset / aborted: the peer is gone, which counts as a disconnect
            self.reset = True
            data = b""
        if not data:
            self.peer_closed = True
            return b""
        self.buf += data
        return data

    def read_message(self, deadline: float) -> bytes:
        while True:
            msg, rest = extract_message(self.buf)
            if msg is not None:
                self.buf = rest
                return msg
            if self.peer_closed or self.sock is None:
                raise EOFError
            self._recv(deadline)


# ---------------------------------------------------------------------------------------------
# running


@dataclass
class ScriptResult:
    """Outcome of one script run."""

    script: str
    passed: bool
    steps_run: int
    steps_total: int
    transcript: list[tuple[str, str]] = field(default_factory=list)
    failure: str | None = None
    failed_step: Step | None = None
    elapsed: float = 0.0

    def report(self, tail: int = 30) -> str:
        """Readable summary: verdict, failure and the last ``tail`` transcript entries."""
        head = (f"{self.script}: {'PASSED' if self.passed else 'FAILED'} "
                f"({self.steps_run}/{self.steps_total} steps, {self.elapsed:.2f}s)")
        parts = [head]
        if self.failure:
            parts.append(self.failure)
        if self.transcript:
            entries = self.transcript[-tail:]
            if len(self.transcript) > tail:
                parts.append(f"transcript (last {tail} of {len(self.transcript)}):")
            else:
                parts.append("transcript:")
            parts.extend(f"  {d:5s} {t}" for d, t in entries)
        return "\n".join(parts)


class _Runner:
    def __init__(self, host: str, port: int, timeout: float,
                 patterns: Mapping[str, re.Pattern[str]], clock: Clock, fullmatch: bool) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.patterns, self.clock, self.fullmatch = patterns, clock, fullmatch
        self.conns: dict[int, _Conn] = {}
        self.transcript: list[tuple[str, str]] = []

    def log(self, direction: str, cid: int, text: str | bytes) -> None:
        self.transcript.append((direction, f"[{cid}] {pretty(text)}"))

    def close_all(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()

    def run(self, step: Step) -> None:
        getattr(self, "_" + step.kind)(step)

    def _connect(self, step: Step) -> None:
        old = self.conns.pop(step.conn, None)
        if old is not None:
            old.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise _StepFailed(f"could not connect to {self.host}:{self.port}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conns[step.conn] = _Conn(step.conn, sock)
        self.log("event", step.conn, f"connected to {self.host}:{self.port}")

    def _disconnect(self, step: Step) -> None:
        conn = self.conns.pop(step.conn, None)
        if conn is None:
            raise _StepFailed(f"connection {step.conn} is not open")
        conn.close()
        self.log("event", step.conn, "closed by driver")

    def _open(self, step: Step) -> _Conn:
        conn = self.conns.get(step.conn)
        if conn is None or conn.sock is None:
            raise _StepFailed(f"connection {step.conn} is not open")
        return conn

    def _send(self, step: Step) -> None:
        conn = self._open(step)
        msg = prepare(step.message, self.clock())
        if conn.peer_closed:
            raise _StepFailed(f"Unable to send message because connection was dropped\n  message: {pretty(msg)}")
        assert conn.sock is not None
        try:
            conn.sock.settimeout(self.timeout)
            conn.sock.sendall(msg.encode("latin-1"))
        except OSError as exc:
            raise _StepFailed(f"send failed ({exc.__class__.__name__}: {exc}); "
                              f"connection dropped by peer?\n  message: {pretty(msg)}") from None
        self.log("send", step.conn, msg)

    def _expect(self, step: Step) -> None:
        conn = self._open(step)
        expected = prepare(step.message, self.clock())
        try:
            raw = conn.read_message(time.monotonic() + self.timeout)
        except TimeoutError:
            extra = f"\n  partial data: {pretty(conn.buf)}" if conn.buf else ""
            raise _StepFailed(f"timed out after {self.timeout:g}s waiting for a message\n"
                              f"  expected: {pretty(expected)}{extra}") from None
        except EOFError:
            how = "reset" if conn.reset else "closed"
            if conn.buf:
                self.log("recv", step.conn, conn.buf)
                raise _StepFailed(f"Was disconnected (connection {how} by peer) in the middle of a message\n"
                                  f"  expected: {pretty(expected)}\n  partial:  {pretty(conn.buf)}") from None
            self.log("event", step.conn, f"connection {how} by peer")
            raise _StepFailed(f"Was disconnected (connection {how} by peer), expected data\n"
                              f"  expected: {pretty(expected)}") from None
        received = raw.decode("latin-1")
        self.log("recv", step.conn, received)
        reason = compare_messages(expected, received, self.patterns, fullmatch=self.fullmatch)
        if reason is not None:
            raise _StepFailed(f"{reason}\n  expected: {pretty(expected)}\n  received: {pretty(received)}\n"
                              f"{format_diff(expected, received, self.patterns, fullmatch=self.fullmatch)}")

    def _expect_disconnect(self, step: Step) -> None:
        conn = self._open(step)
        deadline = time.monotonic() + self.timeout
        unexpected = bytearray(conn.buf)
        conn.buf = b""
        if unexpected:
            deadline = min(deadline, time.monotonic() + _UNEXPECTED_DATA_GRACE)
        while not conn.peer_closed:
            try:
                data = conn._recv(deadline)
            except TimeoutError:
                break
            if data:
                conn.buf = b""
                if not unexpected:
                    deadline = min(deadline, time.monotonic() + _UNEXPECTED_DATA_GRACE)
                unexpected += data
        if unexpected:
            for part in _split_for_log(bytes(unexpected)):
                self.log("recv", step.conn, part)
            closed = ("; then the peer closed the connection" if conn.peer_closed
                      else "; connection still open")
            conn.close()
            raise _StepFailed("Expected disconnection, got data" + closed + "\n"
                              + "\n".join(f"  received: {pretty(p)}" for p in _split_for_log(bytes(unexpected))))
        if not conn.peer_closed:
            raise _StepFailed(f"Connection hangs after {self.timeout:g} seconds (expected the peer to disconnect)")
        self.log("event", step.conn, "connection reset by peer" if conn.reset else "connection closed by peer")
        conn.close()


def _split_for_log(data: bytes) -> list[bytes]:
    parts: list[bytes] = []
    while data:
        msg, data = extract_message(data)
        if msg is None:
            break
        parts.append(msg)
    if data:
        parts.append(data)
    return parts


def run_steps(steps: Sequence[Step], host: str, port: int, timeout: float = DEFAULT_TIMEOUT, *,
              patterns: Mapping[str, re.Pattern[str]] | None = None, name: str = "<steps>",
              clock: Clock | None = None, fullmatch: bool = False) -> ScriptResult:
    """Run parsed steps against ``host:port``; stops at the first failure; closes all sockets."""
    runner = _Runner(host, port, timeout, DEFAULT_FIELD_PATTERNS if patterns is None else patterns,
                     clock or _utcnow, fullmatch)
    started = time.monotonic()
    done = 0
    try:
        for step in steps:
            try:
                runner.run(step)
            except _StepFailed as exc:
                return ScriptResult(name, False, done, len(steps), runner.transcript,
                                    f"{name} {step.describe()}\n{exc}", step, time.monotonic() - started)
            done += 1
        return ScriptResult(name, True, done, len(steps), runner.transcript, None, None,
                            time.monotonic() - started)
    finally:
        runner.close_all()


def _find_fields_fmt(script: Path) -> Path | None:
    for d in (script.parent, script.parent.parent):
        candidate = d / "fields.fmt"
        if candidate.is_file():
            return candidate
    return None


def run_script(path: str | Path, host: str, port: int, timeout: float = DEFAULT_TIMEOUT, *,
               fields_fmt: str | Path | None = None, clock: Clock | None = None,
               fullmatch: bool = False) -> ScriptResult:
    """Run one .def script against the acceptor at ``host:port`` (blocking).

    ``fields_fmt`` defaults to the fields.fmt in the script's folder or its parent, and then
    to the built-in copy of quickfix-at/fields.fmt. ``clock`` returns the current UTC time
    used for ``<TIME>`` (for tests). ``fullmatch=True`` makes fields.fmt patterns match
    whole values instead of Ruby's search; the 8_* and 20 scripts then cannot pass. A script
    syntax error raises ScriptSyntaxError.
    """
    p = Path(path)
    steps = parse_script(p)
    fmt = Path(fields_fmt) if fields_fmt is not None else _find_fields_fmt(p)
    patterns = load_field_patterns(fmt) if fmt is not None else DEFAULT_FIELD_PATTERNS
    return run_steps(steps, host, port, timeout, patterns=patterns, name=p.name, clock=clock,
                     fullmatch=fullmatch)


async def run_script_async(path: str | Path, host: str, port: int, timeout: float = DEFAULT_TIMEOUT,
                           **kwargs: object) -> ScriptResult:
    """``run_script`` in a worker thread, so an acceptor on the calling event loop keeps running."""
    return await asyncio.to_thread(run_script, path, host, port, timeout, **kwargs)  # type: ignore[arg-type]
