"""Every cap on attacker-controlled state, in one place (DESIGN.md §1).

Hitting a cap is an anomaly and a counter, never an exception and never unbounded memory. The
defaults are sized for an 8 GB industrial PC watching a plant network; tests shrink them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    # capture
    max_record_bytes: int = 256 * 1024  # a pcap/pcapng record larger than this is corrupt
    capture_queue_frames: int = 65536  # live capture: frames buffered between capture and pipeline
    capture_queue_bytes: int = 256 * 1024 * 1024  # and their bytes (a frame may be 64 KiB: GRO, jumbo)

    # IP fragments (Suricata's defrag memcap is 32 MiB)
    max_fragment_trains: int = 4096
    max_fragment_bytes: int = 32 * 1024 * 1024
    fragment_timeout: float = 30.0

    # flows
    max_flows: int = 200_000
    emergency_flows: int = 180_000  # above this the table evicts unestablished flows first
    tcp_established_timeout: float = 3600.0
    tcp_unestablished_timeout: float = 30.0
    tcp_closed_timeout: float = 10.0
    udp_timeout: float = 120.0

    # TCP reassembly
    max_stream_buffer: int = 1024 * 1024  # out-of-order bytes held per direction
    max_reassembly_bytes: int = 256 * 1024 * 1024  # all directions of all flows together
    max_segments_per_direction: int = 4096
    gap_wait_bytes: int = 256 * 1024  # bytes queued past a hole before it is declared a gap

    # protocol detection
    probe_bytes: int = 4096  # bytes per direction examined before a flow is declared unknown

    # dissectors, common
    max_pending_transactions: int = 500  # unanswered requests per flow (Modbus M9)
    transaction_timeout: float = 120.0
    max_pdu_buffer: int = 1024 * 1024  # bytes a session buffers towards one PDU
    # Modbus PDUs parsed once and reused by their bytes (0: parse every one); emptied when full
    modbus_pdu_memo: int = 4096

    # OPC UA (OPC 10000-6 §7.1)
    opcua_max_message_size: int = 16 * 1024 * 1024
    opcua_max_chunk_count: int = 4096
    opcua_max_messages_in_flight: int = 64
    opcua_max_nesting: int = 100
    opcua_max_array_elements: int = 10_000
    opcua_max_string_bytes: int = 64 * 1024
    opcua_max_channels_per_host: int = 256

    # MQTT (Suricata: max-msg-length 1 MiB, max-tx 4096)
    mqtt_max_message: int = 1024 * 1024
    mqtt_max_transactions: int = 4096
    mqtt_max_topic_levels: int = 200
    mqtt_max_topics_per_subscribe: int = 1000
    mqtt_payload_preview: int = 64

    # TLS
    tls_max_handshake: int = 256 * 1024
    tls_max_certificates: int = 16

    # fields copied into events and the store (hostile input G2)
    max_field_chars: int = 256

    # inventory (hostile input G1)
    max_assets: int = 100_000
    max_graph_edges: int = 500_000  # (client, server, protocol, port) edges; least recently seen evicted
    max_asset_detail: int = 1000  # per asset: register-map entries, OPC UA nodes, MQTT topics, fact values
    # reachability queries (CommunicationGraph.paths): neighbours examined per query, longest path asked
    graph_path_steps: int = 200_000
    graph_path_max_hops: int = 8

    # policy learning (policy/learn.py TrafficCollector, fed live by `serve` for POST /policy/learn)
    policy_learn_max_host_pairs: int = 20_000  # (initiator, responder) pairs; new ones past it are counted

    # deep identification through tshark (sensor/deep.py), off the hot path
    deep_max_flows: int = 100_000  # 5-tuples tracked; unidentified ones are evicted first
    deep_tshark_timeout: float = 3600.0  # seconds per capture file before tshark is stopped


DEFAULT_LIMITS = Limits()
