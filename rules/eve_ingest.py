"""Suricata beside zonewarden: its EVE ``alert`` records brought into zonewarden's alert stream.

Each ``event_type: alert`` line becomes an :class:`~sensor.records.Alert` (rule ``gid:sid:rev``,
category ``signature``, the Suricata severity, ATT&CK ids from ``alert.metadata.mitre_technique_id``)
with ``evidence.source = "suricata"``. Its alert id is derived like every other (rule, endpoints,
packet time), so ingesting the same file twice stores nothing twice.

Input is untrusted text: lines longer than ``max_line`` bytes, lines that are not JSON objects and
alert records without a usable sid are counted (``counters``) and skipped, never raised.
:func:`follow` tails a growing file (the live sensor's "followed file"), surviving truncation and
rotation.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sensor.records import Alert, FlowRef

log = logging.getLogger(__name__)

MAX_LINE = 1024 * 1024
_MAX_TEXT = 512
_U32 = 2**32 - 1  # Suricata's gid, sid and rev are 32-bit
_MAX_FLOW_ID = 2**63 - 1  # SQLite INTEGER: a larger number fails the whole alert batch on insert


def _ts(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            return None


def _int(value: Any, default: int = 0, most: int = _U32) -> int:
    """A JSON integer in 0..``most``; anything else (another type, negative, too large) is ``default``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most
    return value if ok else default


def _str(value: Any) -> str:
    return value[:_MAX_TEXT] if isinstance(value, str) else ""


def alert_from_eve(rec: dict[str, Any]) -> Alert | None:
    """An Alert from one Suricata EVE alert record, or None when it is not a usable alert."""
    if rec.get("event_type") != "alert":
        return None
    body = rec.get("alert")
    if not isinstance(body, dict):
        return None
    sid = _int(body.get("signature_id"), -1)
    ts = _ts(rec.get("timestamp"))
    if sid < 0 or ts is None:
        return None
    gid = _int(body.get("gid"), 1)
    rev = _int(body.get("rev"), 1)
    flow = None
    src, dst = _str(rec.get("src_ip")), _str(rec.get("dest_ip"))
    if src and dst:
        flow = FlowRef(
            flow_id=_int(rec.get("flow_id"), most=_MAX_FLOW_ID),
            community_id=_str(rec.get("community_id")),
            transport=_str(rec.get("proto")).lower(),
            client_ip=src,
            client_port=_int(rec.get("src_port"), most=65535),
            server_ip=dst,
            server_port=_int(rec.get("dest_port"), most=65535),
        )
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    mitre_raw = metadata.get("mitre_technique_id", []) if isinstance(metadata, dict) else []
    if isinstance(mitre_raw, str):
        mitre_raw = [mitre_raw]
    elif not isinstance(mitre_raw, list):
        mitre_raw = []  # hostile or unexpected JSON (a number is not iterable)
    mitre = tuple(m for m in mitre_raw if isinstance(m, str) and m[:1] == "T" and len(m) <= 9)
    severity = _int(body.get("severity"), 3, most=255)
    return Alert(
        ts=ts,
        flow=flow,
        rule=f"{gid}:{sid}:{rev}",
        signature=_str(body.get("signature")) or f"suricata sid {sid}",
        category="signature",
        severity=min(max(severity, 1), 4),
        signature_id=sid,
        rev=rev,
        to_server=True,
        app_proto=_str(rec.get("app_proto")),
        mitre=mitre,
        evidence={
            "source": "suricata",
            "suricata_category": _str(body.get("category")),
            "action": _str(body.get("action")),
            "suricata_severity": severity,
        },
    )


class EveIngester:
    """Parses EVE lines and publishes the alerts among them."""

    def __init__(self, publish: Callable[[Alert], None], max_line: int = MAX_LINE) -> None:
        self.publish = publish
        self.max_line = max_line
        self.counters: Counter[str] = Counter()

    def line(self, raw: bytes) -> None:
        self.counters["lines"] += 1
        if len(raw) > self.max_line:
            self.counters["too_long"] += 1
            return
        raw = raw.strip()
        if not raw:
            return
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):
            self.counters["not_json"] += 1
            return
        if not isinstance(rec, dict):
            self.counters["not_json"] += 1
            return
        if rec.get("event_type") != "alert":
            self.counters["other_events"] += 1
            return
        alert = alert_from_eve(rec)
        if alert is None:
            self.counters["bad_alerts"] += 1
            return
        self.counters["alerts"] += 1
        self.publish(alert)

    def read(self, fh: IO[bytes]) -> None:
        for raw in _bounded_lines(fh, self.max_line):
            self.line(raw)


def _bounded_lines(fh: IO[bytes], max_line: int) -> Iterator[bytes]:
    """Lines of a binary stream; an over-long line is yielded as one over-long marker, not kept whole."""
    while True:
        raw = fh.readline(max_line + 1)
        if not raw:
            return
        if len(raw) > max_line and not raw.endswith(b"\n"):
            while True:  # skip the rest of the long line without holding it
                more = fh.readline(max_line + 1)
                if not more or more.endswith(b"\n"):
                    break
            yield b"x" * (max_line + 1)
            continue
        yield raw


def ingest_file(path: Path, publish: Callable[[Alert], None]) -> Counter[str]:
    ingester = EveIngester(publish)
    with open(path, "rb") as fh:
        ingester.read(fh)
    return ingester.counters


def follow(
    path: Path,
    publish: Callable[[Alert], None],
    stop: Callable[[], bool],
    poll: float = 0.5,
    from_start: bool = False,
) -> Counter[str]:
    """Tail ``path`` until ``stop()``; reopens it when it is rotated or truncated.

    A file that exists at the start is read from its end (``from_start`` reads it whole); one that does
    not exist yet is read from its first line once it appears."""
    ingester = EveIngester(publish)
    fh: IO[bytes] | None = None
    inode = -1
    partial = b""
    try:
        while not stop():
            if fh is None:
                try:
                    fh = open(path, "rb")  # noqa: SIM115
                except OSError:
                    from_start = True  # made after we started: every line of it is new
                    time.sleep(poll)
                    continue
                inode = path.stat().st_ino
                if not from_start:
                    fh.seek(0, 2)
                from_start = True  # after a rotation, read the new file from its start
            chunk = fh.readline(ingester.max_line + 1)
            if chunk:
                partial += chunk
                if partial.endswith(b"\n") or len(partial) > ingester.max_line:
                    ingester.line(partial)
                    partial = b""
                continue
            try:
                st = path.stat()
                if st.st_ino != inode or st.st_size < fh.tell():
                    fh.close()
                    fh = None
                    partial = b""
                    continue
            except OSError:
                pass
            time.sleep(poll)
    finally:
        if fh is not None:
            fh.close()
    return ingester.counters
