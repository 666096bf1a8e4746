"""Filters over the stored alerts, as one SQL ``WHERE`` clause (the CLI and the web API share it).

Every filter is a bound parameter; nothing a caller gives is ever compiled as a pattern. The free-text
search is a plain case-insensitive substring: ``LIKE`` with ``%`` and ``_`` (and the escape character
itself) escaped, so ``(a+)+$`` finds exactly that text and costs what any other substring costs
(HOSTILE_INPUTS A9). ``LIKE ... ESCAPE`` and ``LOWER`` are standard SQL: the same clause runs on
PostgreSQL. Case folding is SQLite's ``LOWER`` (ASCII letters), applied to both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

# The columns the free-text search looks in (what the alert list shows).
SEARCH_COLUMNS: Final = (
    "alert_id",
    "signature",
    "rule",
    "category",
    "src_ip",
    "dest_ip",
    "src_zone",
    "dest_zone",
    "conduit",
    "app_proto",
)
LIKE_ESCAPE: Final = "\\"


def like_contains(needle: str) -> str:
    """A ``LIKE`` pattern matching ``needle`` anywhere, with its wildcards taken literally."""
    escaped = (
        needle.lower()
        .replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What to select. ``None`` (or an empty string) means "any".

    ``ip`` matches either side, ``zone`` either side's zone as the policy recorded it on the alert;
    ``since``/``until`` select alerts active in that window of packet time (``last_ts >= since`` and
    ``ts <= until``); ``after_seq`` keeps rows changed after that point of the store's insertion order.
    """

    status: str | None = None
    category: str | None = None
    rule: str | None = None
    severity: int | None = None
    src_ip: str | None = None
    dest_ip: str | None = None
    ip: str | None = None
    zone: str | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None
    after_seq: int | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) in (None, "") for f in fields(self))

    def where(self) -> tuple[str, list[Any]]:
        """`` WHERE ...`` (or an empty string) and its parameters."""
        clauses: list[str] = []
        args: list[Any] = []
        for column in ("status", "category", "rule", "src_ip", "dest_ip"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.severity is not None:
            clauses.append("severity = ?")
            args.append(self.severity)
        if self.ip:
            clauses.append("(src_ip = ? OR dest_ip = ?)")
            args += [self.ip, self.ip]
        if self.zone:
            clauses.append("(src_zone = ? OR dest_zone = ?)")
            args += [self.zone, self.zone]
        if self.since is not None:
            clauses.append("last_ts >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("ts <= ?")
            args.append(self.until)
        if self.after_seq is not None:
            clauses.append("seq > ?")
            args.append(self.after_seq)
        if self.q:
            pattern = like_contains(self.q)
            clauses.append(
                "(" + " OR ".join(f"LOWER({c}) LIKE ? ESCAPE '{LIKE_ESCAPE}'" for c in SEARCH_COLUMNS) + ")"
            )
            args += [pattern] * len(SEARCH_COLUMNS)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
