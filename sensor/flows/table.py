"""The flow table: bidirectional flows keyed by 5-tuple, bounded, timed out in packet time.

Flow key: ``(ip_version, proto, lower (address, port), higher (address, port))``. The address
family is part of the key, so an IPv4 and an IPv6 flow never share state however their address
bytes compare (HOSTILE_INPUTS T10).

Orientation (``FlowRef`` is client -> server):

1. the sender of a SYN is the client; the sender of a SYN+ACK seen first is the server;
2. otherwise (mid-stream pickup, UDP, other protocols): a port in ``server_ports`` marks the
   server; if both or neither are, the lower port is the server; equal ports make the first
   sender the client.

Lifecycle and outputs, per packet (``track``):

==================  ===========================================================================
TCP / UDP payload   ``StreamData`` (TCP: in-order bytes per direction, see ``flows/tcp.py``;
                    UDP: one per non-empty datagram); ``StreamGap`` and ``ProtocolAnomaly``
                    (``tcp.overlap_diff``, ``tcp.suspicious_rst``) from reassembly
FIN both ways, RST  the flow moves to the *closed* state and lingers ``tcp_closed_timeout`` seconds
                    (packet time) so trailing ACKs and retransmitted FINs do not create a new
                    flow; then ``StreamClosed(reason "fin"/"rst")`` and ``FlowSummary``. A new
                    SYN on a closed flow's tuple (port reuse) ends it at once.
idle timeout        ``StreamClosed("timeout")`` + ``FlowSummary`` from ``expire``
table full          the least recently used flow is evicted (``"evicted"``), closed flows first,
                    then unestablished ones, then the oldest of the rest
``flush``           every flow ends: closed ones with their own reason, the others ``"shutdown"``
==================  ===========================================================================

A TCP flow is *established* once the three-way handshake completed, or (mid-stream pickup) once
any payload byte was delivered in either direction or both ends sent packets without any SYN seen
(e.g. an idle connection exchanging only keep-alives). Unestablished flows are the first to go
in EMERGENCY MODE: when a new flow would bring the table above ``limits.emergency_flows``,
``flow.emergency_entered`` is counted and every new flow first evicts the least recently used
closed or unestablished flow; the mode ends when the table falls below 80 % of that
threshold (HOSTILE_INPUTS T4, the Suricata flow-memcap idea).

Timeouts: each flow sits in one of four ``OrderedDict`` queues (unestablished, established,
closed, UDP/other), ordered by last activity; a packet moves its flow to the end of its queue,
so ``expire`` only looks at queue heads and is cheap on 200 k flows.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import struct
from collections.abc import Callable
from typing import Any

from sensor.flows.community import community_id
from sensor.flows.tcp import SEQ_MASK, FlowOutput, ReassemblyContext, TcpStream, tcp_option, window_scale
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import (
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    FlowRef,
    FlowSummary,
    Packet,
    ProtocolAnomaly,
    StreamClosed,
    StreamData,
    format_ip,
    format_mac,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_SERVER_PORTS", "TRANSPORT_NAMES", "Flow", "FlowOutput", "FlowTable"]

DEFAULT_SERVER_PORTS: frozenset[int] = frozenset(
    {502, 802, 4840, 4843, 1883, 8883, 443, 102, 20000, 44818, 2222, 47808, 2404, 34962, 34963, 34964,
     80, 8080, 5020, 1502}
)  # fmt: skip

TRANSPORT_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp",
                   89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp"}  # fmt: skip

_Q_UNESTABLISHED = 0
_Q_ESTABLISHED = 1
_Q_CLOSED = 2
_Q_OTHER = 3  # UDP and port-less protocols
_EMERGENCY_RECOVERY = 0.8
_MIN_RST_WINDOW = 65535
# NamedTuple construction through tuple.__new__ skips the generated __new__ (about 3x cheaper)
_new_stream_data: Callable[[type[StreamData], tuple[Any, ...]], StreamData] = tuple.__new__
_PORT = struct.Struct("!H")
_TS = struct.Struct("!d")

FlowKey = tuple[int, int, bytes, int, bytes, int]


class Flow:
    """State of one bidirectional flow."""

    __slots__ = (
        "bytes_c",
        "bytes_s",
        "client_addr",
        "client_port",
        "client_stream",
        "close_reason",
        "handshake",
        "isn",
        "key",
        "last",
        "pkts_c",
        "pkts_s",
        "queue",
        "ref",
        "server_stream",
        "start",
    )

    def __init__(self, key: FlowKey, ref: FlowRef, client_addr: bytes, client_port: int, ts: float) -> None:
        self.key = key
        self.ref = ref
        self.client_addr = client_addr
        self.client_port = client_port
        self.start = ts
        self.last = ts
        self.pkts_c = 0
        self.pkts_s = 0
        self.bytes_c = 0
        self.bytes_s = 0
        self.queue = _Q_OTHER
        self.close_reason = ""
        self.handshake = 0  # bit 1: client SYN, bit 2: server SYN+ACK
        self.isn = -1  # sequence number of the client's SYN, to tell a retransmitted SYN from port reuse
        # TCP only: bytes the client sends (to_server) and bytes the server sends
        self.client_stream: TcpStream | None = None
        self.server_stream: TcpStream | None = None


class FlowTable:
    """Tracks flows and reassembles TCP; see the module docstring for the outputs."""

    def __init__(
        self, limits: Limits = DEFAULT_LIMITS, server_ports: frozenset[int] = DEFAULT_SERVER_PORTS
    ) -> None:
        self.limits = limits
        self.server_ports = server_ports
        self.counters: collections.Counter[str] = collections.Counter()
        self.total_flows = 0
        self._flows: dict[FlowKey, Flow] = {}
        self._queues: tuple[collections.OrderedDict[FlowKey, Flow], ...] = tuple(
            collections.OrderedDict() for _ in range(4)
        )
        self._ctx = ReassemblyContext(limits, self.counters)
        self._emergency = False

    def __len__(self) -> int:
        return len(self._flows)

    @property
    def reassembly_bytes(self) -> int:
        """Out-of-order bytes currently queued by all streams (bounded by the memcap)."""
        return self._ctx.used

    @property
    def emergency(self) -> bool:
        return self._emergency

    # --- per packet ------------------------------------------------------------------------------

    def track(self, pkt: Packet) -> list[FlowOutput]:
        """Account one packet to its flow; return what it produced, in order."""
        (ts, version, src, dst, proto, sport, dport, payload, wire_len, seq, ack, flags, window,
         _options, _src_mac, _dst_mac, _vlans, _tunnel) = pkt  # fmt: skip
        if src < dst or (src == dst and sport <= dport):
            key = (version, proto, src, sport, dst, dport)
        else:
            key = (version, proto, dst, dport, src, sport)
        out: list[FlowOutput] = []
        flow = self._flows.get(key)
        if flow is None:
            flow = self._create(key, pkt, out)
        elif (
            flow.queue == _Q_CLOSED
            and flags & TCP_SYN
            and not flags & TCP_ACK
            and proto == PROTO_TCP
            and seq != flow.isn
        ):
            self._finish(flow, flow.close_reason, ts, out)  # the tuple is reused by a new connection
            flow = self._create(key, pkt, out)
        to_server = sport == flow.client_port and src == flow.client_addr
        if ts > flow.last:
            flow.last = ts
        if to_server:
            flow.pkts_c += 1
            flow.bytes_c += wire_len
        else:
            flow.pkts_s += 1
            flow.bytes_s += wire_len
        self._queues[flow.queue].move_to_end(key)
        if proto == PROTO_TCP:
            stream = flow.client_stream if to_server else flow.server_stream
            assert stream is not None
            stream.window = window
            if payload and not flags & 0x07 and seq == stream.next_seq and not stream.starts:
                # the fast path: in-order data, handed on as is
                if flags & TCP_ACK:
                    peer = flow.server_stream if to_server else flow.client_stream
                    assert peer is not None
                    if peer.next_seq >= 0 and ack != peer.next_seq:
                        peer.acked_unseen(self._ctx, ack, ts, out)
                size = len(payload)
                stream.last_base = stream.base
                stream.last_data = payload
                stream.base += size
                stream.next_seq = (seq + size) & SEQ_MASK
                out.append(_new_stream_data(StreamData, (flow.ref, to_server, payload, ts)))
                if flow.queue == _Q_UNESTABLISHED:
                    self._check_established(flow, to_server, flags)
                return out
            self._tcp_slow(flow, stream, to_server, pkt, out)
        elif proto == PROTO_UDP and payload:
            out.append(_new_stream_data(StreamData, (flow.ref, to_server, payload, ts)))
        return out

    def _tcp_slow(
        self, flow: Flow, stream: TcpStream, to_server: bool, pkt: Packet, out: list[FlowOutput]
    ) -> None:
        flags = pkt.tcp_flags
        seq = pkt.seq
        peer = flow.server_stream if to_server else flow.client_stream
        assert peer is not None
        if flags & TCP_RST:
            self._rst(flow, stream, peer, to_server, pkt, out)
            return
        if flags & TCP_ACK and peer.next_seq < 0:
            # mid-stream pickup: what this side acknowledges is exactly the next byte the peer sends
            peer.init(pkt.ack)
        elif flags & TCP_ACK and (pkt.payload or peer.starts) and pkt.ack != peer.next_seq:
            peer.acked_unseen(self._ctx, pkt.ack, pkt.ts, out)
        if flags & TCP_SYN:
            if flags & TCP_ACK:
                flow.handshake |= 2
            else:
                flow.handshake |= 1
                flow.isn = seq
            stream.wscale = window_scale(pkt.tcp_options)
            if stream.next_seq < 0 or (stream.base == 0 and not stream.starts):
                stream.init(seq + 1)  # the SYN occupies one sequence number
            seq = (seq + 1) & SEQ_MASK  # data on a SYN (TCP Fast Open) follows it
        elif stream.next_seq < 0:
            if len(pkt.payload) == 1 and not flags & TCP_FIN:
                # the first segment of a picked-up stream is 1 byte: most likely a keep-alive
                # (RFC 9293 §3.8.4, seq = next - 1, a garbage byte), so it must not set the sequence
                self.counters["tcp.keepalive"] += 1
                return
            stream.init(seq)  # mid-stream pickup (T8): the first segment sets the sequence
        if pkt.payload:
            stream.segment(self._ctx, seq, pkt.payload, pkt.ts, out)
        if flags & TCP_FIN:
            stream.consume_fin((seq + len(pkt.payload)) & SEQ_MASK)
            if peer.fin_seen and flow.queue != _Q_CLOSED:
                self._close(flow, "fin")
                return
        if flow.queue == _Q_UNESTABLISHED:
            self._check_established(flow, to_server, flags)

    def _rst(
        self,
        flow: Flow,
        stream: TcpStream,
        peer: TcpStream,
        to_server: bool,
        pkt: Packet,
        out: list[FlowOutput],
    ) -> None:
        """RFC 5961 §3: honour a RST only when its sequence is in window; never one with TCP-MD5 (T9)."""
        if flow.queue == _Q_CLOSED:
            return
        detail = ""
        if pkt.tcp_options and tcp_option(pkt.tcp_options, 19) is not None:
            detail = "RST carries a TCP-MD5 signature option (RFC 2385) that a passive sensor cannot verify"
        else:
            receive_window = max(peer.window << peer.wscale, _MIN_RST_WINDOW)
            if not stream.rst_acceptable(pkt.seq, receive_window):
                detail = f"RST sequence {pkt.seq} outside the receive window at {stream.next_seq}"
        if detail:
            self.counters["tcp.suspicious_rst"] += 1
            out.append(ProtocolAnomaly(pkt.ts, flow.ref, "tcp.suspicious_rst", detail, to_server, 2))
            return
        self.counters["tcp.rst"] += 1
        self._close(flow, "rst")

    def _check_established(self, flow: Flow, to_server: bool, flags: int) -> None:
        client = flow.client_stream
        server = flow.server_stream
        assert client is not None and server is not None
        handshake_done = flow.handshake == 3 and to_server and flags & TCP_ACK and not flags & TCP_SYN
        picked_up = (
            client.last_data or server.last_data or (not flow.handshake and flow.pkts_c and flow.pkts_s)
        )
        if handshake_done or picked_up:
            self._move(flow, _Q_ESTABLISHED)

    # --- flow creation and ending ----------------------------------------------------------------

    def _create(self, key: FlowKey, pkt: Packet, out: list[FlowOutput]) -> Flow:
        self._make_room(pkt.ts, out)
        proto = pkt.proto
        sender_is_client = self._sender_is_client(pkt)
        if sender_is_client:
            client, cport, server, sport = pkt.src, pkt.sport, pkt.dst, pkt.dport
            client_mac, server_mac = pkt.src_mac, pkt.dst_mac
        else:
            client, cport, server, sport = pkt.dst, pkt.dport, pkt.src, pkt.sport
            client_mac, server_mac = pkt.dst_mac, pkt.src_mac
        if proto in (1, 58) and len(pkt.payload) >= 2:  # ICMP: type and code stand in for ports
            icmp_type, icmp_code = pkt.payload[0], pkt.payload[1]
            cid = community_id(pkt.src, pkt.dst, proto, icmp_type, icmp_code)
        else:
            cid = community_id(client, server, proto, cport, sport)
        ref = FlowRef(
            flow_id=_flow_id(key, pkt.ts),
            community_id=cid,
            transport=TRANSPORT_NAMES.get(proto, str(proto)),
            client_ip=format_ip(client),
            client_port=cport,
            server_ip=format_ip(server),
            server_port=sport,
            client_mac=format_mac(client_mac) if client_mac else "",
            server_mac=format_mac(server_mac) if server_mac else "",
            vlans=pkt.vlans,
            tunnel=pkt.tunnel,
        )
        flow = Flow(key, ref, client, cport, pkt.ts)
        if proto == PROTO_TCP:
            flow.client_stream = TcpStream(ref, True)
            flow.server_stream = TcpStream(ref, False)
            flow.queue = _Q_UNESTABLISHED
        self._flows[key] = flow
        self._queues[flow.queue][key] = flow
        self.total_flows += 1
        self.counters["flows.created"] += 1
        return flow

    def _sender_is_client(self, pkt: Packet) -> bool:
        if pkt.proto == PROTO_TCP and pkt.tcp_flags & TCP_SYN:
            return not pkt.tcp_flags & TCP_ACK
        sport_known = pkt.sport in self.server_ports
        dport_known = pkt.dport in self.server_ports
        if sport_known != dport_known:
            return dport_known
        if pkt.sport == pkt.dport:
            return True
        return pkt.dport < pkt.sport

    def _make_room(self, ts: float, out: list[FlowOutput]) -> None:
        """Keep the table under its caps before a new flow is added (T4)."""
        limits = self.limits
        flows = self._flows
        if len(flows) >= limits.emergency_flows:
            if not self._emergency:
                self._emergency = True
                self.counters["flow.emergency_entered"] += 1
                logger.warning("flow table in emergency mode: %d flows", len(flows))
            for queue_index in (_Q_CLOSED, _Q_UNESTABLISHED):
                queue = self._queues[queue_index]
                while queue and len(flows) >= limits.emergency_flows:
                    self._evict(next(iter(queue.values())), ts, out)
        while len(flows) >= limits.max_flows:
            victim = self._lru_victim()
            if victim is None:  # pragma: no cover - a full table always has a head
                break
            self._evict(victim, ts, out)

    def _lru_victim(self) -> Flow | None:
        queues = self._queues
        for queue_index in (_Q_CLOSED, _Q_UNESTABLISHED):
            if queues[queue_index]:
                return next(iter(queues[queue_index].values()))
        heads = [next(iter(queues[q].values())) for q in (_Q_ESTABLISHED, _Q_OTHER) if queues[q]]
        return min(heads, key=lambda flow: flow.last) if heads else None

    def _evict(self, flow: Flow, ts: float, out: list[FlowOutput]) -> None:
        if flow.queue == _Q_CLOSED:
            self._finish(flow, flow.close_reason, ts, out)
        else:
            self.counters["flows.evicted"] += 1
            self._finish(flow, "evicted", ts, out)

    def _move(self, flow: Flow, queue_index: int) -> None:
        del self._queues[flow.queue][flow.key]
        flow.queue = queue_index
        self._queues[queue_index][flow.key] = flow

    def _close(self, flow: Flow, reason: str) -> None:
        """FIN both ways or an accepted RST: linger in the closed queue (see module docstring)."""
        flow.close_reason = reason
        self._move(flow, _Q_CLOSED)

    def _finish(self, flow: Flow, reason: str, ts: float, out: list[FlowOutput]) -> None:
        """End a flow: hand over queued bytes (declaring holes), then StreamClosed and FlowSummary."""
        del self._flows[flow.key]
        del self._queues[flow.queue][flow.key]
        gaps = 0
        client = flow.client_stream
        server = flow.server_stream
        if client is not None and server is not None:
            client.flush(self._ctx, ts, out)
            server.flush(self._ctx, ts, out)
            gaps = client.gaps + server.gaps
            state = {_Q_CLOSED: "closed", _Q_ESTABLISHED: "established"}.get(flow.queue, "new")
        else:
            state = "established" if flow.pkts_c and flow.pkts_s else "new"
        self.counters[f"flows.ended.{reason}"] += 1
        out.append(StreamClosed(flow.ref, ts, reason))
        out.append(
            FlowSummary(
                flow=flow.ref,
                start=flow.start,
                end=flow.last,
                pkts_toserver=flow.pkts_c,
                pkts_toclient=flow.pkts_s,
                bytes_toserver=flow.bytes_c,
                bytes_toclient=flow.bytes_s,
                state=state,
                reason=reason,
                gaps=gaps,
            )
        )

    # --- time ------------------------------------------------------------------------------------

    def expire(self, now: float) -> list[FlowOutput]:
        """End flows idle past their state's timeout (packet time); cheap when nothing is due."""
        limits = self.limits
        out: list[FlowOutput] = []
        for queue_index, timeout in (
            (_Q_UNESTABLISHED, limits.tcp_unestablished_timeout),
            (_Q_ESTABLISHED, limits.tcp_established_timeout),
            (_Q_CLOSED, limits.tcp_closed_timeout),
            (_Q_OTHER, limits.udp_timeout),
        ):
            queue = self._queues[queue_index]
            while queue:
                flow = next(iter(queue.values()))
                if flow.last + timeout > now:
                    break
                if queue_index == _Q_CLOSED:
                    self._finish(flow, flow.close_reason, now, out)
                else:
                    self.counters["flows.timeout"] += 1
                    self._finish(flow, "timeout", now, out)
        if self._emergency and len(self._flows) < limits.emergency_flows * _EMERGENCY_RECOVERY:
            self._emergency = False
            logger.info("flow table left emergency mode: %d flows", len(self._flows))
        return out

    def flush(self, now: float) -> list[FlowOutput]:
        """End of capture: end every flow (closed ones keep their reason, the rest "shutdown")."""
        out: list[FlowOutput] = []
        for flow in list(self._flows.values()):
            self._finish(flow, flow.close_reason if flow.queue == _Q_CLOSED else "shutdown", now, out)
        self._emergency = False
        return out


def _flow_id(key: FlowKey, first_ts: float) -> int:
    """Stable 63-bit flow id from the key and the first packet time: identical across replays."""
    version, proto, addr_a, port_a, addr_b, port_b = key
    material = b"".join(
        (
            bytes((version, proto & 0xFF)),
            addr_a,
            _PORT.pack(port_a),
            addr_b,
            _PORT.pack(port_b),
            _TS.pack(first_ts),
        )
    )
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big") & ((1 << 63) - 1)
