"""The application the QuickFIX acceptance scripts expect behind the acceptor under test.

It echoes every NewOrderSingle (35=D) and SecurityDefinition (35=d) back to the
sender, with the body fields in tag order (QuickFIX keeps body fields in a map
ordered by tag, and the scripts expect that order), ignores a PossResend (97=Y)
of a ClOrdID it has already seen, and refuses every other business message as
unsupported (BusinessMessageReject 380=3).
"""

from __future__ import annotations

from fix.application import UnsupportedMessageType
from fix.parser import FixMessage
from fix.session import HEADER_TAGS, Session


class EchoApplication:
    def __init__(self) -> None:
        self.seen_clordids: set[bytes] = set()
        self.received: list[FixMessage] = []

    def on_logon(self, session: Session) -> None:
        pass

    def on_logout(self, session: Session) -> None:
        pass

    def from_admin(self, message: FixMessage, session: Session) -> None:
        pass

    def from_app(self, message: FixMessage, session: Session) -> None:
        if message.msg_type not in (b"D", b"d"):
            raise UnsupportedMessageType()
        self.received.append(message)
        clordid = message.get(11)
        if message.get(97) == b"Y" and clordid in self.seen_clordids:
            return  # a possible resend of an order already handled
        if clordid is not None:
            self.seen_clordids.add(clordid)
        header = [(97, b"Y")] if message.get(97) == b"Y" else []
        body = sorted(((t, v) for t, v in message.fields if t not in HEADER_TAGS and t != 10),
                      key=lambda field: field[0])
        session.send(message.msg_type, body, header)
