"""The project's own error family.

Parsers raise only :class:`ParseError` subclasses; the session that called them turns each into a
``ProtocolAnomaly``. Anything else escaping a parser is a bug, and the fuzz tests look for it.
User-facing failures (a file that is not a capture, a bad policy) are :class:`UserError` and the CLI
prints them on one line with exit code 2.
"""

from __future__ import annotations


class ZonewardenError(Exception):
    """Base of every exception the project raises on purpose."""


class ParseError(ZonewardenError):
    """Wire bytes could not be parsed."""


class Truncated(ParseError):
    """More bytes are needed before the structure can be parsed."""


class Malformed(ParseError):
    """The bytes can never form a valid structure. ``reason`` is a short stable snake_case name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class UserError(ZonewardenError):
    """A problem the user can fix (bad file, bad option); shown as one line, exit code 2."""


class CaptureError(UserError):
    """A capture file that cannot be read at all (not a capture, unsupported link type, corrupt)."""
