"""Sockets for FIX sessions on asyncio (uvloop when available): acceptor and initiator.

:class:`FixEngine` owns an event loop (run in a dedicated thread with
:meth:`FixEngine.start_in_thread`, or in the caller's loop) and any number of
sessions. An acceptor listens (127.0.0.1 unless configured) and binds each new
connection to the session named by its first message, which must be a valid
Logon from the configured counterparty: anything else, a wrong CompID, or a
second connection for a session already connected, is dropped without a reply.
An initiator connects, logs on, and reconnects with exponential backoff
(ReconnectInterval doubling up to MaxReconnectInterval, reset after a logon).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Callable

from fix.framing import FixFramer
from fix.parser import parse
from fix.session import Session

log = logging.getLogger("riskd.fix")
TICK_S = 0.1


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed (it is a dependency), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class FixConnection(asyncio.Protocol):
    """One TCP connection: frames bytes and hands them to its session."""

    def __init__(self, bind: Callable[[bytes], Session | None], session: Session | None = None,
                 max_message_size: int = 1 << 20) -> None:
        self._bind = bind
        self.session = session
        self.transport: asyncio.Transport | None = None
        self.framer = FixFramer(max_message_size)
        self.closed = asyncio.get_event_loop().create_future()
        self._read_ns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.session is not None:
            self.session.connection_made(self._write, self._close)

    def data_received(self, data: bytes) -> None:
        self._read_ns = time.monotonic_ns()
        try:
            self._frames(data)
        finally:
            if self.session is not None:
                self.session.on_batch_end()

    def _frames(self, data: bytes) -> None:
        for frame in self.framer.feed(data):
            if self.transport is None or self.transport.is_closing():
                return
            session = self.session
            if frame.reason is not None:
                if session is None:
                    log.warning("FIX garbled first message from %s (%s): dropped",
                                self.transport.get_extra_info("peername"), frame.reason)
                    self._close()
                    return
                session.on_garbled(frame.raw, frame.reason)
                continue
            if session is None:
                session = self._bind(frame.raw)
                if session is None:
                    self._close()
                    return
                self.session = session
                session.connection_made(self._write, self._close)
            session.on_frame(frame.raw, self._read_ns)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None and self.session.connected:
            self.session.connection_lost()
        if not self.closed.done():
            self.closed.set_result(None)

    def _write(self, raw: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(raw)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class FixEngine:
    """Acceptor and initiator sessions on one event loop, with the heartbeat timer."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._acceptors: dict[tuple[str, int], list[Session]] = {}
        self._initiators: list[Session] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: list[asyncio.Task] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.bound_ports: dict[tuple[str, str], int] = {}
        #: Reconnect delays the initiators waited, in order (seconds), for status and tests.
        self.reconnect_delays: dict[tuple[str, str], list[float]] = {}

    def add(self, session: Session) -> None:
        """Register a session before start(): acceptors share a listening socket per host:port."""
        s = session.settings
        if s.connection_type == "acceptor":
            self._acceptors.setdefault((s.socket_accept_host, s.socket_accept_port or 0), []).append(session)
        else:
            self._initiators.append(session)

    # ----- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Listen, connect and start the timer on the running loop."""
        self.loop = asyncio.get_running_loop()
        for (host, port), sessions in self._acceptors.items():
            server = await self.loop.create_server(lambda ss=sessions: FixConnection(self._binder(ss)), host, port)
            self._servers.append(server)
            bound = server.sockets[0].getsockname()[1]
            for session in sessions:
                self.bound_ports[session.settings.session_key] = bound
            log.info("FIX acceptor listening on %s:%d for %s", host, bound,
                     [s.settings.session_key for s in sessions])
        for session in self._initiators:
            self._tasks.append(self.loop.create_task(self._run_initiator(session)))
        self._tasks.append(self.loop.create_task(self._tick()))

    async def stop(self, logout_wait_s: float = 2.0) -> None:
        """Log out every connected session (waiting up to ``logout_wait_s``), then close everything."""
        self._stopping = True
        sessions = [s for group in self._acceptors.values() for s in group] + self._initiators
        for session in sessions:
            if session.logged_on:
                session.logout()
        deadline = asyncio.get_running_loop().time() + logout_wait_s
        while any(s.connected for s in sessions) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for session in sessions:
            if session.connected:
                session.disconnect("engine stopping")
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        for session in sessions:
            session.store.close()

    def start_in_thread(self, name: str = "fix-engine") -> None:
        """Run the engine on its own uvloop in a daemon thread; returns once it is listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # report start failures to the caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def stop_thread(self, timeout_s: float = 5.0) -> None:
        """Stop an engine started with start_in_thread (graceful logout first)."""
        if self.loop is None or self._thread is None or self.loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.stop(), self.loop)
        try:
            future.result(timeout_s)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout_s)
            self._thread = None

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on the engine's loop thread (e.g. session.send from another thread)."""
        assert self.loop is not None, "engine not started"
        self.loop.call_soon_threadsafe(fn, *args)

    # ----- internals -----------------------------------------------------------
    def _binder(self, sessions: list[Session]) -> Callable[[bytes], Session | None]:
        def bind(raw: bytes) -> Session | None:
            message = parse(raw)
            if message.msg_type != b"A":
                log.warning("FIX connection's first message is not a Logon: dropped")
                return None
            for session in sessions:
                s = session.settings
                if (message.get(8) == s.begin_string.encode() and message.get(49) == session.target
                        and message.get(56) == session.sender):
                    if session.connected:
                        log.warning("FIX second connection for %s while logged on: dropped", s.session_key)
                        return None
                    return session
            log.warning("FIX Logon from unknown session %r->%r: dropped", message.get(49), message.get(56))
            return None
        return bind

    async def _run_initiator(self, session: Session) -> None:
        s = session.settings
        backoff = s.reconnect_interval
        loop = asyncio.get_running_loop()
        while not self._stopping:
            logons_before = session.logons
            try:
                _, protocol = await loop.create_connection(
                    lambda: FixConnection(lambda raw: session, session, s.max_message_size),
                    s.socket_connect_host, s.socket_connect_port)
                await protocol.closed
                if session.logons > logons_before:
                    backoff = s.reconnect_interval
            except OSError as exc:
                log.info("FIX connect to %s:%s failed: %s", s.socket_connect_host, s.socket_connect_port, exc)
            if self._stopping:
                return
            self.reconnect_delays.setdefault(s.session_key, []).append(backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2.0, s.max_reconnect_interval)

    async def _tick(self) -> None:
        sessions = [s for group in self._acceptors.values() for s in group] + self._initiators
        while True:
            await asyncio.sleep(TICK_S)
            for session in sessions:
                try:
                    session.on_timer()
                except Exception:
                    log.exception("FIX timer failed for %s", session.settings.session_key)
