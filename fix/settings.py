"""FIX session settings, named like QuickFIX's, decoded from the daemon's TOML.

Times are seconds unless the name says otherwise. The defaults are the secure
ones: an acceptor binds to 127.0.0.1, CompIDs are always checked, and sequence
numbers are persisted under ``FileStorePath``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

CompID = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
Port = Annotated[int, Meta(ge=1, le=65535)]


class SessionSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename="pascal"):
    """One FIX 4.4 session (TOML keys are QuickFIX's: SenderCompID, HeartBtInt, ...).

    ``ConnectionType``: initiator (connects out) or acceptor (listens).
    ``HeartBtInt``: seconds between heartbeats (the initiator proposes it; an
    acceptor adopts the counterparty's). ``TestRequestMargin``: a TestRequest is
    sent after HeartBtInt x (1 + margin) of silence, and the connection is dropped
    after HeartBtInt x (2.4) of silence (QuickFIX's timeout). ``MaxLatency``: the
    largest |SendingTime - now| accepted, seconds. ``ReconnectInterval``: first
    backoff of the initiator, doubling up to ``MaxReconnectInterval``.
    ``ResetOnLogon``: reset both sequence numbers to 1 at each logon.
    ``FileStorePath``: folder of the persisted sequence numbers and sent messages;
    empty = memory only (tests). ``PersistMessages``: keep sent messages for
    resend (else a ResendRequest is answered with one GapFill).
    """

    sender_comp_id: CompID = msgspec.field(name="SenderCompID")
    target_comp_id: CompID = msgspec.field(name="TargetCompID")
    connection_type: Literal["initiator", "acceptor"] = "initiator"
    begin_string: Literal["FIX.4.4"] = "FIX.4.4"
    socket_connect_host: str = "127.0.0.1"
    socket_connect_port: Port | None = None
    socket_accept_host: str = "127.0.0.1"
    socket_accept_port: Annotated[int, Meta(ge=0, le=65535)] | None = None  # 0: any free port (tests)
    heart_bt_int: Annotated[int, Meta(ge=1, le=3600)] = 30
    test_request_margin: Annotated[float, Meta(ge=0.0, le=5.0)] = 0.5
    logout_timeout: Annotated[float, Meta(gt=0.0, le=60.0)] = 2.0
    logon_timeout: Annotated[float, Meta(gt=0.0, le=60.0)] = 10.0
    max_latency: Annotated[float, Meta(gt=0.0)] = 120.0
    reconnect_interval: Annotated[float, Meta(gt=0.0, le=600.0)] = 1.0
    max_reconnect_interval: Annotated[float, Meta(gt=0.0, le=3600.0)] = 30.0
    reset_on_logon: bool = False
    file_store_path: str = ""
    persist_messages: bool = True
    username: str | None = None
    password: str | None = None
    max_message_size: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    validate_user_defined_fields: bool = True
    allow_unknown_msg_fields: bool = False

    def __post_init__(self) -> None:
        if self.connection_type == "initiator" and self.socket_connect_port is None:
            raise ValueError("SocketConnectPort: required field is missing (an initiator connects to it)")
        if self.connection_type == "acceptor" and self.socket_accept_port is None:
            raise ValueError("SocketAcceptPort: required field is missing (an acceptor listens on it)")
        if self.max_reconnect_interval < self.reconnect_interval:
            raise ValueError("MaxReconnectInterval: expected >= ReconnectInterval")

    @property
    def session_key(self) -> tuple[str, str]:
        """(SenderCompID, TargetCompID): what the persisted state is keyed by."""
        return (self.sender_comp_id, self.target_comp_id)
