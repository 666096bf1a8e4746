"""The event a TLS session emits: :class:`TlsHandshake`, one per hello, certificate request or alert.

Certificates travel separately as :class:`~sensor.records.CertificateObservation` records so the
PKI and inventory treat TLS and OPC UA certificates alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sensor.dissectors.tls import codes
from sensor.records import FlowRef


@dataclass(frozen=True, slots=True)
class TlsHandshake:
    """One unencrypted TLS handshake step or alert (RFC 5246 §7, RFC 8446 §4, §6).

    ``message`` is ``client_hello``, ``server_hello``, ``certificate_request`` or ``alert``.
    On a ServerHello, ``version`` is the negotiated version (supported_versions for TLS 1.3) and
    ``certificates_hidden`` says the certificates that follow are encrypted (TLS 1.3): they are
    not guessed at.
    """

    ts: float
    flow: FlowRef | None
    to_server: bool
    message: str
    version: int = 0
    sni: str = ""
    alpn: tuple[str, ...] = ()
    cipher_suites: tuple[int, ...] = ()  # offered (client hello) or chosen (one, server hello)
    supported_versions: tuple[int, ...] = ()
    ja3: str = ""
    ja3_hash: str = ""
    certificates_hidden: bool = False
    hello_retry: bool = False
    alert_level: int = 0
    alert_description: int = 0

    event_type: ClassVar[str] = "tls"

    @property
    def app_proto(self) -> str:
        return "tls"

    @property
    def version_name(self) -> str:
        return codes.version_name(self.version) if self.version else ""

    def eve_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.message == "alert":
            body["alert"] = {
                "level": codes.ALERT_LEVEL_NAMES.get(self.alert_level, str(self.alert_level)),
                "description": codes.ALERT_NAMES.get(self.alert_description, str(self.alert_description)),
                "code": self.alert_description,
            }
            return {"tls": body}
        if self.version:
            body["version"] = self.version_name
        if self.sni:
            body["sni"] = self.sni
        if self.alpn:
            body["alpn"] = list(self.alpn)
        if self.message == "client_hello":
            body["cipher_suites"] = [codes.cipher_suite_name(c) for c in self.cipher_suites]
            if self.supported_versions:
                body["supported_versions"] = [codes.version_name(v) for v in self.supported_versions]
            body["ja3"] = {"string": self.ja3, "hash": self.ja3_hash}
        elif self.message == "server_hello":
            if self.cipher_suites:
                body["cipher_suite"] = codes.cipher_suite_name(self.cipher_suites[0])
            body["ja3s"] = {"string": self.ja3, "hash": self.ja3_hash}
            body["certificates_hidden"] = self.certificates_hidden
            if self.hello_retry:
                body["hello_retry_request"] = True
        return {"tls": body}
