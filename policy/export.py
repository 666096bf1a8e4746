"""A policy as other tools want it: nftables, Suricata rules, CSV and Markdown tables.

* **nftables** (``nft -f``): a ``table inet zonewarden`` with one interval set per zone and address
  family and a ``forward`` chain whose policy is the file's ``default``; each conduit entry becomes
  an ``accept`` rule from the initiator zone's set to the responder zone's set on the entry's
  transport and ports, and zones that allow intra-zone traffic get an accept rule of their own. A
  firewall sees ports, not operations: function codes, topics and services stay the sensor's job.
  MAC and asset members cannot be expressed on a routed firewall and are listed in comments.
* **Suricata** rules (for the project's rules engine, ``rules/``, or Suricata itself where the
  keywords exist): per conduit, ``pass`` rules for the operations its entries allow (``modbus:``
  function or access + address, ``opcua.service``/``opcua.security_mode``, ``mqtt.type`` + topic pcre),
  then an ``alert`` for every other operation of that protocol between the two zones; and an
  ``alert`` for traffic between zones that no conduit joins. Rule addresses are **1-based**
  (Suricata's modbus keyword) and ``A<>B`` ranges are strict, so the PDU range 0-9 is written
  ``address 0<>11``. SIDs are allocated in order from ``sid_base`` (default 9300000, the project's
  range for generated policy rules).
* **CSV / Markdown**: the zone and conduit tables an IEC 62443-3-2 assessment documents (ZCR 6):
  zone, SL-T, members; conduit, initiator, responder, SL-T, protocol, what is allowed.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from policy.evaluate import OPCUA_IMPLIED_SERVICES
from policy.index import RangeSet, modbus_function_codes
from policy.model import (
    ModbusAllow,
    MqttAllow,
    OpcUaAllow,
    OtherAllow,
    Policy,
    Zone,
    parse_address_member,
)
from sensor.dissectors.modbus import codes as modbus_codes

FORMATS = ("nftables", "suricata", "csv", "markdown")
DEFAULT_SID_BASE = 9_300_000

_FC_TABLE = {
    1: ("read", "coils"),
    2: ("read", "discrete_inputs"),
    3: ("read", "holding_registers"),
    4: ("read", "input_registers"),
    5: ("write", "coils"),
    15: ("write", "coils"),
    6: ("write", "holding_registers"),
    16: ("write", "holding_registers"),
}
_SURICATA_TABLE = {
    "coils": "coils",
    "discrete_inputs": "discretes",
    "holding_registers": "holding",
    "input_registers": "input",
}


def _networks(zone: Zone) -> tuple[list[str], list[str], list[str]]:
    """(IPv4 elements, IPv6 elements, members that cannot be exported) of a zone."""
    v4: list[str] = []
    v6: list[str] = []
    other: list[str] = []
    for m in zone.members:
        if not isinstance(m, str):
            other.append(f"asset {m.asset}" if m.asset else f"tag {m.tag}")
            continue
        kind, parsed = parse_address_member(m)
        if kind == "mac":
            other.append(f"MAC {parsed}")
        elif kind == "range":
            nets = ipaddress.summarize_address_range(parsed[0], parsed[1])
            (v4 if parsed[0].version == 4 else v6).extend(str(n) for n in nets)
        else:
            (v4 if parsed.version == 4 else v6).append(str(parsed))
    return v4, v6, other


def _ports(spec: list[int | str] | None, default: list[int]) -> list[tuple[int, int]]:
    if spec is None:
        return [(p, p) for p in default]
    return list(RangeSet.parse(spec, 0, 65535).pairs)


def _port_text(pairs: list[tuple[int, int]], sep: str = "-") -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}{sep}{hi}" for lo, hi in pairs)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9 _.:/>()=,+#*\[\]-]", "_", text)[:120]


def _entry_transport(entry: object) -> list[tuple[str, list[tuple[int, int]] | None]]:
    """(transport, ports) pairs a firewall must open for an allow entry."""
    if isinstance(entry, ModbusAllow):
        return [("tcp", _ports(entry.ports, [502]))]
    if isinstance(entry, OpcUaAllow):
        return [("tcp", _ports(entry.ports, [4840]))]
    if isinstance(entry, MqttAllow):
        tls = _ports(entry.tls_ports, [8883])
        return [("tcp", tls)] if entry.require_tls else [("tcp", _ports(entry.ports, [1883]) + tls)]
    assert isinstance(entry, OtherAllow)
    ports = _ports(entry.ports, []) if entry.ports is not None else None
    if entry.transport == "any":
        return [("tcp", ports), ("udp", ports)] if ports else [("any", None)]
    return [(entry.transport, ports if entry.transport in ("tcp", "udp") else None)]


# --- nftables ----------------------------------------------------------------------------------


def _nft_name(prefix: str, index: int, zone_id: str) -> str:
    return f"{prefix}{index}_{re.sub(r'[^A-Za-z0-9_]', '_', zone_id)}"[:60]


def to_nftables(policy: Policy) -> str:
    lines = [
        "#!/usr/sbin/nft -f",
        f"# zonewarden zone/conduit policy {policy.site or ''} (exported; review before loading)",
        "table inet zonewarden {",
    ]
    sets: dict[str, tuple[str | None, str | None]] = {}
    for i, zone in enumerate(policy.zones):
        v4, v6, other = _networks(zone)
        names: list[str | None] = [None, None]
        for slot, elements, kind in ((0, v4, "ipv4_addr"), (1, v6, "ipv6_addr")):
            if not elements:
                continue
            name = _nft_name("z", i, zone.id) + ("_v4" if slot == 0 else "_v6")
            names[slot] = name
            lines += [
                f"\tset {name} {{",
                f"\t\ttype {kind}",
                "\t\tflags interval",
                "\t\tauto-merge",
                f"\t\telements = {{ {', '.join(elements)} }}",
                "\t}",
            ]
        if other:
            lines.append(f"\t# zone {zone.id}: not exported (needs the sensor): {', '.join(other)}")
        sets[zone.id] = (names[0], names[1])
    policy_word = "drop" if policy.default == "deny" else "accept"
    lines += [
        "\tchain forward {",
        f"\t\ttype filter hook forward priority filter; policy {policy_word};",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
    ]
    for zone in policy.zones:
        if zone.intra_zone == "allow" and not any(
            c.from_zone == c.to_zone == zone.id for c in policy.conduits
        ):
            for family, set_name in zip(("ip", "ip6"), sets[zone.id], strict=True):
                if set_name:
                    match = f"{family} saddr @{set_name} {family} daddr @{set_name}"
                    lines.append(f'\t\t{match} accept comment "intra-zone {_safe(zone.id)}"')
    for conduit in policy.conduits:
        src, dst = sets.get(conduit.from_zone, (None, None)), sets.get(conduit.to_zone, (None, None))
        lines.append(f"\t\t# conduit {conduit.id}: {conduit.from_zone} -> {conduit.to_zone}")
        for j, entry in enumerate(conduit.allow):
            comment = _safe(f"conduit {conduit.id} allow[{j}] {entry.protocol}")
            for family, s_name, d_name in (("ip", src[0], dst[0]), ("ip6", src[1], dst[1])):
                if not s_name or not d_name:
                    continue
                for transport, ports in _entry_transport(entry):
                    match = f"{family} saddr @{s_name} {family} daddr @{d_name}"
                    if transport in ("tcp", "udp"):
                        match += f" meta l4proto {transport}"
                        if ports:
                            match += f" {transport} dport {{ {_port_text(ports)} }}"
                    elif transport == "icmp":
                        match += " meta l4proto icmp"
                    elif transport == "ipv6-icmp":
                        match += " meta l4proto ipv6-icmp"
                    lines.append(f'\t\t{match} ct state new accept comment "{comment}"')
    lines += ["\t}", "}", ""]
    return "\n".join(lines)


# --- Suricata ----------------------------------------------------------------------------------


def _addr_group(zone: Zone | None) -> str | None:
    if zone is None:
        return None
    v4, v6, _ = _networks(zone)
    items = v4 + v6
    if not items:
        return None
    return items[0] if len(items) == 1 else "[" + ",".join(items) + "]"


def _strict(lo: int, hi: int) -> str:
    """An inclusive range as the modbus keyword's strict form (``N``, ``<N``, ``A<>B``)."""
    if lo == hi:
        return str(lo)
    if lo == 0:
        return f"<{hi + 1}"
    return f"{lo - 1}<>{hi + 1}"


def _filter_pcre(topic_filter: str) -> str:
    """MQTT topic filter -> anchored PCRE over the topic (MQTT 5.0 §4.7)."""
    parts = []
    for level in topic_filter.split("/"):
        if level == "+":
            parts.append("[^/]*")
        elif level == "#":
            parts.append("#")
        else:
            parts.append(re.sub(r"([^A-Za-z0-9_-])", r"\\\1", level))
    text = "\\/".join(parts)
    text = text.replace("\\/#", "(\\/.*)?").replace("#", ".*")
    return f"/^{text}$/"


class _Sids:
    def __init__(self, base: int) -> None:
        self.next = base

    def __call__(self) -> int:
        self.next += 1
        return self.next - 1


def _modbus_rules(entry: ModbusAllow) -> Iterator[tuple[str, str]]:
    """(keyword options, description) of the pass rules of one Modbus entry."""
    units: list[tuple[int, int]] = [(0, 255)]
    if entry.units is not None:
        units = list(RangeSet.parse(entry.units, 0, 255).pairs)
    codes = sorted(modbus_function_codes(entry.functions)) if entry.functions is not None else []
    if entry.functions is None:
        codes_or_all: list[int | None] = [None]
    else:
        codes_or_all = list(codes)
    addresses: dict[str, RangeSet] = {
        t: RangeSet.parse(s, 0, 65535) for t, s in (entry.addresses or {}).items()
    }
    for lo, hi in units:
        unit = "" if (lo, hi) == (0, 255) else f"unit {_strict(lo, hi)}, "
        for fc in codes_or_all:
            if fc is None:
                yield f"modbus: {unit}function all;", "any function"
                continue
            access = _FC_TABLE.get(fc)
            name = modbus_codes.function_name(fc)
            if access is not None and access[1] in addresses:
                kind, table = access
                for a_lo, a_hi in addresses[table].pairs:
                    # rule addresses are 1-based: PDU lo..hi -> lo+1..hi+1
                    rule_range = _strict(a_lo + 1, a_hi + 1)
                    yield (
                        f"modbus: {unit}access {kind} {_SURICATA_TABLE[table]}, address {rule_range};",
                        f"{name} {table} {a_lo}-{a_hi}",
                    )
            else:
                yield f"modbus: {unit}function {fc};", name


def to_suricata(policy: Policy, sid_base: int = DEFAULT_SID_BASE) -> str:
    sid = _Sids(sid_base)
    zones = {z.id: z for z in policy.zones}
    out = [
        f"# zonewarden zone/conduit policy {policy.site} exported as rules (pass = allowed by a conduit).",
        "# Modbus rule addresses are 1-based (PDU address + 1); ranges A<>B are strict.",
    ]

    def rule(action: str, proto: str, src: str, dst: str, ports: str, msg: str, options: str) -> None:
        opts = f'msg:"ZW policy {_safe(msg)}"; {options} classtype:policy-violation; sid:{sid()}; rev:1;'
        out.append(f"{action} {proto} {src} any -> {dst} {ports} ({opts.replace('  ', ' ')})")

    for conduit in policy.conduits:
        src = _addr_group(zones.get(conduit.from_zone))
        dst = _addr_group(zones.get(conduit.to_zone))
        out.append(f"# conduit {conduit.id}: {conduit.from_zone} -> {conduit.to_zone}")
        if src is None or dst is None:
            out.append("# (a zone without IP members: not expressible as rules)")
            continue
        protocols: set[str] = set()
        for j, entry in enumerate(conduit.allow):
            tag = f"{conduit.id} allow[{j}]"
            if isinstance(entry, ModbusAllow):
                protocols.add("modbus")
                ports = _port_text(_ports(entry.ports, [502]), ":")
                for options, what in _modbus_rules(entry):
                    rule("pass", "modbus", src, dst, f"[{ports}]", f"{tag} modbus {what}", options)
            elif isinstance(entry, OpcUaAllow):
                protocols.add("opcua")
                ports = _port_text(_ports(entry.ports, [4840]), ":")
                modes = {"None": "None,Sign,SignAndEncrypt", "Sign": "Sign,SignAndEncrypt"}.get(
                    entry.min_security_mode, "SignAndEncrypt"
                )
                services = ""
                if entry.services is not None:
                    services = (
                        "opcua.service:" + ",".join(sorted({*entry.services, *OPCUA_IMPLIED_SERVICES})) + ";"
                    )
                rule(
                    "pass",
                    "opcua",
                    src,
                    dst,
                    f"[{ports}]",
                    f"{tag} opcua",
                    f"{services} opcua.security_mode:{modes};",
                )
            elif isinstance(entry, MqttAllow):
                protocols.add("mqtt")
                ports = _port_text(_ports(entry.ports, [1883]), ":")
                if entry.require_tls:
                    continue  # cleartext MQTT is never allowed by this entry
                for kind, buffer, filters in (
                    ("PUBLISH", "mqtt.publish.topic", entry.publish),
                    ("SUBSCRIBE", "mqtt.subscribe.topic", entry.subscribe),
                ):
                    if filters is None:
                        rule(
                            "pass", "mqtt", src, dst, f"[{ports}]", f"{tag} mqtt {kind}", f"mqtt.type:{kind};"
                        )
                        continue
                    for f in filters:
                        rule(
                            "pass",
                            "mqtt",
                            src,
                            dst,
                            f"[{ports}]",
                            f"{tag} mqtt {kind} {f}",
                            f'mqtt.type:{kind}; {buffer}; pcre:"{_filter_pcre(f)}";',
                        )
            elif isinstance(entry, OtherAllow):
                for transport, port_pairs in _entry_transport(entry):
                    proto = transport if transport in ("tcp", "udp", "icmp") else "ip"
                    ports = f"[{_port_text(port_pairs, ':')}]" if port_pairs else "any"
                    rule("pass", proto, src, dst, ports, f"{tag} {entry.protocol}", "flow:to_server;")
        for proto in sorted(protocols):
            if proto == "mqtt":
                for kind in ("PUBLISH", "SUBSCRIBE"):
                    rule(
                        "alert",
                        "mqtt",
                        src,
                        dst,
                        "any",
                        f"{conduit.id}: mqtt {kind} not allowed",
                        f"mqtt.type:{kind};",
                    )
            else:
                rule(
                    "alert",
                    proto,
                    src,
                    dst,
                    "any",
                    f"{conduit.id}: {proto} operation not allowed",
                    "flow:to_server;",
                )
    if policy.default == "deny":
        joined = {(c.from_zone, c.to_zone) for c in policy.conduits}
        out.append("# zone pairs without a conduit (default: deny)")
        for a in policy.zones:
            for b in policy.zones:
                if (a.id, b.id) in joined or (a.id == b.id and a.intra_zone == "allow"):
                    continue
                src, dst = _addr_group(a), _addr_group(b)
                if src is None or dst is None:
                    continue
                rule(
                    "alert",
                    "ip",
                    src,
                    dst,
                    "any",
                    f"{a.id}->{b.id}: no conduit",
                    "flow:to_server; threshold: type limit, track by_src, count 1, seconds 300;",
                )
    return "\n".join(out) + "\n"


# --- tables ------------------------------------------------------------------------------------


def _entry_summary(entry: object) -> str:
    if isinstance(entry, ModbusAllow):
        parts = [
            f"functions {', '.join(map(str, entry.functions))}"
            if entry.functions is not None
            else "any function"
        ]
        if entry.units is not None:
            parts.append(f"units {entry.units}")
        for t, s in (entry.addresses or {}).items():
            parts.append(f"{t} {s}")
        for t, s in (entry.values or {}).items():
            parts.append(f"values {t} {s}")
        return "; ".join(parts)
    if isinstance(entry, OpcUaAllow):
        parts = [f"services {', '.join(entry.services)}" if entry.services is not None else "any service"]
        parts.append(f"min mode {entry.min_security_mode}")
        if entry.security_policies is not None:
            parts.append(f"policies {', '.join(entry.security_policies)}")
        if entry.user_token_types is not None:
            parts.append(f"tokens {', '.join(entry.user_token_types)}")
        if entry.nodes is not None:
            parts.append(f"nodes {', '.join(entry.nodes)}")
        return "; ".join(parts)
    if isinstance(entry, MqttAllow):
        parts = []
        parts.append(f"publish {', '.join(entry.publish)}" if entry.publish is not None else "publish any")
        parts.append(
            f"subscribe {', '.join(entry.subscribe)}" if entry.subscribe is not None else "subscribe any"
        )
        if entry.qos is not None:
            parts.append(f"QoS {', '.join(map(str, entry.qos))}")
        if not entry.retain:
            parts.append("no retain")
        if entry.require_tls:
            parts.append("TLS required")
        return "; ".join(parts)
    assert isinstance(entry, OtherAllow)
    ports = f" ports {', '.join(map(str, entry.ports))}" if entry.ports is not None else ""
    return f"{entry.transport}{ports}"


def _rows(policy: Policy) -> tuple[list[list[str]], list[list[str]]]:
    zones = [
        [
            z.id,
            z.name or z.description,
            str(z.sl_target) if z.security_level else "",
            z.intra_zone,
            "; ".join(
                m if isinstance(m, str) else (f"asset:{m.asset}" if m.asset else f"tag:{m.tag}")
                for m in z.members
            ),
        ]
        for z in policy.zones
    ]
    conduits: list[list[str]] = []
    for c in policy.conduits:
        sl = str(c.security_level.target) if c.security_level else ""
        if not c.allow:
            conduits.append([c.id, c.from_zone, c.to_zone, sl, "", "(nothing)"])
        for e in c.allow:
            conduits.append([c.id, c.from_zone, c.to_zone, sl, e.protocol, _entry_summary(e)])
    return zones, conduits


ZONE_HEADER = ["zone", "description", "SL-T", "intra-zone", "members"]
CONDUIT_HEADER = ["conduit", "initiator zone", "responder zone", "SL-T", "protocol", "allowed"]


def to_csv(policy: Policy) -> str:
    zones, conduits = _rows(policy)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", *ZONE_HEADER])
    for row in zones:
        w.writerow(["zone", *row])
    w.writerow([])
    w.writerow(["table", *CONDUIT_HEADER])
    for row in conduits:
        w.writerow(["conduit", *row])
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(policy: Policy) -> str:
    zones, conduits = _rows(policy)
    out = [f"# Zones and conduits{f': {policy.site}' if policy.site else ''}", ""]
    out.append(f"Default between zones: **{policy.default}**.")
    out += ["", "## Zones", "", "| " + " | ".join(ZONE_HEADER) + " |", "|" + "---|" * len(ZONE_HEADER)]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in zones]
    out += [
        "",
        "## Conduits",
        "",
        "| " + " | ".join(CONDUIT_HEADER) + " |",
        "|" + "---|" * len(CONDUIT_HEADER),
    ]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in conduits]
    return "\n".join(out) + "\n"


def export(policy: Policy, fmt: str, **options: Any) -> str:
    if fmt == "nftables":
        return to_nftables(policy)
    if fmt == "suricata":
        return to_suricata(policy, int(options.get("sid_base", DEFAULT_SID_BASE)))
    if fmt == "csv":
        return to_csv(policy)
    if fmt == "markdown":
        return to_markdown(policy)
    raise ValueError(f"unknown export format {fmt!r} ({', '.join(FORMATS)})")
