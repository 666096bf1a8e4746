"""Syslog output: alerts as RFC 5424 messages carrying the EVE JSON, or as CEF, over UDP, TCP or TLS.

Message (RFC 5424 §6)::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
    <132>1 2023-11-14T22:13:20.001000Z sensor1 zonewarden - alert - {"timestamp": ...}

PRI = facility * 8 + severity; alert severities 1..4 map to syslog crit/err/warning/info.
Transports: UDP (RFC 5426, one message per datagram), TCP (RFC 6587 §3.4.1 octet counting:
``LEN SP MSG``) and TLS (RFC 5425, octet counting, server certificate checked against a CA file).

CEF (ArcSight Common Event Format rev. 25)::

    CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension

with ``|`` and ``\\`` escaped in the header, ``=`` ``\\`` and newlines in extension values.
"""

from __future__ import annotations

import json
import socket
import ssl
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

FACILITIES = {
    "kern": 0,
    "user": 1,
    "daemon": 3,
    "auth": 4,
    "local0": 16,
    "local1": 17,
    "local2": 18,
    "local3": 19,
    "local4": 20,
    "local5": 21,
    "local6": 22,
    "local7": 23,
}
_SYSLOG_SEVERITY = {1: 2, 2: 3, 3: 4, 4: 6}  # alert severity -> crit, err, warning, info
_CEF_SEVERITY = {1: 10, 2: 7, 3: 5, 4: 3}
VERSION = "0.1.0"


def _rfc3339(ts: float) -> str:
    try:
        dt = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        dt = datetime.fromtimestamp(0, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _header_field(text: str, limit: int) -> str:
    """RFC 5424 header fields are PRINTUSASCII without spaces; '-' when empty."""
    clean = "".join(ch for ch in text if 33 <= ord(ch) <= 126)[:limit]
    return clean or "-"


def rfc5424(record: dict[str, Any], body: str, hostname: str, facility: int, ts: float) -> bytes:
    severity = _SYSLOG_SEVERITY.get(int(record.get("alert", {}).get("severity", 3)), 4)
    head = f"<{facility * 8 + severity}>1 {_rfc3339(ts)} {_header_field(hostname, 255)} zonewarden - alert -"
    return f"{head} {body}".encode()


def _cef_header(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def cef(record: dict[str, Any]) -> str:
    alert = record.get("alert", {})
    zw = record.get("zonewarden", {})
    severity = _CEF_SEVERITY.get(int(alert.get("severity", 3)), 5)
    ext: list[tuple[str, Any]] = [
        ("rt", str(int(float(zw.get("ts", 0) or 0) * 1000)) if zw.get("ts") else None),
        ("src", record.get("src_ip")),
        ("spt", record.get("src_port")),
        ("dst", record.get("dest_ip")),
        ("dpt", record.get("dest_port")),
        ("proto", record.get("proto")),
        ("app", record.get("app_proto")),
        ("act", alert.get("action", "allowed")),
        ("cat", alert.get("category")),
        ("externalId", zw.get("id")),
        ("cs1Label", "rule"),
        ("cs1", zw.get("rule")),
        ("cs2Label", "mitre"),
        ("cs2", ",".join(alert.get("metadata", {}).get("mitre_technique_id", []))),
        ("cs3Label", "conduit"),
        ("cs3", zw.get("conduit")),
        ("cs4Label", "zones"),
        ("cs4", f"{zw.get('src_zone', '')}->{zw.get('dest_zone', '')}"),
        ("cnt", zw.get("count")),
        ("msg", alert.get("signature")),
    ]
    extension = " ".join(f"{k}={_cef_value(v)}" for k, v in ext if v not in (None, ""))
    header = "|".join(
        _cef_header(str(x))
        for x in (
            "zonewarden",
            "zonewarden",
            VERSION,
            alert.get("signature_id", 0),
            alert.get("signature", ""),
            severity,
        )
    )
    return f"CEF:0|{header}|{extension}"


class SyslogSink:
    """One syslog destination: ``syslog://host:514`` (UDP), ``syslog+tcp://``, ``syslog+tls://``."""

    def __init__(
        self,
        name: str,
        url: str,
        fmt: str = "json",
        facility: str = "local0",
        hostname: str | None = None,
        ca_file: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        self.name = name
        self.transport = {"syslog": "udp", "syslog+udp": "udp", "syslog+tcp": "tcp", "syslog+tls": "tls"}[
            parts.scheme
        ]
        self.host = parts.hostname or ""
        self.port = parts.port or (6514 if self.transport == "tls" else 514)
        if fmt not in ("json", "cef"):
            raise ValueError(f"syslog format must be json or cef, got {fmt!r}")
        self.fmt = fmt
        self.facility = FACILITIES[facility]
        self.hostname = hostname or socket.gethostname()
        self.ca_file = ca_file
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def format(self, record: dict[str, Any], ts: float) -> bytes:
        body = (
            cef(record)
            if self.fmt == "cef"
            else json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        )
        return rfc5424(record, body, self.hostname, self.facility, ts)

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        if self.transport == "udp":
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(info[0], socket.SOCK_DGRAM)
            sock.settimeout(self.timeout)
            sock.connect(info[4])
        else:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            if self.transport == "tls":
                ctx = ssl.create_default_context(cafile=self.ca_file)
                try:
                    sock = ctx.wrap_socket(sock, server_hostname=self.host)
                except BaseException:
                    sock.close()
                    raise
        self._sock = sock
        return sock

    def send(self, record: dict[str, Any], alert_id: str, ts: float) -> None:
        """Send one alert; raises OSError when the destination is not there (the caller retries)."""
        message = self.format(record, ts)
        try:
            sock = self._connect()
            if self.transport == "udp":
                sock.send(message[:65000])
            else:
                sock.sendall(str(len(message)).encode() + b" " + message)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
