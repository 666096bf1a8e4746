"""Findings about a *valid* policy that is probably not what its author meant.

==================================  ==================================================================
code                                finding
==================================  ==================================================================
``opcua_without_sign``              a conduit into a zone with SL-T >= 2 allows OPC UA below Sign
                                    (IEC 62443-3-3 SR 3.1 communication integrity from SL 1, SR 4.1)
``mqtt_without_tls``                a conduit into a zone with SL-T >= 2 allows MQTT without TLS
``modbus_into_high_sl``             a conduit into a zone with SL-T >= 3 allows Modbus/TCP writes
                                    (no integrity or authentication in the protocol)
``conduit_sl_below_zone``           a conduit's SL-T is lower than the SL-T of a zone it joins
``zone_overlap``                    two zones claim overlapping addresses (the smaller one wins)
``zone_shadowed``                   every address of a zone is claimed by a more specific zone: its
                                    conduits can never apply
``zone_empty``                      a zone without members: its conduits are unreachable
``rule_shadowed``                   an allow entry allows nothing another entry of the same conduit
                                    does not already allow
``conduit_duplicate_pair``          two conduits between the same zones in the same direction
``conduit_empty``                   a conduit without allow entries
==================================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policy.index import (
    RangeSet,
    filter_covers,
    modbus_function_codes,
    policy_short_name,
    split_filter,
)
from policy.model import (
    ModbusAllow,
    MqttAllow,
    OpcUaAllow,
    OtherAllow,
    Policy,
    parse_address_member,
)

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    line: int
    code: str
    message: str

    def format(self, source: str) -> str:
        return f"{source}:{self.line}: warning: {self.code}: {self.message}"


def _line(lines: dict[PathKey, int], *path: str | int) -> int:
    key: PathKey = tuple(path)
    while key and key not in lines:
        key = key[:-1]
    return lines.get(key, 1)


def _intervals(policy: Policy) -> list[tuple[str, int, int, int, str]]:
    """(zone id, version, first, last, member text) for every IP member."""
    out = []
    for zone in policy.zones:
        for m in zone.members:
            if not isinstance(m, str):
                continue
            kind, parsed = parse_address_member(m)
            if kind == "network":
                out.append(
                    (zone.id, parsed.version, int(parsed.network_address), int(parsed.broadcast_address), m)
                )
            elif kind == "range":
                out.append((zone.id, parsed[0].version, int(parsed[0]), int(parsed[1]), m))
    return out


def _ranges(spec: Any, low: int, high: int) -> RangeSet | None:
    return RangeSet.parse(spec, low, high) if spec is not None else None


def _subset(a: RangeSet | None, b: RangeSet | None) -> bool:
    """a ⊆ b, where None means 'everything'."""
    if b is None:
        return True
    if a is None:
        return False
    return a.issubset(b)


def _set_subset(a: Any, b: Any) -> bool:
    if b is None:
        return True
    if a is None:
        return False
    return set(a) <= set(b)


def entry_subsumed(a: object, b: object) -> bool:
    """Does entry ``b`` allow everything entry ``a`` allows?"""
    if isinstance(a, ModbusAllow) and isinstance(b, ModbusAllow):
        fa = modbus_function_codes(a.functions) if a.functions is not None else None
        fb = modbus_function_codes(b.functions) if b.functions is not None else None
        if not _set_subset(fa, fb):
            return False
        if not _subset(_ranges(a.units, 0, 255), _ranges(b.units, 0, 255)):
            return False
        if not _subset(
            _ranges(a.ports, 0, 65535) or RangeSet([(502, 502)]),
            _ranges(b.ports, 0, 65535) or RangeSet([(502, 502)]),
        ):
            return False
        tables: list[tuple[dict[str, Any], dict[str, Any]]] = [
            (
                {str(k): v for k, v in (a.addresses or {}).items()},
                {str(k): v for k, v in (b.addresses or {}).items()},
            ),
            (
                {str(k): v for k, v in (a.values or {}).items()},
                {str(k): v for k, v in (b.values or {}).items()},
            ),
        ]
        for field_a, field_b in tables:
            for table, spec in field_b.items():
                if not _subset(_ranges(field_a.get(table), 0, 65535), _ranges(spec, 0, 65535)):
                    return False
        return True
    if isinstance(a, OpcUaAllow) and isinstance(b, OpcUaAllow):
        rank = {"None": 0, "Sign": 1, "SignAndEncrypt": 2}
        pa = {policy_short_name(p) for p in a.security_policies} if a.security_policies is not None else None
        pb = {policy_short_name(p) for p in b.security_policies} if b.security_policies is not None else None
        return (
            rank[a.min_security_mode] >= rank[b.min_security_mode]
            and _set_subset(a.services, b.services)
            and _set_subset(pa, pb)
            and _set_subset(a.user_token_types, b.user_token_types)
            and (
                (b.nodes is None and b.namespaces is None)
                or (a.nodes == b.nodes and a.namespaces == b.namespaces)
            )
            and (a.ports or [4840]) == (b.ports or [4840])
        )
    if isinstance(a, MqttAllow) and isinstance(b, MqttAllow):

        def filters_subset(fa: list[str] | None, fb: list[str] | None) -> bool:
            if fb is None:
                return True
            if fa is None:
                return False
            return all(any(filter_covers(split_filter(y), split_filter(x)) for y in fb) for x in fa)

        return (
            filters_subset(a.publish, b.publish)
            and filters_subset(a.subscribe, b.subscribe)
            and _set_subset(a.qos, b.qos)
            and (b.retain or not a.retain)
            and _set_subset(a.client_ids, b.client_ids)
            and (a.require_tls or not b.require_tls)
            and (a.ports, a.tls_ports) == (b.ports, b.tls_ports)
        )
    if isinstance(a, OtherAllow) and isinstance(b, OtherAllow):
        return (
            b.protocol in ("any", a.protocol)
            and b.transport in ("any", a.transport)
            and _subset(_ranges(a.ports, 0, 65535), _ranges(b.ports, 0, 65535))
        )
    return False


def lint(policy: Policy, lines: dict[PathKey, int]) -> list[Finding]:
    findings: list[Finding] = []
    zones = {z.id: z for z in policy.zones}

    # zones: empty, overlapping, shadowed
    for i, zone in enumerate(policy.zones):
        if not zone.members:
            findings.append(
                Finding(_line(lines, "zones", i, "id"), "zone_empty", f"zone {zone.id} has no members")
            )
    ivs = _intervals(policy)
    zone_index = {z.id: i for i, z in enumerate(policy.zones)}
    reported: set[tuple[str, str]] = set()
    for a in range(len(ivs)):
        for b in range(a + 1, len(ivs)):
            za, va, fa, la, ma = ivs[a]
            zb, vb, fb, lb, mb = ivs[b]
            if za == zb or va != vb or la < fb or lb < fa or (za, zb) in reported:
                continue
            reported.add((za, zb))
            winner = za if (la - fa, zone_index[za]) <= (lb - fb, zone_index[zb]) else zb
            findings.append(
                Finding(
                    _line(lines, "zones", zone_index[zb], "members"),
                    "zone_overlap",
                    f"zones {za} ({ma}) and {zb} ({mb}) overlap; addresses in both belong to {winner}",
                )
            )
    for zone in policy.zones:
        own = [iv for iv in ivs if iv[0] == zone.id]
        if not own or any(
            not isinstance(m, str) or parse_address_member(m)[0] == "mac" for m in zone.members
        ):
            continue
        if all(_claimed_elsewhere(iv, ivs, zone_index) for iv in own):
            findings.append(
                Finding(
                    _line(lines, "zones", zone_index[zone.id], "id"),
                    "zone_shadowed",
                    f"every address of zone {zone.id} belongs to a more specific zone: "
                    "its conduits never apply",
                )
            )

    pairs: dict[tuple[str, str], int] = {}
    for i, conduit in enumerate(policy.conduits):
        cl = _line(lines, "conduits", i, "id")
        if not conduit.allow:
            findings.append(Finding(cl, "conduit_empty", f"conduit {conduit.id} allows nothing"))
        pair = (conduit.from_zone, conduit.to_zone)
        if pair in pairs:
            findings.append(
                Finding(
                    cl,
                    "conduit_duplicate_pair",
                    f"conduit {conduit.id} joins {pair[0]} -> {pair[1]} like "
                    f"{policy.conduits[pairs[pair]].id}; "
                    "violations cite the first",
                )
            )
        else:
            pairs[pair] = i
        for end in (conduit.from_zone, conduit.to_zone):
            z = zones.get(end)
            if z is not None and not z.members:
                findings.append(
                    Finding(cl, "zone_empty", f"conduit {conduit.id} is unreachable: zone {end} is empty")
                )
        responder = zones.get(conduit.to_zone)
        sl = max(
            responder.sl_target if responder else 0,
            zones[conduit.from_zone].sl_target if conduit.from_zone in zones else 0,
        )
        if conduit.security_level is not None and conduit.security_level.target < sl:
            findings.append(
                Finding(
                    _line(lines, "conduits", i, "security_level"),
                    "conduit_sl_below_zone",
                    f"conduit {conduit.id} SL-T {conduit.security_level.target} is below SL-T {sl} "
                    "of the zones it joins",
                )
            )
        target = responder.sl_target if responder else 0
        for j, entry in enumerate(conduit.allow):
            el = _line(lines, "conduits", i, "allow", j)
            if target >= 2 and isinstance(entry, OpcUaAllow) and entry.min_security_mode == "None":
                findings.append(
                    Finding(
                        el,
                        "opcua_without_sign",
                        f"conduit {conduit.id} into {conduit.to_zone} (SL-T {target}) allows OPC UA without "
                        "Sign: set min_security_mode: Sign or SignAndEncrypt",
                    )
                )
            if target >= 2 and isinstance(entry, MqttAllow) and not entry.require_tls:
                findings.append(
                    Finding(
                        el,
                        "mqtt_without_tls",
                        f"conduit {conduit.id} into {conduit.to_zone} (SL-T {target}) allows MQTT "
                        "without TLS: "
                        "set require_tls: true",
                    )
                )
            if target >= 3 and isinstance(entry, ModbusAllow):
                codes = (
                    modbus_function_codes(entry.functions)
                    if entry.functions is not None
                    else set(range(1, 128))
                )
                writes = modbus_function_codes(["write", "program"]) & codes
                if writes:
                    findings.append(
                        Finding(
                            el,
                            "modbus_into_high_sl",
                            f"conduit {conduit.id} into {conduit.to_zone} (SL-T {target}) allows "
                            "Modbus/TCP writes, "
                            "which carry no authentication",
                        )
                    )
            for k, other in enumerate(conduit.allow):
                if k == j or not entry_subsumed(entry, other):
                    continue
                if entry_subsumed(other, entry) and k > j:
                    continue  # identical entries: report the later one only
                findings.append(
                    Finding(
                        el,
                        "rule_shadowed",
                        f"conduit {conduit.id} allow[{j}] ({entry.protocol}) adds nothing to allow[{k}]",
                    )
                )
                break
    return sorted(findings, key=lambda f: (f.line, f.code))


def _claimed_elsewhere(
    iv: tuple[str, int, int, int, str], ivs: list[tuple[str, int, int, int, str]], zone_index: dict[str, int]
) -> bool:
    """Is every address of ``iv`` won by a member of another zone (smaller, or as small and earlier)?"""
    zone, version, first, last, _ = iv
    winners = sorted(
        (f, end)
        for z, v, f, end, _m in ivs
        if z != zone
        and v == version
        and not (end < first or last < f)
        and (end - f, zone_index[z]) < (last - first, zone_index[zone])
    )
    cursor = first
    for f, end in winners:
        if f > cursor:
            return False
        cursor = max(cursor, end + 1)
        if cursor > last:
            return True
    return cursor > last
