"""Protocol anomalies from the dissectors, raised as ``anomaly:protocol.<kind>`` alerts.

Severity per kind comes from :data:`sensor.detect.attack.PROTOCOL_SEVERITY` (else the dissector's
own). Capture-quality kinds (retransmissions, gaps from SPAN loss; :data:`attack.NOT_RAISED`) stay
counters. A kind learned on an edge (a device that always answers mid-stream, a server that always
offers security mode None) is part of that edge's normal behaviour and is not raised again; it
stays visible in the baseline's ``protocol_anomaly`` section and in the EVE ``anomaly`` records.
"""

from __future__ import annotations

from sensor.detect.attack import NOT_RAISED
from sensor.detect.baseline import Baseline
from sensor.detect.findings import Finding
from sensor.detect.learn import anomaly_fact
from sensor.detect.novelty import Emit
from sensor.records import ProtocolAnomaly


def raised(a: ProtocolAnomaly) -> bool:
    return a.kind not in NOT_RAISED


class ProtocolDetector:
    def __init__(self, baseline: Baseline, emit: Emit) -> None:
        self.baseline = baseline
        self.emit = emit

    def anomaly(self, a: ProtocolAnomaly) -> None:
        if not raised(a) or a.flow is None:
            return
        fact = anomaly_fact(a)
        if fact is None or self.baseline.knows(fact):
            return
        src, _sp, dst, _dp = a.flow.endpoints(a.to_server)
        detail = f": {a.detail}" if a.detail else ""
        self.emit(
            Finding(
                f"protocol.{a.kind}",
                a.ts,
                a.flow.client_ip,
                a.flow.server_ip,
                f"protocol anomaly {a.kind} from {src} to {dst}{detail}",
                flow=a.flow,
                app_proto=a.app_proto,
                facts=[fact],
                details={"kind": a.kind, "detail": a.detail, "dissector_severity": a.severity},
            )
        )
