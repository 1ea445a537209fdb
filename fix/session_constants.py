"""The FIX 4.4 session layer's vocabulary: message types, tag sets, reject texts,
timing constants, the pure helpers over parsed messages, and `Disconnect`.

Kept apart from `fix.session` so that the inbound state machine (`fix.session`)
and the outbound reply building (`fix.session_replies`) share one definition of
each without importing each other. Everything here stays importable from
`fix.session`, where other modules and the tests look for it.
"""

from __future__ import annotations

from fix.parser import FixMessage

LOGON, HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT, SEQUENCE_RESET, LOGOUT = (
    b"A", b"0", b"1", b"2", b"3", b"4", b"5")
ADMIN_TYPES = frozenset({LOGON, HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT, SEQUENCE_RESET, LOGOUT})
#: Standard header tags (FIX 4.4): kept when a stored message is resent.
HEADER_TAGS = frozenset({8, 9, 35, 49, 56, 115, 128, 90, 91, 34, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97,
                         52, 122, 212, 213, 347, 369, 627, 628, 629, 630})
REJECT_TEXT = {
    0: "Invalid tag number", 1: "Required tag missing", 2: "Tag not defined for this message type",
    3: "Undefined Tag", 4: "Tag specified without a value", 5: "Value is incorrect (out of range) for this tag",
    6: "Incorrect data format for value", 7: "Decryption problem", 8: "Signature problem", 9: "CompID problem",
    10: "SendingTime accuracy problem", 11: "Invalid MsgType", 13: "Tag appears more than once",
    14: "Tag specified out of required order", 16: "Incorrect NumInGroup count for repeating group",
}
BUSINESS_REJECT_TEXT = {0: "Other", 1: "Unknown ID", 2: "Unknown Security", 3: "Unsupported Message Type",
                        4: "Application not available", 5: "Conditionally Required Field Missing",
                        6: "Not authorized", 7: "DeliverTo firm not available at this time"}
#: QuickFIX drops a silent counterparty after 2.4 heartbeat intervals.
TIMEOUT_HEARTBEATS = 2.4
#: A resend making no progress for max(2 x HeartBtInt, this many seconds) is requested again.
RESEND_STALL_MIN_S = 10.0


def _int(message: FixMessage, tag: int) -> int | None:
    """An integer field, None when absent or malformed (validation reports malformed ones)."""
    try:
        return message.get_int(tag)
    except ValueError:
        return None


def _message_tags(items: tuple) -> set[int]:
    """Every tag a dictionary message definition allows, groups included."""
    tags: set[int] = set()
    for item in items:
        if hasattr(item, "counter"):
            tags.add(item.counter)
            tags |= _message_tags(item.items)
        else:
            tags.add(item.tag)
    return tags


class Disconnect(Exception):
    """Internal: the session must drop the connection (the reason is logged)."""
