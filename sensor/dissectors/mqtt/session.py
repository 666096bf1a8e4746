"""Per-connection MQTT state: framing, protocol level, topic aliases and QoS 1/2 flows.

State per connection (MQTT 3.1.1 §3.1, 5.0 §3.1-§3.3, §4.3)::

    +---------------------+------------------------------+---------------------------------------+
    | state               | event                        | effect                                |
    +---------------------+------------------------------+---------------------------------------+
    | no CONNECT yet      | CONNECT (to server)          | level, client id, aliases max (s->c)  |
    | no CONNECT yet      | any other first packet       | mqtt.missing_connect (once), mid-     |
    |                     |                              | stream pickup: level inferred         |
    | connected           | CONNECT again                | mqtt.double_connect                   |
    | any                 | CONNACK code != 0            | mqtt.auth_failure                     |
    | any                 | CONNACK Topic Alias Maximum  | aliases max (c->s)                    |
    | any                 | PUBLISH QoS 1/2              | pending[(dir, id)] = published        |
    | published (QoS 1)   | PUBACK (other dir)           | complete                              |
    | published (QoS 2)   | PUBREC (other dir)           | received                              |
    | received            | PUBREL (same dir)            | released   (else mqtt.missing_pubrec) |
    | released            | PUBCOMP (other dir)          | complete   (else mqtt.missing_pubrel) |
    | -                   | ack with no pending PUBLISH  | mqtt.unexpected_ack                   |
    +---------------------+------------------------------+---------------------------------------+

Framing per direction: bytes are buffered only up to one packet of at most
``limits.mqtt_max_message``; a larger packet is reported (``mqtt.truncated``) and its bytes are
counted off as they arrive, never held (hostile input Q2). After an unparseable fixed header the
direction waits for a segment that starts with a plausible header (resync).
"""

from __future__ import annotations

import codecs
import logging
from collections import OrderedDict
from collections.abc import Sequence

from sensor.dissectors.base import DissectorSession, Reader
from sensor.dissectors.mqtt import codes
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import (
    Connack,
    Connect,
    MqttMessage,
    PacketIdAck,
    Publish,
    check_flags,
    parse_body,
    parse_fixed_header,
)
from sensor.dissectors.mqtt.properties import ParseContext
from sensor.errors import Malformed, Truncated
from sensor.limits import Limits
from sensor.records import AppEvent, FlowRef, ProtocolAnomaly

logger = logging.getLogger(__name__)

# Malformed reasons that have their own anomaly kind; every other reason is mqtt.malformed.
_REASON_KINDS = {
    "invalid_qos": "mqtt.invalid_qos",
    "unassigned_msg_type": "mqtt.unassigned_msg_type",
}

# QoS flow steps kept in the pending table
_PUBLISHED = 0
_RECEIVED = 1  # QoS 2: PUBREC seen
_RELEASED = 2  # QoS 2: PUBREL seen

# Bound on topic aliases remembered per direction, whatever the peer announced (up to 65,535).
MAX_TOPIC_ALIASES = 1024


def plausible_stream(data: bytes | bytearray, max_message: int) -> tuple[int, int]:
    """Walk whole MQTT packets from ``data[0]``: (packets that check out, strong ones among them).

    Returns (-1, 0) when the bytes cannot be MQTT. A packet is strong when its body has structure
    that random bytes rarely have (a CONNECT name, a PUBLISH topic that is printable UTF-8,
    a CONNACK of the right length). Bounded to 8 packets: this runs on detection and resync only.
    """
    pos = 0
    good = strong = 0
    n = len(data)
    while pos < n and good < 8:
        try:
            hdr = parse_fixed_header(data, pos)
        except Truncated:
            return good, strong
        except Malformed:
            return -1, 0
        ptype, flags, rem, hl = hdr
        if ptype == codes.RESERVED or rem > max_message:
            return -1, 0
        try:
            check_flags(ptype, flags, 4)
        except Malformed:
            return -1, 0
        body = pos + hl
        end = body + rem
        if ptype == codes.PUBLISH:
            if body + 2 > n:
                return good, strong
            tlen = (data[body] << 8) | data[body + 1]
            if tlen == 0 or tlen + 2 > rem:
                return -1, 0
            topic = bytes(data[body + 2 : min(n, body + 2 + tlen, body + 2 + 64)])
            try:
                # incremental: a multi-byte character cut by the 64-byte window is not an error
                text = codecs.getincrementaldecoder("utf-8")().decode(topic, final=False)
            except UnicodeDecodeError:
                return -1, 0
            if not text.isprintable() or "+" in text or "#" in text:
                return -1, 0
            strong += 1
        elif ptype == codes.CONNECT:
            if body + 9 > n:
                return good, strong
            name_len = (data[body] << 8) | data[body + 1]
            if name_len not in (4, 6):
                return -1, 0
            if body + 3 + name_len > n:
                return good, strong
            name = bytes(data[body + 2 : body + 2 + name_len])
            if (
                name not in codes.PROTOCOL_NAMES
                or data[body + 2 + name_len] not in codes.PROTOCOL_NAMES[name]
            ):
                return -1, 0
            strong += 1
        elif ptype == codes.CONNACK:
            if rem < 2 or (body < n and data[body] > 1):
                return -1, 0
            strong += 1 if rem == 2 else 0
        elif (ptype in (codes.PINGREQ, codes.PINGRESP) and rem) or (
            codes.PUBACK <= ptype <= codes.UNSUBACK and rem < 2
        ):
            return -1, 0
        if end > n:
            return good, strong
        good += 1
        pos = end
    return good, strong


class _Direction:
    """One direction of the connection: framing buffer and the topic aliases its sender uses."""

    __slots__ = ("alias_max", "aliases", "buf", "resync", "skip")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skip = 0  # bytes of an over-limit packet still to be counted off
        self.resync = False
        self.aliases: dict[int, str] = {}
        self.alias_max: int | None = None  # None: not announced on the wire we saw


class MqttSession(DissectorSession):
    """One MQTT connection. ``feed``/``gap``/``close`` never raise on wire input."""

    def __init__(self, flow: FlowRef | None, limits: Limits, log_passwords: bool = False) -> None:
        self.flow = flow
        self.limits = limits
        self.ctx = ParseContext(
            version=0,
            payload_preview=limits.mqtt_payload_preview,
            max_topic_levels=limits.mqtt_max_topic_levels,
            max_filters=limits.mqtt_max_topics_per_subscribe,
            max_field_chars=limits.max_field_chars,
            log_passwords=log_passwords,
        )
        self._to_client = _Direction()
        self._to_server = _Direction()
        self.client_id = ""
        self.connected = False  # a CONNECT was seen
        self.seen_any = False
        self.pending: OrderedDict[tuple[bool, int], tuple[int, int, str]] = OrderedDict()
        self.evicted = 0
        self.alias_cap_reported = False
        self.packets = 0

    @property
    def version(self) -> int:
        return self.ctx.version

    # --- DissectorSession -----------------------------------------------------------------------

    def feed(self, data: bytes, to_server: bool, ts: float) -> Sequence[AppEvent]:
        out: list[AppEvent] = []
        try:
            self._feed(data, to_server, ts, out)
        except Exception:  # a bug must not take the flow (or the sensor) down
            logger.exception("mqtt session bug; direction reset")
            d = self._to_server if to_server else self._to_client
            d.buf = bytearray()
            d.resync = True
            out.append(self._anomaly(ts, "mqtt.internal_error", "parser error; resyncing", to_server))
        return out

    def gap(self, to_server: bool, size: int, ts: float) -> Sequence[AppEvent]:
        d = self._to_server if to_server else self._to_client
        if d.skip and 0 < size <= d.skip:
            d.skip -= size  # the hole fell inside a packet we were skipping anyway
            return ()
        d.buf = bytearray()
        d.skip = 0
        d.resync = True
        return ()

    def close(self, ts: float) -> Sequence[AppEvent]:
        out: list[AppEvent] = []
        if self.pending:
            out.append(
                self._anomaly(
                    ts,
                    "mqtt.incomplete_qos",
                    f"{len(self.pending)} QoS 1/2 flows unfinished at close",
                    True,
                    severity=4,
                )
            )
            self.pending.clear()
        return out

    # --- framing --------------------------------------------------------------------------------

    def _feed(self, data: bytes, to_server: bool, ts: float, out: list[AppEvent]) -> None:
        d = self._to_server if to_server else self._to_client
        if d.skip:
            if len(data) <= d.skip:
                d.skip -= len(data)
                return
            data = data[d.skip :]
            d.skip = 0
        if d.resync:
            good, strong = plausible_stream(data, self.limits.mqtt_max_message)
            if good < 0 or not (good or strong):
                return  # still lost; drop this segment
            d.resync = False
        buf: bytes | bytearray
        if d.buf:
            d.buf += data
            buf = d.buf
        else:
            buf = data
        pos = 0
        n = len(buf)
        max_message = self.limits.mqtt_max_message
        while pos < n:
            try:
                ptype, flags, rem, hl = parse_fixed_header(buf, pos)
            except Truncated:
                break
            except Malformed as exc:
                out.append(self._anomaly(ts, "mqtt.malformed", f"{exc.reason}: {exc.detail}", to_server))
                d.resync = True
                pos = n
                break
            total = hl + rem
            if rem > max_message:
                # Hostile input Q2: report now, count the body off as it arrives, hold nothing.
                self._count(ptype, to_server, ts, out)
                out.append(
                    self._anomaly(
                        ts,
                        "mqtt.truncated",
                        f"{codes.PACKET_TYPE_NAMES[ptype]} of {rem} bytes over the {max_message} byte limit",
                        to_server,
                    )
                )
                out.append(self._event(ts, to_server, ptype, None, truncated=True, remaining_length=rem))
                available = n - pos
                if total > available:
                    d.skip = total - available
                    pos = n
                else:
                    pos += total
                continue
            if pos + total > n:
                break
            self._packet(ptype, flags, buf, pos + hl, pos + total, to_server, ts, out)
            pos += total
        if pos >= n:
            d.buf = bytearray()
        elif buf is d.buf:
            del d.buf[:pos]
        else:
            d.buf = bytearray(buf[pos:])

    # --- one packet -----------------------------------------------------------------------------

    def _count(self, ptype: int, to_server: bool, ts: float, out: list[AppEvent]) -> None:
        self.packets += 1
        if not self.seen_any:
            self.seen_any = True
            if ptype != codes.CONNECT:
                # Hostile input Q11 (and every mid-stream pickup): reported once, then decoded anyway.
                out.append(
                    self._anomaly(
                        ts,
                        "mqtt.missing_connect",
                        f"first packet is {codes.PACKET_TYPE_NAMES[ptype]}",
                        to_server,
                        severity=4,
                    )
                )

    def _packet(
        self,
        ptype: int,
        flags: int,
        buf: bytes | bytearray,
        start: int,
        end: int,
        to_server: bool,
        ts: float,
        out: list[AppEvent],
    ) -> None:
        self._count(ptype, to_server, ts, out)
        if ptype == codes.RESERVED or (ptype == codes.AUTH and 0 < self.ctx.version < 5):
            out.append(self._anomaly(ts, "mqtt.unassigned_msg_type", f"packet type {ptype}", to_server))
            out.append(self._event(ts, to_server, ptype, None, malformed="unassigned_msg_type"))
            return
        try:
            check_flags(ptype, flags, self.ctx.version)
        except Malformed as exc:
            out.append(self._malformed(ts, exc, to_server))
            out.append(self._event(ts, to_server, ptype, None, malformed=exc.reason))
            return
        expected_dir = codes.DIRECTION[ptype]
        if expected_dir is not None and expected_dir != to_server:
            out.append(
                self._anomaly(
                    ts,
                    "mqtt.wrong_direction",
                    f"{codes.PACKET_TYPE_NAMES[ptype]} sent by the {'client' if to_server else 'server'}",
                    to_server,
                )
            )
        if ptype == codes.CONNECT and to_server:
            if self.connected:
                out.append(self._anomaly(ts, "mqtt.double_connect", "second CONNECT on the connection", True))
            self.connected = True
        ctx = self.ctx
        ctx.issues.clear()
        try:
            msg = self._parse(ptype, flags, buf, start, end)
        except Malformed as exc:
            out.extend(self._anomaly(ts, kind, detail, to_server) for kind, detail in ctx.issues)
            out.append(self._malformed(ts, exc, to_server))
            out.append(self._event(ts, to_server, ptype, None, malformed=exc.reason))
            return
        if ctx.issues:
            out.extend(self._anomaly(ts, kind, detail, to_server) for kind, detail in ctx.issues)
        qos_flow = ""
        matched = ""
        if type(msg) is Publish:
            msg, qos_flow = self._on_publish(msg, to_server, ts, out)
        elif type(msg) is PacketIdAck:
            qos_flow, matched = self._on_ack(ptype, msg, to_server, ts, out)
        elif type(msg) is Connect:
            self._on_connect(msg)
        elif type(msg) is Connack:
            self._on_connack(msg, ts, out)
        out.append(self._event(ts, to_server, ptype, msg, qos_flow=qos_flow, matched_topic=matched))

    def _parse(self, ptype: int, flags: int, buf: bytes | bytearray, start: int, end: int) -> MqttMessage:
        ctx = self.ctx
        try:
            return parse_body(ptype, flags, Reader(buf, start, end), ctx)
        except Malformed:
            # Mid-stream pickup: no CONNECT told us the level. A body that fails as 3.1.1 but
            # parses as 5.0 (properties) teaches us the level for the rest of the connection.
            if ctx.version != 0 or ptype == codes.CONNECT:
                raise
            first_issues = list(ctx.issues)
            ctx.issues.clear()
            ctx.version = 5
            try:
                msg = parse_body(ptype, flags, Reader(buf, start, end), ctx)
            except Malformed:
                ctx.version = 0
                ctx.issues[:] = first_issues
                raise
            logger.debug("mqtt level 5 inferred mid-stream from a %s", codes.PACKET_TYPE_NAMES[ptype])
            return msg

    # --- state ----------------------------------------------------------------------------------

    def _on_connect(self, msg: Connect) -> None:
        self.client_id = msg.client_id
        # Client's Topic Alias Maximum bounds the aliases the *server* may send (5.0 §3.1.2.11.5);
        # absent means 0: the server may not use aliases.
        if msg.protocol_level == 5:
            self._to_client.alias_max = int(msg.properties.get("topic_alias_maximum", 0))
            self._to_server.alias_max = 0  # until the CONNACK says otherwise (§3.2.2.3.8)
        self._to_client.aliases.clear()
        self._to_server.aliases.clear()

    def _on_connack(self, msg: Connack, ts: float, out: list[AppEvent]) -> None:
        if self.ctx.version == 5:
            self._to_server.alias_max = int(msg.properties.get("topic_alias_maximum", 0))
            assigned = msg.properties.get("assigned_client_identifier")
            if assigned and not self.client_id:
                self.client_id = str(assigned)
        if msg.code != 0:
            name = codes.reason_name(msg.code, codes.CONNACK, self.ctx.version)
            out.append(
                self._anomaly(
                    ts,
                    "mqtt.auth_failure",
                    f"CONNACK refused: {name} ({msg.code})"
                    + (f" client id {self.client_id!r}" if self.client_id else ""),
                    False,
                    severity=2,
                )
            )

    def _on_publish(
        self, msg: Publish, to_server: bool, ts: float, out: list[AppEvent]
    ) -> tuple[Publish, str]:
        if "topic_alias" in msg.properties:
            msg = self._resolve_alias(msg, to_server, ts, out)
        if not msg.qos:
            return msg, ""
        key = (to_server, msg.packet_id)
        pending = self.pending
        qos_flow = "published"
        if key in pending:
            if msg.dup:
                qos_flow = "retransmitted"
            else:
                out.append(
                    self._anomaly(
                        ts,
                        "mqtt.packet_id_reuse",
                        f"packet id {msg.packet_id} reused while in flight",
                        to_server,
                    )
                )
            del pending[key]
        pending[key] = (msg.qos, _PUBLISHED, msg.topic)
        if len(pending) > self.limits.mqtt_max_transactions:
            pending.popitem(last=False)  # oldest first: O(1), so 100 k unanswered PUBLISH stay linear
            self.evicted += 1
            if self.evicted == 1:
                out.append(
                    self._anomaly(
                        ts,
                        "mqtt.too_many_transactions",
                        f"more than {self.limits.mqtt_max_transactions} QoS 1/2 flows in flight",
                        to_server,
                        severity=2,
                    )
                )
        return msg, qos_flow

    def _resolve_alias(self, msg: Publish, to_server: bool, ts: float, out: list[AppEvent]) -> Publish:
        """Topic Alias (5.0 §3.3.2.3.4): per direction, 1..Topic Alias Maximum of the receiver."""
        d = self._to_server if to_server else self._to_client
        alias = msg.topic_alias
        problem = ""
        if alias == 0:
            problem = "topic alias 0"
        elif d.alias_max is not None and alias > d.alias_max:
            problem = f"topic alias {alias} above the announced maximum {d.alias_max}"
        elif msg.topic:
            if alias in d.aliases or len(d.aliases) < MAX_TOPIC_ALIASES:
                d.aliases[alias] = msg.topic
            elif not self.alias_cap_reported:
                self.alias_cap_reported = True
                out.append(
                    self._anomaly(
                        ts, "mqtt.too_many_topic_aliases", f"over {MAX_TOPIC_ALIASES} aliases", to_server
                    )
                )
            return msg
        else:
            topic = d.aliases.get(alias)
            if topic is not None:
                return msg._replace(topic=topic)
            problem = f"topic alias {alias} was never bound"
        out.append(self._anomaly(ts, "mqtt.invalid_topic_alias", problem, to_server))
        return msg

    def _on_ack(
        self, ptype: int, msg: PacketIdAck, to_server: bool, ts: float, out: list[AppEvent]
    ) -> tuple[str, str]:
        """PUBACK/PUBREC/PUBCOMP come from the receiver, PUBREL from the publisher (5.0 §4.3)."""
        publisher_to_server = to_server if ptype == codes.PUBREL else not to_server
        key = (publisher_to_server, msg.packet_id)
        entry = self.pending.get(key)
        name = codes.PACKET_TYPE_NAMES[ptype]
        if entry is None:
            out.append(
                self._anomaly(
                    ts,
                    "mqtt.unexpected_ack",
                    f"{name} for packet id {msg.packet_id} with no PUBLISH in flight (duplicate or missing)",
                    to_server,
                    severity=4,
                )
            )
            return "unmatched", ""
        qos, step, topic = entry
        failed = self.ctx.version == 5 and msg.code >= 0x80
        if ptype == codes.PUBACK:
            if qos != 1:
                out.append(self._anomaly(ts, "mqtt.wrong_ack", f"PUBACK for QoS {qos} packet", to_server))
            del self.pending[key]
            return "complete", topic
        if qos != 2:
            out.append(self._anomaly(ts, "mqtt.wrong_ack", f"{name} for QoS {qos} packet", to_server))
            del self.pending[key]
            return "complete", topic
        if ptype == codes.PUBREC:
            if step != _PUBLISHED:
                out.append(
                    self._anomaly(ts, "mqtt.duplicate_ack", f"PUBREC {msg.packet_id} repeated", to_server)
                )
            if failed:  # a PUBREC reason code >= 0x80 ends the flow (5.0 §4.3.3)
                del self.pending[key]
                return "refused", topic
            self.pending[key] = (qos, _RECEIVED, topic)
            return "awaiting_pubrel", topic
        if ptype == codes.PUBREL:
            if step == _PUBLISHED:
                out.append(
                    self._anomaly(
                        ts, "mqtt.missing_pubrec", f"PUBREL {msg.packet_id} before PUBREC", to_server
                    )
                )
            elif step == _RELEASED:
                out.append(
                    self._anomaly(ts, "mqtt.duplicate_ack", f"PUBREL {msg.packet_id} repeated", to_server)
                )
            self.pending[key] = (qos, _RELEASED, topic)
            return "awaiting_pubcomp", topic
        # PUBCOMP
        if step != _RELEASED:
            out.append(
                self._anomaly(ts, "mqtt.missing_pubrel", f"PUBCOMP {msg.packet_id} before PUBREL", to_server)
            )
        del self.pending[key]
        return "complete", topic

    # --- records --------------------------------------------------------------------------------

    def _event(
        self,
        ts: float,
        to_server: bool,
        ptype: int,
        msg: MqttMessage | None,
        *,
        malformed: str = "",
        truncated: bool = False,
        remaining_length: int = 0,
        qos_flow: str = "",
        matched_topic: str = "",
    ) -> MqttPacket:
        return MqttPacket(
            ts,
            self.flow,
            to_server,
            ptype,
            self.ctx.version,
            self.client_id,
            msg,
            malformed,
            truncated,
            remaining_length,
            qos_flow,
            matched_topic,
        )

    def _anomaly(
        self, ts: float, kind: str, detail: str, to_server: bool, severity: int = 3
    ) -> ProtocolAnomaly:
        return ProtocolAnomaly(ts, self.flow, kind, detail, to_server, severity, "mqtt")

    def _malformed(self, ts: float, exc: Malformed, to_server: bool) -> ProtocolAnomaly:
        kind = _REASON_KINDS.get(exc.reason, "mqtt.malformed")
        return self._anomaly(ts, kind, f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason, to_server)
