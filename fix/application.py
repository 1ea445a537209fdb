"""What an application plugged into a FIX session implements, and how it refuses messages.

Like QuickFIX's Application: the session calls ``on_logon``/``on_logout`` on
state changes and ``from_admin``/``from_app`` for every message it accepts, in
sequence-number order, exactly once per sequence number (a PossDup resend of a
number already processed never reaches the application). ``from_app`` refuses a
message by raising :class:`UnsupportedMessageType` or :class:`BusinessReject`
(the session answers with a BusinessMessageReject, 35=j); ``from_admin`` refuses
a Logon by raising :class:`RejectLogon`. Any other exception is a bug of the
application: the session logs it with the raw message and keeps running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fix.parser import FixMessage
    from fix.session import Session


class UnsupportedMessageType(Exception):
    """The application does not handle this MsgType (BusinessRejectReason 3)."""


class BusinessReject(Exception):
    """Refuse a business message with a BusinessMessageReject.

    ``reason``: BusinessRejectReason (0 other, 1 unknown ID, 2 unknown security,
    3 unsupported message type, 4 application not available, 5 conditionally
    required field missing, 6 not authorized, ...). ``ref_tag``: the offending tag.
    """

    def __init__(self, reason: int, text: str, ref_tag: int | None = None) -> None:
        super().__init__(text)
        self.reason, self.text, self.ref_tag = reason, text, ref_tag


class RejectLogon(Exception):
    """Refuse a Logon (bad credentials...): the session answers with a Logout carrying the text."""


class Application(Protocol):
    """Callbacks of a FIX session; all run on the session's event-loop thread."""

    def on_logon(self, session: "Session") -> None: ...

    def on_logout(self, session: "Session") -> None: ...

    def from_admin(self, message: "FixMessage", session: "Session") -> None: ...

    def from_app(self, message: "FixMessage", session: "Session") -> None: ...


class NullApplication:
    """Accepts every admin message and refuses every business message."""

    def on_logon(self, session: "Session") -> None:
        pass

    def on_logout(self, session: "Session") -> None:
        pass

    def from_admin(self, message: "FixMessage", session: "Session") -> None:
        pass

    def from_app(self, message: "FixMessage", session: "Session") -> None:
        raise UnsupportedMessageType()
