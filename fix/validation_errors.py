"""What `fix.validation.validate` raises, and the message shape it reads.

The exceptions and QuickFIX's reject texts live here, apart from the validator,
so that the passes (`fix.validation_fast`, `fix.validation_exact`) can raise them
without importing `fix.validation`, which imports the passes. `fix.validation`
re-exports every name: import them from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

#: QuickFIX's Text (58) for each SessionRejectReason (373).
REJECT_TEXT: dict[int, str] = {
    0: "Invalid tag number", 1: "Required tag missing", 2: "Tag not defined for this message type",
    3: "Undefined Tag", 4: "Tag specified without a value",
    5: "Value is incorrect (out of range) for this tag", 6: "Incorrect data format for value",
    7: "Decryption problem", 8: "Signature problem", 9: "CompID problem",
    10: "SendingTime accuracy problem", 11: "Invalid MsgType", 13: "Tag appears more than once",
    14: "Tag specified out of required order", 15: "Repeating group fields out of order",
    16: "Incorrect NumInGroup count for repeating group",
    17: "Non Data value includes field delimiter (SOH character)", 99: "Other",
}


class FixMessageError(Exception):
    """Base of every reason `validate` refuses a message."""


class FixValidationError(FixMessageError):
    """A session-level Reject: SessionRejectReason, RefTagID as text (or None), Text."""

    def __init__(self, reason: int, tag: str | None, text: str | None = None) -> None:
        self.reason = reason
        self.tag = tag
        self.text = REJECT_TEXT.get(reason, "Other") if text is None else text
        super().__init__(reason, tag, self.text)

    def __str__(self) -> str:
        return f"{self.text} (SessionRejectReason {self.reason}, RefTagID {self.tag})"


class UnsupportedVersion(FixMessageError):
    """BeginString (8) is not FIX.4.4."""

    def __init__(self, begin_string: str) -> None:
        self.begin_string = begin_string
        super().__init__(f"unsupported BeginString {begin_string!r}")


class GarbledMessage(FixMessageError):
    """The message cannot be read as FIX; it is to be ignored."""


class ParsedMessage(Protocol):
    """What `validate` needs of a parsed message (fix.parser.FixMessage)."""

    raw: bytes
    fields: Sequence[tuple[int, bytes]]
    errors: Sequence[Any]
