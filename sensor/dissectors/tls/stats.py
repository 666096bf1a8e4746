"""The ``tls`` section of the replay summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sensor.dissectors.base import ProtocolStats
from sensor.dissectors.tls import codes
from sensor.dissectors.tls.events import TlsHandshake
from sensor.records import AppEvent, CertificateObservation, ProtocolAnomaly

MAX_SUMMARY_NAMES = 10_000


class TlsStats(ProtocolStats):
    """handshakes = ClientHellos seen; versions = negotiated (ServerHello); certificates observed."""

    def __init__(self) -> None:
        self.handshakes = 0
        self.server_hellos = 0
        self.versions: Counter[str] = Counter()
        self.certificates = 0
        self.certificates_hidden = 0
        self.sni: set[str] = set()
        self.alpn: set[str] = set()
        self.alerts: Counter[str] = Counter()
        self.cipher_suites: Counter[str] = Counter()
        self.anomalies: Counter[str] = Counter()
        self.certificate_requests = 0

    def observe(self, event: AppEvent) -> None:
        if isinstance(event, TlsHandshake):
            if event.message == "client_hello":
                self.handshakes += 1
                if event.sni and len(self.sni) < MAX_SUMMARY_NAMES:
                    self.sni.add(event.sni)
                for proto in event.alpn:
                    if len(self.alpn) < MAX_SUMMARY_NAMES:
                        self.alpn.add(proto)
            elif event.message == "server_hello" and not event.hello_retry:
                self.server_hellos += 1
                self.versions[event.version_name] += 1
                if event.cipher_suites:
                    self.cipher_suites[codes.cipher_suite_name(event.cipher_suites[0])] += 1
                if event.certificates_hidden:
                    self.certificates_hidden += 1
            elif event.message == "alert":
                self.alerts[codes.ALERT_NAMES.get(event.alert_description, str(event.alert_description))] += 1
            elif event.message == "certificate_request":
                self.certificate_requests += 1
        elif isinstance(event, CertificateObservation) and event.app_proto == "tls":
            self.certificates += 1
        elif isinstance(event, ProtocolAnomaly) and event.app_proto == "tls":
            self.anomalies[event.kind] += 1

    def section(self) -> dict[str, Any]:
        return {
            "handshakes": self.handshakes,
            "versions": dict(sorted(self.versions.items())),
            "certificates": self.certificates,
            "sni": sorted(self.sni),
            "server_hellos": self.server_hellos,
            "certificates_hidden": self.certificates_hidden,
            "certificate_requests": self.certificate_requests,
            "alpn": sorted(self.alpn),
            "cipher_suites": dict(sorted(self.cipher_suites.items())),
            "alerts": dict(sorted(self.alerts.items())),
            "anomalies_by_kind": dict(sorted(self.anomalies.items())),
        }
