"""Per-connection TLS state: records, handshake reassembly, and where the plaintext ends.

Per direction (RFC 5246 §7.1, RFC 8446 §2, §5)::

    +-------------+--------------------------------------+-------------------------------------+
    | state       | event                                | effect                              |
    +-------------+--------------------------------------+-------------------------------------+
    | plaintext   | handshake record                     | reassemble messages; parse hellos,  |
    |             |                                      | Certificate, CertificateRequest     |
    | plaintext   | alert record of 2 bytes              | TlsHandshake(alert)                 |
    | plaintext   | ChangeCipherSpec / application data  | encrypted                           |
    | any         | ServerHello selects TLS 1.3          | both directions encrypted (not HRR) |
    | encrypted   | any record                           | counted only                        |
    | any         | bytes that are not a TLS record      | tls.malformed_record; stop          |
    +-------------+--------------------------------------+-------------------------------------+

Memory: the record buffer holds at most one record (<= 18 KiB + header) and the handshake buffer at
most ``limits.tls_max_handshake`` bytes; a larger handshake message is skipped by counting.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from sensor.certs import parse_certificate
from sensor.dissectors.base import DissectorSession, Reader
from sensor.dissectors.tls import codes
from sensor.dissectors.tls.events import TlsHandshake
from sensor.dissectors.tls.frames import (
    HANDSHAKE_HEADER,
    RECORD_HEADER,
    md5_hex,
    parse_alerts,
    parse_certificate_list,
    parse_client_hello,
    parse_handshake_header,
    parse_record_header,
    parse_server_hello,
)
from sensor.errors import Malformed, ParseError, Truncated
from sensor.limits import Limits
from sensor.records import AppEvent, CertificateObservation, FlowRef, ProtocolAnomaly

logger = logging.getLogger(__name__)


class _Direction:
    __slots__ = ("buf", "dead", "encrypted", "hs_buf", "hs_skip", "records")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.hs_buf = bytearray()
        self.hs_skip = 0  # bytes of an over-limit handshake message still to drop
        self.encrypted = False
        self.dead = False  # not TLS (any more): ignore this direction
        self.records: Counter[int] = Counter()


class TlsSession(DissectorSession):
    """One TLS connection. ``feed``/``gap``/``close`` never raise on wire input."""

    def __init__(self, flow: FlowRef | None, limits: Limits) -> None:
        self.flow = flow
        self.limits = limits
        self._to_server = _Direction()
        self._to_client = _Direction()
        self.version = 0  # negotiated, from the ServerHello
        self.tls13 = False

    def _dir(self, to_server: bool) -> _Direction:
        return self._to_server if to_server else self._to_client

    # --- DissectorSession -------------------------------------------------------------------------

    def feed(self, data: bytes, to_server: bool, ts: float) -> Sequence[AppEvent]:
        out: list[AppEvent] = []
        try:
            self._feed(data, to_server, ts, out)
        except Exception:  # a bug must not take the flow (or the sensor) down
            logger.exception("tls session bug; direction dropped")
            d = self._dir(to_server)
            d.dead = True
            d.buf = bytearray()
            d.hs_buf = bytearray()
            out.append(self._anomaly(ts, "tls.internal_error", "parser error", to_server))
        return out

    def gap(self, to_server: bool, size: int, ts: float) -> Sequence[AppEvent]:
        # Records have no resync marker worth trusting; after a hole this direction is only
        # counted as lost. The handshake metadata has usually been seen by then.
        d = self._dir(to_server)
        d.buf = bytearray()
        d.hs_buf = bytearray()
        d.dead = True
        return ()

    def close(self, ts: float) -> Sequence[AppEvent]:
        return ()

    # --- records ----------------------------------------------------------------------------------

    def _feed(self, data: bytes, to_server: bool, ts: float, out: list[AppEvent]) -> None:
        d = self._dir(to_server)
        if d.dead:
            return
        d.buf += data
        buf = d.buf
        pos = 0
        n = len(buf)
        while pos < n:
            try:
                ctype, _, length = parse_record_header(buf, pos)
            except Truncated:
                break
            except Malformed as exc:
                detail = f"{exc.reason}: {exc.detail}" + (" (after encryption)" if d.encrypted else "")
                out.append(self._anomaly(ts, "tls.malformed_record", detail, to_server))
                d.dead = True
                d.buf = bytearray()
                return
            end = pos + RECORD_HEADER + length
            if end > n:
                break
            d.records[ctype] += 1
            payload = bytes(buf[pos + RECORD_HEADER : end])
            pos = end
            if ctype == codes.ALERT and length == 2:
                # A 2-byte alert is plaintext even in TLS 1.3: an encrypted one carries a tag.
                self._alerts(payload, to_server, ts, out)
            elif d.encrypted:
                continue
            elif ctype == codes.HANDSHAKE:
                self._handshake_bytes(d, payload, to_server, ts, out)
            elif ctype in (codes.CHANGE_CIPHER_SPEC, codes.APPLICATION_DATA):
                d.encrypted = True
                d.hs_buf = bytearray()
            elif ctype == codes.ALERT:
                self._alerts(payload, to_server, ts, out)
        del buf[:pos]

    def _alerts(self, payload: bytes, to_server: bool, ts: float, out: list[AppEvent]) -> None:
        try:
            alerts = parse_alerts(payload)
        except Malformed as exc:
            out.append(self._anomaly(ts, "tls.malformed_alert", exc.detail, to_server))
            return
        for a in alerts:
            out.append(
                TlsHandshake(
                    ts, self.flow, to_server, "alert", alert_level=a.level, alert_description=a.description
                )
            )

    # --- handshake messages -----------------------------------------------------------------------

    def _handshake_bytes(
        self, d: _Direction, payload: bytes, to_server: bool, ts: float, out: list[AppEvent]
    ) -> None:
        if d.hs_skip:
            if len(payload) <= d.hs_skip:
                d.hs_skip -= len(payload)
                return
            payload = payload[d.hs_skip :]
            d.hs_skip = 0
        hs = d.hs_buf
        hs += payload
        pos = 0
        n = len(hs)
        limit = self.limits.tls_max_handshake
        while pos + HANDSHAKE_HEADER <= n and not d.encrypted:
            msg_type, length = parse_handshake_header(hs, pos)
            if length > limit:
                name = codes.HANDSHAKE_TYPE_NAMES.get(msg_type, str(msg_type))
                out.append(
                    self._anomaly(
                        ts, "tls.handshake_too_large", f"{name} of {length} bytes over {limit}", to_server
                    )
                )
                available = n - pos - HANDSHAKE_HEADER
                d.hs_skip = length - available
                pos = n
                break
            end = pos + HANDSHAKE_HEADER + length
            if end > n:
                break
            self._message(msg_type, Reader(hs, pos + HANDSHAKE_HEADER, end), to_server, ts, out)
            pos = end
        if d.encrypted:
            d.hs_buf = bytearray()
        else:
            del hs[:pos]

    def _message(self, msg_type: int, r: Reader, to_server: bool, ts: float, out: list[AppEvent]) -> None:
        try:
            if msg_type == codes.CLIENT_HELLO and to_server:
                ch = parse_client_hello(r)
                ja3 = ch.ja3()
                out.append(
                    TlsHandshake(
                        ts,
                        self.flow,
                        True,
                        "client_hello",
                        version=max((v for v in ch.supported_versions if not codes.is_grease(v)), default=0)
                        or ch.legacy_version,
                        sni=ch.sni,
                        alpn=ch.alpn,
                        cipher_suites=ch.cipher_suites[:64],
                        supported_versions=ch.supported_versions[:16],
                        ja3=ja3,
                        ja3_hash=md5_hex(ja3),
                    )
                )
            elif msg_type == codes.SERVER_HELLO and not to_server:
                sh = parse_server_hello(r)
                self.version = sh.selected_version
                tls13 = sh.selected_version == 0x0304 or (sh.selected_version >> 8) == 0x7F
                if tls13 and not sh.hello_retry:
                    # RFC 8446 §2: everything after the ServerHello, both ways, is encrypted.
                    self.tls13 = True
                    self._to_client.encrypted = True
                    self._to_server.encrypted = True
                ja3s = sh.ja3s()
                out.append(
                    TlsHandshake(
                        ts,
                        self.flow,
                        False,
                        "server_hello",
                        version=sh.selected_version,
                        alpn=(sh.alpn,) if sh.alpn else (),
                        cipher_suites=(sh.cipher_suite,),
                        ja3=ja3s,
                        ja3_hash=md5_hex(ja3s),
                        certificates_hidden=tls13 and not sh.hello_retry,
                        hello_retry=sh.hello_retry,
                    )
                )
            elif msg_type == codes.CERTIFICATE and not self.tls13:
                self._certificates(r, to_server, ts, out)
            elif msg_type == codes.CERTIFICATE_REQUEST and not to_server:
                out.append(TlsHandshake(ts, self.flow, False, "certificate_request", version=self.version))
        except ParseError as exc:
            name = codes.HANDSHAKE_TYPE_NAMES.get(msg_type, str(msg_type))
            out.append(self._anomaly(ts, "tls.malformed_handshake", f"{name}: {exc}", to_server))

    def _certificates(self, r: Reader, to_server: bool, ts: float, out: list[AppEvent]) -> None:
        """Certificate message of TLS <= 1.2, either side: one observation per certificate."""
        chain, total = parse_certificate_list(r, self.limits.tls_max_certificates)
        if total > len(chain):
            out.append(
                self._anomaly(
                    ts,
                    "tls.too_many_certificates",
                    f"{total} certificates, first {len(chain)} kept",
                    to_server,
                )
            )
        source = "tls.client" if to_server else "tls.server"
        for index, der in enumerate(chain):
            try:
                info = parse_certificate(der)
            except Malformed as exc:
                out.append(self._anomaly(ts, "tls.bad_certificate", f"#{index}: {exc.detail}", to_server))
                continue
            out.append(CertificateObservation(ts, self.flow, source, not to_server, info, der, "tls", index))

    def _anomaly(self, ts: float, kind: str, detail: str, to_server: bool) -> ProtocolAnomaly:
        return ProtocolAnomaly(ts, self.flow, kind, detail, to_server, 3, "tls")
