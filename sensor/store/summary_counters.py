"""The sensor's summary counters, kept in the store's ``counters`` table (name -> integer).

A run's counters (packets, bytes, flows, decode errors, capture drops, TCP gaps, per-protocol counts,
alerts by category and rule) are saved with every commit, so ``GET /api/v1/status`` can show them for a
store an earlier ``zonewarden replay --db`` filled, with no sensor running. They are the numbers of the
most recent run that wrote to the store (absolute values, replaced as a whole at each commit: a replay
of the same capture does not double them).

Names are JSON Pointers (RFC 6901) under ``/summary``: summary keys hold dots and spaces
(``flows.created``, ``TLS 1.2``), so a pointer, with ``~`` written ``~0`` and ``/`` written ``~1``, is
the unambiguous way back to the nested document. Only integer leaves are kept; lists (client
addresses, SNI names) are left out: counters, not inventory.

+-----------------------------------------+-------+
| name                                    | value |
+=========================================+=======+
| /summary/packets                        | 94    |
| /summary/flow_table/tcp.reassembly_gap  | 2     |
| /summary/modbus/requests_by_function/3  | 8     |
| /summary/saved_at                       | epoch |
+-----------------------------------------+-------+
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

PREFIX: Final = "/summary"
MAX_NAME: Final = 128  # the counters.name column (VARCHAR(128))
MAX_DEPTH: Final = 6
SAVED_AT: Final = "saved_at"  # seconds since the epoch (wall clock) of the commit that wrote them


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _leaves(doc: Mapping[str, Any], path: str, depth: int) -> Iterator[tuple[str, int]]:
    for key, value in doc.items():
        name = f"{path}/{_escape(str(key))}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if len(name) <= MAX_NAME and -(2**63) <= value < 2**63:
                yield name, value
        elif isinstance(value, Mapping) and depth < MAX_DEPTH:
            yield from _leaves(value, name, depth + 1)


def flatten_summary(summary: Mapping[str, Any]) -> dict[str, int]:
    """``{"/summary/packets": 94, ...}``: every integer leaf of ``summary`` (lists and text left out)."""
    return dict(_leaves(summary, PREFIX, 0))


def unflatten_summary(counters: Mapping[str, int]) -> dict[str, Any]:
    """The nested document back from the store's counters (names outside ``/summary`` ignored)."""
    out: dict[str, Any] = {}
    for name, value in counters.items():
        if not name.startswith(PREFIX + "/"):
            continue
        tokens = [_unescape(t) for t in name[len(PREFIX) + 1 :].split("/")]
        node = out
        for token in tokens[:-1]:
            child = node.setdefault(token, {})
            if not isinstance(child, dict):  # a leaf and a branch of one name: keep the first
                break
            node = child
        else:
            node.setdefault(tokens[-1], value)
    return out
