"""EVE JSON lines: the one serializer every record leaves through (DESIGN.md §5).

The envelope follows Suricata's EVE format so existing SIEM pipelines ingest zonewarden's records
unchanged: ``timestamp``, ``event_type``, ``flow_id``, ``community_id``, ``src_ip``, ``src_port``,
``dest_ip``, ``dest_port``, ``proto``, ``app_proto`` (with ``vlan`` and ``tunnel`` when its flow has
them); the event adds its own body (``AppEvent.eve_body``) under a key named after its type.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sensor.records import AppEvent

_PROTO_NAMES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}


def eve_timestamp(ts: float) -> str:
    """Suricata's timestamp form: ``2015-02-24T17:58:20.632394+0000`` (UTC)."""
    try:
        dt = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        dt = datetime.fromtimestamp(0, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def eve_record(event: AppEvent) -> dict[str, Any]:
    """The EVE dictionary for one event."""
    rec: dict[str, Any] = {"timestamp": eve_timestamp(event.ts), "event_type": event.event_type}
    flow = event.flow
    if flow is not None:
        src_ip, src_port, dest_ip, dest_port = flow.endpoints(event.to_server)
        rec["flow_id"] = flow.flow_id
        rec["community_id"] = flow.community_id
        rec["src_ip"] = src_ip
        rec["src_port"] = src_port
        rec["dest_ip"] = dest_ip
        rec["dest_port"] = dest_port
        rec["proto"] = _PROTO_NAMES.get(flow.transport, flow.transport.upper())
        if flow.vlans:
            rec["vlan"] = list(flow.vlans)
        tunnel = flow.tunnel
        if tunnel is not None:  # remote SPAN: the session (switch, sensor, id) that carried it
            rec["tunnel"] = {"type": tunnel.kind, "src_ip": tunnel.src_ip, "dest_ip": tunnel.dest_ip,
                             "depth": tunnel.depth}  # fmt: skip
            if tunnel.session is not None:
                rec["tunnel"]["session"] = tunnel.session
    if event.app_proto:
        rec["app_proto"] = event.app_proto
    rec.update(event.eve_body())
    return rec


def dumps(rec: dict[str, Any]) -> str:
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False, default=str)


class EveWriter:
    """Writes one JSON line per event to a file (or an open text stream)."""

    def __init__(self, target: str | Path | IO[str]) -> None:
        if isinstance(target, str | Path):
            self._fh: IO[str] = open(target, "w", encoding="utf-8", buffering=1024 * 1024)  # noqa: SIM115
            self._owned = True
        else:
            self._fh = target
            self._owned = False
        self.written = 0

    def handle(self, event: AppEvent) -> None:
        self._fh.write(dumps(eve_record(event)))
        self._fh.write("\n")
        self.written += 1

    def write_raw(self, rec: dict[str, Any]) -> None:
        self._fh.write(dumps(rec))
        self._fh.write("\n")
        self.written += 1

    def close(self) -> None:
        self._fh.flush()
        if self._owned:
            self._fh.close()
