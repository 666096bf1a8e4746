"""Every anomaly kind the detectors raise: its severity, title and ATT&CK for ICS techniques.

One table, so that the mapping an analyst reads in an alert is reviewed in one place. Technique ids
and names are facts from MITRE ATT&CK for ICS (https://attack.mitre.org/matrices/ics/); a kind maps
to a technique only where the observed behaviour *is* a procedure of it, not merely a possible
precursor (e.g. a new asset is not by itself a Rogue Master; a new asset that writes is).

Severities follow EVE: 1 high, 2 medium, 3 low, 4 informational.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

TECHNIQUES: Final[dict[str, str]] = {
    "T0801": "Monitor Process State",
    "T0806": "Brute Force I/O",
    "T0814": "Denial of Service",
    "T0815": "Denial of View",
    "T0816": "Device Restart/Shutdown",
    "T0829": "Loss of View",
    "T0831": "Manipulation of Control",
    "T0832": "Manipulation of View",
    "T0836": "Modify Parameter",
    "T0839": "Module Firmware",
    "T0843": "Program Download",
    "T0846": "Remote System Discovery",
    "T0848": "Rogue Master",
    "T0849": "Masquerading",
    "T0855": "Unauthorized Command Message",
    "T0858": "Change Operating Mode",
    "T0861": "Point & Tag Identification",
    "T0871": "Execution through API",
    "T0872": "Indicator Removal on Host",
    "T0888": "Remote System Information Discovery",
    "T0889": "Modify Program",
}


@dataclass(frozen=True, slots=True)
class KindInfo:
    severity: int
    title: str
    mitre: tuple[str, ...] = ()
    concern: str = "novelty"  # novelty | recon | impairment | timing | process | protocol


KINDS: Final[dict[str, KindInfo]] = {
    # --- novelty: something the baseline never saw ---------------------------------------------
    "new_asset": KindInfo(3, "New asset"),
    "new_edge": KindInfo(3, "New communication edge"),
    "new_protocol": KindInfo(2, "New protocol on a known edge"),
    "new_modbus_unit": KindInfo(3, "New Modbus unit id for a pair"),
    "new_function_code": KindInfo(2, "New Modbus function code for a pair"),
    "new_read_range": KindInfo(3, "Read of a never-read Modbus address range", ("T0861",)),
    "new_write_range": KindInfo(1, "Write to a never-written Modbus address range", ("T0836", "T0855")),
    "rogue_master_write": KindInfo(1, "Write from a host that never wrote before", ("T0848", "T0855")),
    "write_value_out_of_range": KindInfo(2, "Written value outside the learned range", ("T0836",)),
    "new_opcua_service": KindInfo(2, "New OPC UA service for a pair"),
    "new_opcua_write_node": KindInfo(1, "OPC UA write to a never-written node", ("T0836", "T0855")),
    "new_opcua_security": KindInfo(2, "New OPC UA security mode or policy for a pair"),
    "new_mqtt_client": KindInfo(3, "New MQTT client id"),
    "new_mqtt_topic": KindInfo(3, "New MQTT topic for a client"),
    "new_mqtt_qos": KindInfo(4, "New MQTT QoS on a topic"),
    # --- reconnaissance ---------------------------------------------------------------------------
    "modbus_unit_id_scan": KindInfo(2, "Modbus unit-id scan", ("T0846",), "recon"),
    "modbus_function_code_scan": KindInfo(2, "Modbus function-code scan", ("T0888",), "recon"),
    "modbus_device_id_sweep": KindInfo(2, "Modbus device-identification sweep", ("T0888",), "recon"),
    "modbus_address_sweep": KindInfo(2, "Modbus address sweep", ("T0861",), "recon"),
    "opcua_browse_sweep": KindInfo(2, "OPC UA browse sweep", ("T0861",), "recon"),
    "tcp_port_scan": KindInfo(2, "TCP port scan", ("T0846",), "recon"),
    "mqtt_wildcard_subscription": KindInfo(2, "MQTT wildcard subscription", ("T0861", "T0801"), "recon"),
    "mqtt_topic_sweep": KindInfo(2, "MQTT topic sweep", ("T0861",), "recon"),
    # --- impairment and control -------------------------------------------------------------------
    "modbus_restart_communications": KindInfo(
        1, "Modbus FC 8 restart communications", ("T0816",), "impairment"
    ),
    "modbus_force_listen_only": KindInfo(1, "Modbus FC 8 force listen-only mode", ("T0814",), "impairment"),
    "modbus_clear_counters": KindInfo(2, "Modbus FC 8 clear counters", ("T0872",), "impairment"),
    "modbus_program_function": KindInfo(1, "Modbus program/firmware function", ("T0843",), "impairment"),
    "modbus_firmware_function": KindInfo(1, "Modbus firmware replacement", ("T0839",), "impairment"),
    "modbus_write_burst": KindInfo(1, "Modbus write burst", ("T0806",), "impairment"),
    "modbus_exception_storm": KindInfo(2, "Modbus exception storm", (), "impairment"),
    "opcua_unexpected_call": KindInfo(
        1, "OPC UA Call to an unexpected method", ("T0871", "T0855"), "impairment"
    ),
    "opcua_address_space_change": KindInfo(1, "OPC UA AddNodes/DeleteNodes", ("T0889",), "impairment"),
    "mqtt_command_from_new_client": KindInfo(
        1, "MQTT publish to a command topic from a new client", ("T0855",), "impairment"
    ),
    "mqtt_retained_overwrite": KindInfo(2, "MQTT retained message overwritten", ("T0832",), "impairment"),
    "mqtt_client_id_takeover": KindInfo(1, "MQTT client id used from another host", ("T0849",), "impairment"),
    # --- timing -----------------------------------------------------------------------------------
    "polling_stopped": KindInfo(2, "Polling stopped", ("T0829",), "timing"),
    "polling_too_fast": KindInfo(2, "Polling far faster than learned", ("T0814",), "timing"),
    "new_periodic_traffic": KindInfo(3, "New periodic traffic", (), "timing"),
    # --- process values ---------------------------------------------------------------------------
    "process_value_out_of_range": KindInfo(
        2, "Process value outside the learned range", ("T0831",), "process"
    ),
    "process_value_rate": KindInfo(2, "Process value changing faster than ever seen", ("T0831",), "process"),
    "process_value_drift": KindInfo(3, "Process value drifting", (), "process"),
}

# Protocol anomalies from the dissectors become ``protocol.<kind>`` alerts. Severity per kind: the
# dissector's own where it is not listed here. Capture-quality kinds (loss on the SPAN port, not
# behaviour on the wire) are counted by the core statistics and never raised as alerts.
PROTOCOL_SEVERITY: Final[dict[str, int]] = {
    "modbus.invalid_protocol_id": 2,
    "modbus.invalid_length": 2,
    "modbus.invalid_function_code": 2,
    "modbus.flooded": 1,
    "modbus.function_mismatch": 2,
    "mqtt.wildcard_in_topic": 2,
    "mqtt.too_many_topics": 1,
    "mqtt.too_many_transactions": 1,
    "mqtt.auth_failure": 2,
    "mqtt.double_connect": 2,
    "opcua.chunk_limit": 1,
    "opcua.channel_limit": 1,
    "opcua.repeated_bad_certificate": 2,
    "opcua.repeated_bad_user_access": 1,
    "tcp.overlap_diff": 1,
    "tcp.suspicious_rst": 2,
}
NOT_RAISED: Final = frozenset(
    {
        "tcp.retransmission",
        "tcp.keepalive",
        "tcp.reassembly_gap",
        "tcp.acked_unseen",
        "tcp.rst",
        "tcp.dstport",
        "tcp.srcport",
        # a response whose request was not seen: mid-stream pickup or a request lost on the SPAN
        # port far more often than an attack; it stays an EVE anomaly record and a counter
        "modbus.unsolicited_response",
    }
)


def info(kind: str) -> KindInfo:
    """The table entry of a kind; ``protocol.<kind>`` entries are built from the dissector's kind."""
    found = KINDS.get(kind)
    if found is not None:
        return found
    if kind.startswith("protocol."):
        inner = kind.removeprefix("protocol.")
        return KindInfo(PROTOCOL_SEVERITY.get(inner, 3), f"Protocol anomaly {inner}", (), "protocol")
    return KindInfo(3, kind)
