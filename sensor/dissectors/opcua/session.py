"""Per-flow OPC UA state: framing, secure channels, chunk reassembly, pairing and posture.

State machine of one direction (OPC 10000-6 §7.1 framing; DESIGN.md §3 resync rule)::

    state      | input                                   | action / next state
    -----------+-----------------------------------------+----------------------------------------------
    HUNT       | bytes that start a plausible header      | FRAMED (start of capture, after gap/garbage)
    HUNT       | no plausible header                      | drop all but the last 7 bytes, stay
    FRAMED     | header bad (U1/U11) or size > bound (U2) | anomaly, skip 1 byte, HUNT
    FRAMED     | header + size bytes buffered             | handle chunk, stay FRAMED
    any        | gap                                      | drop buffer + partial messages, HUNT

Secure channel (per SecureChannelId, §6.7)::

    OPN policy None              -> mode from the OPN request body (normally "None")
    OPN policy X, body encrypted -> mode unknown until a MSG: body decodes -> "Sign", else "SignAndEncrypt"
    MSG on an unknown channel    -> mid-stream: body decodes -> "None" (inferred), else "SignAndEncrypt"

Chunks of one message are collected by (SecureChannelId, RequestId) and joined in sequence-number
order on the F chunk; A drops them (§6.7.2.2). Caps: chunks and bytes per message (the lower of our
``Limits`` and the peer's HEL/ACK MaxChunkCount/MaxMessageSize), messages in flight per direction and
bytes held per direction; a hit is ``opcua.chunk_limit`` and the rest of that message is dropped.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sensor.certs import parse_certificate, split_der_chain
from sensor.dissectors.base import DissectorSession, Reader
from sensor.dissectors.opcua import codes
from sensor.dissectors.opcua.encoding import Decoder
from sensor.dissectors.opcua.events import OpcUaChannelEvent, OpcUaMessage, OpcUaTransport
from sensor.dissectors.opcua.frames import (
    parse_acknowledge,
    parse_asymmetric_header,
    parse_error,
    parse_hello,
    parse_message_header,
    parse_reverse_hello,
    parse_sequence_header,
    parse_symmetric_header,
)
from sensor.dissectors.opcua.services import ServiceBody, decode_service
from sensor.errors import Malformed, ParseError, Truncated
from sensor.limits import Limits
from sensor.records import AppEvent, CertificateObservation, FlowRef, ProtocolAnomaly

log = logging.getLogger(__name__)

_TYPE_NAMES = {t: t.decode() for t in codes.MESSAGE_TYPES}
_SECURE_MIN = 8 + 8  # header + SecureChannelId + TokenId (or the start of the asymmetric header)
MAX_DISCARDING = 256  # (channel, request) keys whose remaining chunks are dropped after a cap hit
SUMMARY_FLUSH = 10_000  # uncounted chunks after which a summary is emitted before the flow ends
HOST_TABLE_SIZE = 4096


class HostTracker:
    """Per-client-host counters shared by all sessions of one dissector (U13 and repeated failures).

    Bounded LRU of ``HOST_TABLE_SIZE`` hosts; losing an old host only resets its counters."""

    __slots__ = ("hosts",)

    def __init__(self) -> None:
        self.hosts: OrderedDict[str, Counter[str]] = OrderedDict()

    def get(self, host: str) -> Counter[str]:
        c = self.hosts.get(host)
        if c is None:
            c = Counter()
            self.hosts[host] = c
            if len(self.hosts) > HOST_TABLE_SIZE:
                self.hosts.popitem(last=False)
        else:
            self.hosts.move_to_end(host)
        return c


@dataclass(slots=True)
class _Partial:
    """Chunks of one message being reassembled."""

    message_type: str
    first_ts: float
    first_name: str  # service of the first chunk ("" when unknown)
    chunks: list[tuple[int, bytes]] = field(default_factory=list)
    size: int = 0


@dataclass(slots=True)
class _Direction:
    buf: bytearray = field(default_factory=bytearray)
    hunting: bool = True  # looking for a plausible header
    seen_data: bool = False
    bound: int = 0  # largest chunk accepted (0 = our cap only)
    max_chunks: int = 0  # peer's MaxChunkCount (0 = our cap only)
    max_message: int = 0  # peer's MaxMessageSize (0 = our cap only)
    partials: dict[tuple[int, int], _Partial] = field(default_factory=dict)
    partial_bytes: int = 0
    discarding: OrderedDict[tuple[int, int], None] = field(default_factory=OrderedDict)


@dataclass(slots=True)
class _Channel:
    channel_id: int
    policy: str = ""  # "" = not seen (mid-stream)
    mode: str = ""  # "" = not decided yet
    signature_size: int = 0
    none_flagged: bool = False
    encrypted_chunks: int = 0
    encrypted_bytes: int = 0


@dataclass(slots=True)
class _Pending:
    ts: float
    to_server: bool
    message_type: str
    channel_id: int
    request_id: int
    body: ServiceBody | None
    chunks: int
    aborted: bool = False


class OpcUaSession(DissectorSession):
    """One TCP connection carrying UA-TCP (OPC 10000-6 §7.1). Never raises on wire input."""

    def __init__(self, flow: FlowRef, limits: Limits, hosts: HostTracker | None = None) -> None:
        self.flow = flow
        self.limits = limits
        self.hosts = hosts if hosts is not None else HostTracker()
        self.dirs = {True: _Direction(), False: _Direction()}
        self.channels: dict[int, _Channel] = {}
        self.pending: OrderedDict[tuple[int, int], _Pending] = OrderedDict()
        self.pending_opn: _Pending | None = None  # encrypted OPN request awaiting its response
        self.opn_policy: dict[bool, str] = {}  # policy of the last OPN per direction (channel id 0)
        self.reverse = False  # True when the UA server opened the TCP connection (RHE, §7.1.2.6)
        self.uncounted: Counter[str] = Counter()
        self.seen_certs: set[tuple[str, str]] = set()
        self.flagged: set[str] = set()
        self.channel_limit_hit = False
        self.host_channels = 0
        self.out: list[AppEvent] = []
        self.ts = 0.0
        self.requested_mode = ""  # MessageSecurityMode asked for in the last plain-text OPN request
        # bound on one chunk regardless of what the peers negotiate
        self.hard_chunk_cap = max(
            codes.MIN_BUFFER_SIZE, min(limits.max_pdu_buffer, limits.opcua_max_message_size)
        )

    # --- DissectorSession ------------------------------------------------------------------------

    def feed(self, data: bytes, to_server: bool, ts: float) -> Sequence[AppEvent]:
        self.out = []
        self.ts = ts
        d = self.dirs[to_server]
        if data:
            d.buf += data
            try:
                self._drain(d, to_server)
            except Exception:  # a bug, never wire input: log it, drop the buffer, keep the flow alive
                log.exception("opcua session error on flow %s", self.flow.flow_id)
                d.buf.clear()
                d.hunting = True
                self._anomaly("opcua.internal_error", "", to_server)
        self._expire(ts)
        return self.out

    def gap(self, to_server: bool, size: int, ts: float) -> Sequence[AppEvent]:
        self.out = []
        self.ts = ts
        d = self.dirs[to_server]
        d.buf.clear()
        d.hunting = True
        for p in d.partials.values():
            self.uncounted[p.message_type] += len(p.chunks)
        d.partials.clear()
        d.partial_bytes = 0
        return self.out

    def close(self, ts: float) -> Sequence[AppEvent]:
        self.out = []
        self.ts = ts
        for d in self.dirs.values():
            for p in d.partials.values():
                self.uncounted[p.message_type] += len(p.chunks)
            d.partials.clear()
        for key in list(self.pending):
            self._emit_unanswered(self.pending.pop(key))
        if self.pending_opn is not None:
            self._emit_unanswered(self.pending_opn)
            self.pending_opn = None
        self._flush_summary(ts)
        if self.host_channels:
            self.hosts.get(self.flow.client_ip)["channels"] -= self.host_channels
            self.host_channels = 0
        return self.out

    # --- framing ---------------------------------------------------------------------------------

    def _bound(self, d: _Direction) -> int:
        return min(d.bound, self.hard_chunk_cap) if d.bound else self.hard_chunk_cap

    def _plausible_at(self, buf: bytearray, i: int, bound: int) -> bool:
        if len(buf) - i < 8:
            return False
        mtype = bytes(buf[i : i + 3])
        if mtype not in codes.MESSAGE_TYPES or buf[i + 3] not in codes.CHUNK_TYPES:
            return False
        size = int.from_bytes(buf[i + 4 : i + 8], "little")
        minimum = _SECURE_MIN + 8 if mtype in codes.SECURE_MESSAGE_TYPES else 8
        return minimum <= size <= bound

    def _hunt(self, d: _Direction, to_server: bool) -> bool:
        """Find the next plausible header; drop what precedes it. False when none is buffered yet."""
        buf = d.buf
        bound = self._bound(d)
        start = 0
        while True:
            best = -1
            for t in codes.MESSAGE_TYPES:
                i = buf.find(t, start)
                if i >= 0 and (best < 0 or i < best):
                    best = i
            if best < 0:
                keep = min(len(buf), 7)
                del buf[: len(buf) - keep]
                return False
            if len(buf) - best < 8:
                del buf[:best]
                return False
            if self._plausible_at(buf, best, bound):
                del buf[:best]
                d.hunting = False
                return True
            start = best + 1

    def _drain(self, d: _Direction, to_server: bool) -> None:
        buf = d.buf
        pos = 0
        while True:
            if d.hunting:
                if pos:
                    del buf[:pos]
                    pos = 0
                if not self._hunt(d, to_server):
                    return
            if len(buf) - pos < 8:
                break
            try:
                hdr = parse_message_header(buf, pos)
            except Malformed as exc:
                self._anomaly("opcua." + exc.reason, exc.detail, to_server)
                pos += 1
                d.hunting = True
                continue
            except Truncated:
                break
            bound = self._bound(d)
            minimum = _SECURE_MIN + 8 if hdr.message_type in codes.SECURE_MESSAGE_TYPES else 8
            if hdr.size > bound or hdr.size < minimum:
                self._anomaly(
                    "opcua.bad_message_size", f"{_TYPE_NAMES[hdr.message_type]} size {hdr.size}", to_server
                )
                pos += 1
                d.hunting = True
                continue
            if len(buf) - pos < hdr.size:
                break
            chunk = bytes(buf[pos : pos + hdr.size])
            pos += hdr.size
            d.seen_data = True
            try:
                self._chunk(hdr.message_type, hdr.chunk_type, chunk, to_server)
            except ParseError as exc:
                reason = exc.reason if isinstance(exc, Malformed) else "truncated_chunk"
                self._anomaly("opcua." + reason, str(exc)[:200], to_server)
                self.uncounted[_TYPE_NAMES[hdr.message_type]] += 1
        if pos:
            del buf[:pos]

    # --- chunks ----------------------------------------------------------------------------------

    def _chunk(self, mtype: bytes, chunk_type: int, chunk: bytes, to_server: bool) -> None:
        r = Reader(chunk, 8)
        name = _TYPE_NAMES[mtype]
        if mtype == codes.MSG_MSG or mtype == codes.MSG_CLO:
            self._secure_chunk(name, chunk_type, chunk, r, to_server)
        elif mtype == codes.MSG_OPN:
            self._opn_chunk(chunk_type, chunk, r, to_server)
        elif mtype == codes.MSG_HEL:
            hel = parse_hello(r)
            if not to_server and not self.dirs[True].seen_data:
                self.reverse = True
            client, server = self.dirs[self._ua_client_dir()], self.dirs[not self._ua_client_dir()]
            # chunks the client sends are bounded by its SendBufferSize, those it receives by its
            # ReceiveBufferSize; the ACK revises both (we take the larger, to stay lenient).
            client.bound = max(client.bound, hel.send_buffer_size)
            server.bound = max(server.bound, hel.receive_buffer_size)
            server.max_message = hel.max_message_size
            server.max_chunks = hel.max_chunk_count
            fields = {
                "protocol_version": hel.protocol_version,
                "receive_buffer_size": hel.receive_buffer_size,
                "send_buffer_size": hel.send_buffer_size,
                "max_message_size": hel.max_message_size,
                "max_chunk_count": hel.max_chunk_count,
                "endpoint_url": self._clip(hel.endpoint_url),
            }
            self._transport("HEL", to_server, fields)
        elif mtype == codes.MSG_ACK:
            ack = parse_acknowledge(r)
            client, server = self.dirs[self._ua_client_dir()], self.dirs[not self._ua_client_dir()]
            client.bound = max(client.bound, ack.receive_buffer_size)
            server.bound = max(server.bound, ack.send_buffer_size)
            client.max_message = ack.max_message_size
            client.max_chunks = ack.max_chunk_count
            fields = {
                "protocol_version": ack.protocol_version,
                "receive_buffer_size": ack.receive_buffer_size,
                "send_buffer_size": ack.send_buffer_size,
                "max_message_size": ack.max_message_size,
                "max_chunk_count": ack.max_chunk_count,
            }
            self._transport("ACK", to_server, fields)
        elif mtype == codes.MSG_ERR:
            err = parse_error(r, self.limits.max_field_chars)
            status = codes.status_name(err.error)
            self._transport("ERR", to_server, {"error": status, "reason": err.reason})
            self._count_result(status, to_server)
        elif mtype == codes.MSG_RHE:
            rhe = parse_reverse_hello(r)
            if to_server and not self.dirs[False].seen_data:
                self.reverse = True
            fields = {"server_uri": self._clip(rhe.server_uri), "endpoint_url": self._clip(rhe.endpoint_url)}
            self._transport("RHE", to_server, fields)

    def _ua_client_dir(self) -> bool:
        """Flow direction (to_server value) in which the OPC UA client sends."""
        return not self.reverse

    def _is_from_ua_server(self, to_server: bool) -> bool:
        return to_server == self.reverse

    def _opn_chunk(self, chunk_type: int, chunk: bytes, r: Reader, to_server: bool) -> None:
        """OPN (§6.7.2.3): certificates are observed; the body is decoded when the policy is None."""
        hdr = parse_asymmetric_header(r)
        policy = self._clip(hdr.security_policy_uri) or ""
        from_server = self._is_from_ua_server(to_server)
        if hdr.sender_certificate:
            self._observe_chain(hdr.sender_certificate, "opcua.opn", from_server, to_server, None)
        if policy in codes.DEPRECATED_POLICIES:
            self._flag_once("opcua.deprecated_policy", policy, policy, to_server, severity=2)
        if hdr.secure_channel_id:
            ch = self._channel(hdr.secure_channel_id, to_server)
            if ch is not None and policy and ch.policy != policy:
                ch.policy = policy
                ch.signature_size = codes.SYMMETRIC_SIGNATURE_SIZES.get(policy, 0)
        self.opn_policy[to_server] = policy
        if policy and policy != codes.POLICY_NONE:
            self._encrypted_opn(chunk_type, hdr.secure_channel_id, policy, to_server)
            return
        seq = parse_sequence_header(r)
        self._reassemble(
            "OPN", chunk_type, hdr.secure_channel_id, seq.sequence_number, seq.request_id, r, to_server
        )

    def _encrypted_opn(self, chunk_type: int, channel_id: int, policy: str, to_server: bool) -> None:
        """An asymmetrically encrypted OPN: its sequence header is hidden, so pair by order."""
        from_server = self._is_from_ua_server(to_server)
        if chunk_type != ord("F"):
            self.uncounted["OPN"] += 1
            return
        if not from_server:
            if self.pending_opn is not None:
                self._emit_unanswered(self.pending_opn)
            self.pending_opn = _Pending(self.ts, to_server, "OPN", channel_id, 0, None, 1)
            return
        req = self.pending_opn
        self.pending_opn = None
        ch = self.channels.get(channel_id)
        mode = ch.mode if ch else ""
        self.out.append(
            OpcUaMessage(
                ts=self.ts,
                flow=self.flow,
                to_server=req.to_server if req else not to_server,
                message_type="OPN",
                secure_channel_id=channel_id,
                request_id=None,
                service="OpenSecureChannel",
                request_type_id=None,
                response_type_id=None,
                request_handle=None,
                status=None,
                security_policy=policy,
                security_mode=mode,
                request=None,
                response=None,
                chunks=(("OPN", 1 + (1 if req else 0)),),
                policies=(policy,),
                encrypted=True,
                reverse_connect=self.reverse,
            )
        )

    def _secure_chunk(self, name: str, chunk_type: int, chunk: bytes, r: Reader, to_server: bool) -> None:
        """MSG / CLO (§6.7.2.4)."""
        sym = parse_symmetric_header(r)
        ch = self._channel(sym.secure_channel_id, to_server)
        if ch is None:
            self.uncounted[name] += 1
            return
        if ch.mode == codes.MODE_SIGN_ENCRYPT:
            self._count_encrypted(ch, name, len(chunk))
            return
        if ch.mode == codes.MODE_SIGN and ch.signature_size and chunk_type != ord("A"):
            # drop the trailing signature so that joined chunks form the plain body
            r.end = max(r.pos, r.end - ch.signature_size)
        if r.remaining < 8:
            raise Truncated("sequence header")
        seq = parse_sequence_header(r)
        key = (sym.secure_channel_id, seq.request_id)
        d = self.dirs[to_server]
        if not ch.mode:
            # The first chunk of a message starts with a service NodeId if the body is plain text.
            if key in d.partials or not self._looks_plain(chunk, r.pos):
                if key not in d.partials:
                    self._decide_mode(ch, codes.MODE_SIGN_ENCRYPT, "encrypted", to_server)
                    self._count_encrypted(ch, name, len(chunk))
                    return
            else:
                if ch.policy and ch.policy != codes.POLICY_NONE:
                    self._decide_mode(ch, codes.MODE_SIGN, "decoded", to_server)
                    if ch.signature_size and chunk_type != ord("A"):
                        r.end = max(r.pos, r.end - ch.signature_size)
                else:
                    self._decide_mode(ch, codes.MODE_NONE, "decoded" if ch.policy else "inferred", to_server)
        self._reassemble(
            name, chunk_type, sym.secure_channel_id, seq.sequence_number, seq.request_id, r, to_server
        )

    @staticmethod
    def _looks_plain(chunk: bytes, pos: int) -> bool:
        """Does a service encoding NodeId start at ``pos``? (four-byte or numeric form, namespace 0)."""
        if len(chunk) - pos < 4:
            return False
        form = chunk[pos]
        if form == 0x01 and chunk[pos + 1] == 0:
            ident = int.from_bytes(chunk[pos + 2 : pos + 4], "little")
        elif form == 0x02 and len(chunk) - pos >= 7 and chunk[pos + 1] == 0 and chunk[pos + 2] == 0:
            ident = int.from_bytes(chunk[pos + 3 : pos + 7], "little")
        elif form == 0x00:
            ident = chunk[pos + 1]
        else:
            return False
        return codes.is_service_encoding(ident)

    def _count_encrypted(self, ch: _Channel, name: str, size: int) -> None:
        ch.encrypted_chunks += 1
        ch.encrypted_bytes += size
        self.uncounted[name] += 1
        if sum(self.uncounted.values()) >= SUMMARY_FLUSH:
            self._flush_summary(self.ts)

    def _channel(self, channel_id: int, to_server: bool) -> _Channel | None:
        ch = self.channels.get(channel_id)
        if ch is not None:
            return ch
        host = self.hosts.get(self.flow.client_ip)
        cap = self.limits.opcua_max_channels_per_host
        if len(self.channels) >= cap or host["channels"] >= cap:
            if not self.channel_limit_hit:
                self.channel_limit_hit = True
                self._anomaly(
                    "opcua.channel_limit", f"more than {cap} secure channels", to_server, severity=2
                )
            return None
        ch = _Channel(channel_id)
        self.channels[channel_id] = ch
        host["channels"] += 1
        self.host_channels += 1
        return ch

    def _decide_mode(self, ch: _Channel, mode: str, source: str, to_server: bool) -> None:
        if ch.mode == mode:
            return
        ch.mode = mode
        self.out.append(
            OpcUaChannelEvent(
                ts=self.ts,
                flow=self.flow,
                kind="mode",
                secure_channel_id=ch.channel_id,
                security_policy=ch.policy,
                security_mode=mode,
                mode_source=source,
                to_server=to_server,
            )
        )

    # --- reassembly ------------------------------------------------------------------------------

    def _reassemble(
        self,
        name: str,
        chunk_type: int,
        channel_id: int,
        seq: int,
        request_id: int,
        r: Reader,
        to_server: bool,
    ) -> None:
        d = self.dirs[to_server]
        key = (channel_id, request_id)
        if key in d.discarding:
            self.uncounted[name] += 1
            if chunk_type != ord("C"):
                del d.discarding[key]
            return
        part = d.partials.get(key)
        payload = bytes(r.buf[r.pos : r.end])
        if chunk_type == ord("A"):
            self._abort(d, key, part, name, payload, to_server)
            return
        if part is None:
            if chunk_type == ord("F"):
                self._message(name, channel_id, request_id, payload, 1, to_server, self.ts)
                return
            if len(d.partials) >= self.limits.opcua_max_messages_in_flight:
                self._discard(d, key, name, 1, "messages in flight", to_server)
                return
            first = self._first_name(payload)
            part = _Partial(name, self.ts, first)
            d.partials[key] = part
        max_chunks = self.limits.opcua_max_chunk_count
        if d.max_chunks:
            max_chunks = min(max_chunks, d.max_chunks)
        max_bytes = self.limits.opcua_max_message_size
        if d.max_message:
            max_bytes = min(max_bytes, d.max_message)
        if (
            len(part.chunks) + 1 > max_chunks
            or part.size + len(payload) > max_bytes
            or d.partial_bytes + len(payload) > self.limits.opcua_max_message_size
        ):
            del d.partials[key]
            d.partial_bytes -= part.size
            what = f"{len(part.chunks) + 1} chunks / {part.size + len(payload)} bytes"
            self._discard(d, key, name, len(part.chunks) + 1, what, to_server, final=chunk_type == ord("F"))
            return
        part.chunks.append((seq, payload))
        part.size += len(payload)
        d.partial_bytes += len(payload)
        if chunk_type == ord("F"):
            del d.partials[key]
            d.partial_bytes -= part.size
            base = part.chunks[0][0]
            # distance from the first chunk seen, within +-2**31, so a wrapped counter still sorts
            part.chunks.sort(key=lambda c: (c[0] - base + 0x80000000) & 0xFFFFFFFF)
            body = b"".join(p for _s, p in part.chunks)
            self._message(name, channel_id, request_id, body, len(part.chunks), to_server, part.first_ts)

    def _discard(
        self,
        d: _Direction,
        key: tuple[int, int],
        name: str,
        chunks: int,
        what: str,
        to_server: bool,
        final: bool = False,
    ) -> None:
        self.uncounted[name] += chunks
        self._anomaly("opcua.chunk_limit", what, to_server, severity=2)
        if not final:
            d.discarding[key] = None
            if len(d.discarding) > MAX_DISCARDING:
                d.discarding.popitem(last=False)

    @staticmethod
    def _first_name(payload: bytes) -> str:
        try:
            _ns, ident, _t = Decoder(Reader(payload)).nodeid_parts()
        except ParseError:
            return ""
        return (codes.encoding_name(ident) or "") if ident is not None else ""

    def _abort(
        self,
        d: _Direction,
        key: tuple[int, int],
        part: _Partial | None,
        name: str,
        payload: bytes,
        to_server: bool,
    ) -> None:
        """Abort chunk (§6.7.3): Error StatusCode | Reason String; the partial message is dropped."""
        chunks = 1
        first = ""
        if part is not None:
            del d.partials[key]
            d.partial_bytes -= part.size
            chunks += len(part.chunks)
            first = part.first_name
        reason = ""
        try:
            rr = Reader(payload)
            status = codes.status_name(rr.u32le())
            reason = f"{status}"
        except ParseError:
            status = None
        channel_id, request_id = key
        is_request = first.endswith("Request") if first else not self._is_from_ua_server(to_server)
        if is_request:
            pend = _Pending(self.ts, to_server, name, channel_id, request_id, None, chunks, aborted=True)
            self._emit_unanswered(pend, status=status)
            return
        req = self.pending.pop(key, None)
        self._emit_pair(
            req, None, channel_id, request_id, name, chunks, to_server, aborted=True, status=status
        )
        log.debug("opcua abort %s", reason)

    # --- messages --------------------------------------------------------------------------------

    def _message(
        self,
        name: str,
        channel_id: int,
        request_id: int,
        body: bytes,
        chunks: int,
        to_server: bool,
        ts: float,
    ) -> None:
        ch = self.channels.get(channel_id)
        lim = self.limits
        dec = Decoder(
            Reader(body),
            max_depth=lim.opcua_max_nesting,
            max_array=lim.opcua_max_array_elements,
            max_chars=lim.max_field_chars,
        )
        try:
            svc = decode_service(dec, ch.mode if ch else "")
        except ParseError as exc:
            reason = exc.reason if isinstance(exc, Malformed) else "truncated"
            self._anomaly("opcua." + reason, f"{name} channel {channel_id} request {request_id}", to_server)
            self.uncounted[name] += chunks
            return
        if svc.error and svc.error != "truncated":
            self._anomaly("opcua." + svc.error, f"in {svc.name}", to_server)
        elif svc.error:
            self._anomaly("opcua.truncated_body", f"in {svc.name}", to_server, severity=4)
        if svc.bad_utf8:
            self._anomaly("opcua.bad_utf8", f"in {svc.name}", to_server, severity=4)
        if svc.bad_matrix:
            self._anomaly(
                "opcua.bad_matrix", f"ArrayDimensions rejected in {svc.name}", to_server, severity=4
            )
        self._inspect(svc, ch, to_server)
        if name == "OPN" and svc.name == "OpenSecureChannelResponse":
            new_id = svc.fields.get("channel_id")
            if isinstance(new_id, int) and new_id:
                nch = self._channel(new_id, to_server)
                if nch is not None and not nch.policy:
                    nch.policy = self.opn_policy.get(to_server, "") or codes.POLICY_NONE
        if svc.is_request:
            if name == "OPN":
                mode = svc.fields.get("security_mode")
                self.requested_mode = mode if isinstance(mode, str) else ""
            pend = _Pending(ts, to_server, name, channel_id, request_id, svc, chunks)
            if name == "CLO" or svc.name == "CloseSecureChannelRequest":
                self._emit_unanswered(pend)
                self._flush_summary(ts)
                return
            key = (channel_id, request_id)
            old = self.pending.pop(key, None)
            if old is not None:
                self._emit_unanswered(old)
            self.pending[key] = pend
            if len(self.pending) > self.limits.max_pending_transactions:
                _k, oldest = self.pending.popitem(last=False)
                self._emit_unanswered(oldest)
            return
        req = self.pending.pop((channel_id, request_id), None)
        if req is None and name == "OPN":
            # an Issue request travels on channel 0; the response names the new channel (§6.7.4)
            req = self.pending.pop((0, request_id), None)
        if name == "OPN" and svc.name == "OpenSecureChannelResponse":
            new_id = svc.fields.get("channel_id")
            if isinstance(new_id, int) and new_id:
                nch = self.channels.get(new_id)
                requested = self.requested_mode
                if nch is not None and requested in (
                    codes.MODE_NONE,
                    codes.MODE_SIGN,
                    codes.MODE_SIGN_ENCRYPT,
                ):
                    self._decide_mode(nch, requested, "opn", to_server)
        self._emit_pair(req, svc, channel_id, request_id, name, chunks, to_server)

    def _emit_pair(
        self,
        req: _Pending | None,
        resp: ServiceBody | None,
        channel_id: int,
        request_id: int,
        name: str,
        chunks: int,
        to_server: bool,
        aborted: bool = False,
        status: str | None = None,
    ) -> None:
        ch = self.channels.get(channel_id)
        rbody = req.body if req else None
        counts: Counter[str] = Counter({name: chunks})
        if req is not None:
            counts[req.message_type] += req.chunks
        service = (rbody.service if rbody else "") or (resp.service if resp else "")
        if resp is not None and resp.service_result is not None:
            status = codes.status_name(resp.service_result)
        policies = self._policies(ch, rbody, resp)
        self.out.append(
            OpcUaMessage(
                ts=self.ts,
                flow=self.flow,
                to_server=req.to_server if req else not to_server,
                message_type=req.message_type if req else name,
                secure_channel_id=channel_id,
                request_id=request_id,
                service=service,
                request_type_id=rbody.type_id if rbody else None,
                response_type_id=resp.type_id if resp else None,
                request_handle=(rbody.request_handle if rbody else None)
                if rbody
                else (resp.request_handle if resp else None),
                status=status,
                security_policy=ch.policy if ch else "",
                security_mode=ch.mode if ch else "",
                request=rbody.fields if rbody else None,
                response=resp.fields if resp else None,
                chunks=tuple(sorted(counts.items())),
                policies=policies,
                aborted=aborted or bool(req and req.aborted),
                reverse_connect=self.reverse,
            )
        )

    def _emit_unanswered(self, req: _Pending, status: str | None = None) -> None:
        ch = self.channels.get(req.channel_id)
        body = req.body
        self.out.append(
            OpcUaMessage(
                ts=req.ts,
                flow=self.flow,
                to_server=req.to_server,
                message_type=req.message_type,
                secure_channel_id=req.channel_id,
                request_id=req.request_id if body is not None or req.aborted else None,
                service=body.service if body else ("OpenSecureChannel" if req.message_type == "OPN" else ""),
                request_type_id=body.type_id if body else None,
                response_type_id=None,
                request_handle=body.request_handle if body else None,
                status=status,
                security_policy=ch.policy if ch else (self.opn_policy.get(req.to_server, "")),
                security_mode=ch.mode if ch else "",
                request=body.fields if body else None,
                response=None,
                chunks=((req.message_type, req.chunks),),
                policies=self._policies(ch, body, None),
                encrypted=body is None and not req.aborted,
                aborted=req.aborted,
                reverse_connect=self.reverse,
            )
        )

    def _policies(self, ch: _Channel | None, *bodies: ServiceBody | None) -> tuple[str, ...]:
        out: set[str] = set()
        if ch is not None and ch.policy:
            out.add(ch.policy)
        for b in bodies:
            if b is not None:
                out.update(p for _m, p, _t in b.advertised if p)
        return tuple(sorted(out))

    def _expire(self, now: float) -> None:
        timeout = self.limits.transaction_timeout
        while self.pending:
            key, oldest = next(iter(self.pending.items()))
            if now - oldest.ts <= timeout:
                break
            del self.pending[key]
            self._emit_unanswered(oldest)

    def _flush_summary(self, ts: float) -> None:
        if not self.uncounted and not any(c.encrypted_chunks for c in self.channels.values()):
            return
        enc_chunks = sum(c.encrypted_chunks for c in self.channels.values())
        enc_bytes = sum(c.encrypted_bytes for c in self.channels.values())
        self.out.append(
            OpcUaChannelEvent(
                ts=ts,
                flow=self.flow,
                kind="summary",
                secure_channel_id=None,
                uncounted_chunks=tuple(sorted(self.uncounted.items())),
                encrypted_chunks=enc_chunks,
                encrypted_bytes=enc_bytes,
            )
        )
        self.uncounted.clear()
        for c in self.channels.values():
            c.encrypted_chunks = 0
            c.encrypted_bytes = 0

    # --- security posture ------------------------------------------------------------------------

    def _inspect(self, svc: ServiceBody, ch: _Channel | None, to_server: bool) -> None:
        service = svc.service
        plain_session = service not in codes.DISCOVERY_SERVICES and service != "ServiceFault"
        if ch is not None and ch.policy == codes.POLICY_NONE and not ch.none_flagged and plain_session:
            ch.none_flagged = True
            self._anomaly(
                "opcua.security_mode_none", f"{service} on channel {ch.channel_id}", to_server, severity=2
            )
        from_server = self._is_from_ua_server(to_server)
        for source, der, app_uri, presenter_is_server in svc.certificates:
            self._observe_chain(der, source, presenter_is_server, to_server, app_uri)
        for mode, policy, tokens in svc.advertised:
            if mode == codes.MODE_NONE:
                self._flag_once(
                    "opcua.security_mode_none_advertised", "", "endpoint with mode None", to_server
                )
            if policy in codes.DEPRECATED_POLICIES:
                self._flag_once(
                    "opcua.deprecated_policy", policy, f"advertised {policy}", to_server, severity=2
                )
            if "Anonymous" in tokens:
                self._flag_once(
                    "opcua.anonymous_token_advertised", "", "anonymous user token policy", to_server
                )
        token = svc.fields.get("user_identity_token")
        if isinstance(token, dict):
            kind = token.get("token_type")
            if kind == "Anonymous":
                self._flag_once(
                    "opcua.anonymous_login", "", "ActivateSession with an anonymous token", to_server
                )
            elif kind == "UserName" and not token.get("password_encrypted") and token.get("password_bytes"):
                user = str(token.get("user_name"))
                self._flag_once("opcua.cleartext_password", user, f"user {user!r}", to_server, severity=1)
        if svc.service_result is not None and from_server:
            self._count_result(codes.status_name(svc.service_result), to_server)
        results = svc.fields.get("results") if svc.name == "ActivateSessionResponse" else None
        if isinstance(results, list):
            for status in results:
                if isinstance(status, str):
                    self._count_result(status, to_server)

    def _count_result(self, status: str, to_server: bool) -> None:
        if status.startswith("BadCertificate") or status == "BadSecurityChecksFailed":
            kind = "opcua.repeated_bad_certificate"
        elif status in codes.BAD_USER_ACCESS_CODES:
            kind = "opcua.repeated_bad_user_access"
        else:
            return
        host = self.hosts.get(self.flow.client_ip)
        host[kind] += 1
        n = host[kind]
        if n == codes.REPEATED_RESULT_THRESHOLD or (n > codes.REPEATED_RESULT_THRESHOLD and n % 100 == 0):
            self._anomaly(kind, f"{n} x {status} for client {self.flow.client_ip}", to_server, severity=2)

    def _observe_chain(
        self, blob: bytes, source: str, presenter_is_server: bool, to_server: bool, app_uri: str | None
    ) -> None:
        ders = split_der_chain(blob, self.limits.tls_max_certificates)
        if not ders:
            self._anomaly("opcua.bad_certificate", f"{source}: not DER", to_server)
            return
        for index, der in enumerate(ders):
            try:
                info = parse_certificate(der)
            except Malformed as exc:
                self._anomaly("opcua.bad_certificate", f"{source}: {exc.detail[:100]}", to_server)
                continue
            if (source, info.sha256) not in self.seen_certs:
                self.seen_certs.add((source, info.sha256))
                self.out.append(
                    CertificateObservation(
                        ts=self.ts,
                        flow=self.flow,
                        source=source,
                        presenter_is_server=presenter_is_server,
                        cert=info,
                        der=der,
                        app_proto="opcua",
                        chain_index=index,
                    )
                )
            if index:
                continue
            sha = info.sha1
            if info.self_signed:
                self._flag_once("opcua.cert_self_signed", sha, info.subject, to_server, severity=3)
            if info.not_after and self._iso_ts(info.not_after) < self.ts:
                self._flag_once(
                    "opcua.cert_expired", sha, f"{info.subject} expired {info.not_after}", to_server, 2
                )
            if info.not_before and self._iso_ts(info.not_before) > self.ts:
                detail = f"{info.subject} valid from {info.not_before}"
                self._flag_once("opcua.cert_not_yet_valid", sha, detail, to_server, 2)
            if (info.key_type == "rsa" and info.key_size < 2048) or (
                info.key_type == "ec" and info.key_size < 256
            ):
                detail = f"{info.subject} {info.key_type} {info.key_size} bits"
                self._flag_once("opcua.cert_short_key", sha, detail, to_server, 2)
            if app_uri and app_uri not in info.san_uris:
                detail = f"ApplicationUri {app_uri!r} not in SAN URIs {list(info.san_uris)[:4]}"
                self._flag_once("opcua.cert_uri_mismatch", sha + app_uri, detail, to_server, 2)

    @staticmethod
    def _iso_ts(text: str) -> float:
        from datetime import datetime

        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            return 0.0

    # --- helpers ---------------------------------------------------------------------------------

    def _clip(self, text: str | None) -> str | None:
        return None if text is None else text[: self.limits.max_field_chars]

    def _transport(self, mtype: str, to_server: bool, fields: dict[str, Any]) -> None:
        self.out.append(OpcUaTransport(self.ts, self.flow, to_server, mtype, fields, self.reverse))

    def _flag_once(self, kind: str, key: str, detail: str, to_server: bool, severity: int = 3) -> None:
        token = kind + "\x00" + key
        if token in self.flagged:
            return
        if len(self.flagged) < 1024:
            self.flagged.add(token)
        self._anomaly(kind, detail, to_server, severity)

    def _anomaly(self, kind: str, detail: str, to_server: bool, severity: int = 3) -> None:
        self.out.append(
            ProtocolAnomaly(
                ts=self.ts,
                flow=self.flow,
                kind=kind,
                detail=detail[: self.limits.max_field_chars],
                to_server=to_server,
                severity=severity,
                app_proto="opcua",
            )
        )
