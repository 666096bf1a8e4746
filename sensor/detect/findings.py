"""What a detector hands the anomaly observer: one finding, before aggregation into an Alert."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sensor.detect.baseline import Fact
from sensor.records import FlowRef


@dataclass(slots=True)
class Finding:
    """One occurrence of an anomaly ``kind`` between ``src`` and ``dst``.

    ``explanation`` is the one line an analyst reads ("never seen: FC 16 from 10.1.2.3 to unit 5,
    holding registers 150-159"). ``facts`` are what accepting the alert folds into the baseline so
    that the same behaviour no longer fires; ``details`` is the exact operation (JSON-safe).
    ``count`` lets a detector report several occurrences at once (a scan crossing its threshold).
    """

    kind: str
    ts: float
    src: str
    dst: str
    explanation: str
    flow: FlowRef | None = None
    app_proto: str = ""
    facts: list[Fact] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    count: int = 1
    items: list[Any] = field(default_factory=list)  # what a scan probed, accumulated over the window
