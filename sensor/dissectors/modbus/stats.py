"""Modbus section of the replay summary (``zonewarden replay --summary-json``).

Counting is per PDU, as tshark counts (so the differential tests can compare): a request counts once
under its function code, a response once under its function code with the exception bit cleared,
and an exception response also under its exception code. An unanswered request is one request; an
unsolicited response is one response.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sensor.dissectors.base import ProtocolStats
from sensor.dissectors.modbus.events import ModbusTransaction
from sensor.records import AppEvent, ProtocolAnomaly


def _by_code(counter: Counter[int]) -> dict[str, int]:
    return {str(k): counter[k] for k in sorted(counter)}


class ModbusStats(ProtocolStats):
    """Folds Modbus events (and ignores every other event of the sensor) into counters."""

    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()
        self.responses: Counter[int] = Counter()
        self.exceptions: Counter[int] = Counter()
        self.exceptions_by_function: Counter[tuple[int, int]] = Counter()
        self.statuses: Counter[str] = Counter()
        self.anomalies: Counter[str] = Counter()
        self.units: set[int] = set()
        self.clients: set[str] = set()
        self.servers: set[str] = set()
        self.transactions = 0

    def observe(self, event: AppEvent) -> None:
        kind = type(event)
        if kind is ModbusTransaction:
            assert isinstance(event, ModbusTransaction)
            self.transactions += 1
            self.statuses[event.status] += 1
            self.units.add(event.unit_id)
            if event.request is not None:
                self.requests[event.request.function] += 1
            resp = event.response
            if resp is not None:
                self.responses[resp.function] += 1
                if resp.exception_code is not None:
                    self.exceptions[resp.exception_code] += 1
                    self.exceptions_by_function[resp.function, resp.exception_code] += 1
            flow = event.flow
            if flow is not None:
                self.clients.add(flow.client_ip)
                self.servers.add(f"{flow.server_ip}:{flow.server_port}")
        elif kind is ProtocolAnomaly:
            assert isinstance(event, ProtocolAnomaly)
            if event.app_proto == "modbus":
                self.anomalies[event.kind] += 1

    def section(self) -> dict[str, Any]:
        return {
            "requests_by_function": _by_code(self.requests),
            "responses_by_function": _by_code(self.responses),
            "exceptions_by_code": _by_code(self.exceptions),
            "units": sorted(self.units),
            "transactions": self.transactions,
            "anomalies_by_kind": dict(sorted(self.anomalies.items())),
            "exceptions_by_function_code": {
                f"{fc}/{code}": n for (fc, code), n in sorted(self.exceptions_by_function.items())
            },
            "transactions_by_status": dict(sorted(self.statuses.items())),
            "clients": sorted(self.clients),
            "servers": sorted(self.servers),
        }
