"""A policy compiled for the per-event path: zone lookup by address and conduit lookup by zone pair.

Everything a check needs is turned into sets and sorted integer ranges once, when the policy is
loaded, so that judging one operation is a handful of dict and bisect lookups:

* :class:`ZoneIndex` answers "which zone is this host in": a MAC member first (the most specific
  statement a policy can make), then an asset name or tag through the inventory's lookup, then the
  smallest IP network or range that holds the address (so ``10.0.0.5/32`` in one zone beats
  ``10.0.0.0/24`` in another). The first lookup of an address walks the members once; the answer is
  kept in a bounded dict, so a host costs one dict lookup afterwards.
* :class:`CompiledPolicy` maps ``(initiator zone, responder zone)`` to the conduits between them.

Asset membership depends on the inventory, which changes while the sensor runs, so answers that
asked the inventory are kept for ``asset_ttl`` seconds of packet time only.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from policy.model import (
    ModbusAllow,
    MqttAllow,
    OpcUaAllow,
    OtherAllow,
    Policy,
    Zone,
    parse_address_member,
    parse_ranges,
)
from sensor.dissectors.modbus import codes as modbus_codes

AssetTags = Callable[[str], set[str]]
"""The inventory's lookup: the asset name and tags of an IP address (empty set when unknown)."""

UNZONED = "unzoned"

DEFAULT_PORTS = {"modbus": ((502, 502),), "opcua": ((4840, 4840),), "mqtt": ((1883, 1883),)}
DEFAULT_MQTT_TLS_PORTS = ((8883, 8883),)

SECURITY_MODE_RANK = {"None": 0, "Sign": 1, "SignAndEncrypt": 2}


class RangeSet:
    """A set of integers held as sorted, disjoint inclusive ranges; membership by bisection."""

    __slots__ = ("ends", "pairs", "starts")

    def __init__(self, pairs: Iterable[tuple[int, int]]) -> None:
        self.pairs = tuple(sorted(pairs))
        self.starts = [lo for lo, _ in self.pairs]
        self.ends = [hi for _, hi in self.pairs]

    @classmethod
    def parse(cls, spec: int | str | list[int | str], low: int, high: int) -> RangeSet:
        return cls(parse_ranges(spec, low, high))

    def __contains__(self, value: int) -> bool:
        i = bisect.bisect_right(self.starts, value) - 1
        return i >= 0 and value <= self.ends[i]

    def covers(self, lo: int, hi: int) -> bool:
        """True when every integer of ``lo..hi`` is in the set (ranges are merged, so one must hold it)."""
        i = bisect.bisect_right(self.starts, lo) - 1
        return i >= 0 and hi <= self.ends[i]

    def text(self) -> str:
        return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.pairs) or "(none)"

    def issubset(self, other: RangeSet) -> bool:
        return all(other.covers(lo, hi) for lo, hi in self.pairs)


# --- Modbus ------------------------------------------------------------------------------------

_NAME_TO_CODE = {name: code for code, name in modbus_codes.FUNCTION_NAMES.items()}


def modbus_function_codes(words: Iterable[int | str]) -> frozenset[int]:
    """Function codes named by numbers, names, categories (read/write/...) or classes (reserved...)."""
    out: set[int] = set()
    for w in words:
        if isinstance(w, int):
            out.add(w)
        elif w == "any":
            out.update(range(1, 128))
        elif w in _NAME_TO_CODE:
            out.add(_NAME_TO_CODE[w])
        elif w in modbus_codes.CATEGORIES:
            out.update(c for c in range(1, 128) if modbus_codes.category(c) == w)
        elif w in modbus_codes.CODE_CLASSES:
            out.update(c for c in range(1, 128) if modbus_codes.code_class(c) == w)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class ModbusRule:
    index: int
    entry: ModbusAllow
    functions: frozenset[int] | None
    units: RangeSet | None
    addresses: dict[str, RangeSet]
    values: dict[str, RangeSet]
    ports: RangeSet


@dataclass(frozen=True, slots=True)
class OpcUaRule:
    index: int
    entry: OpcUaAllow
    services: frozenset[str] | None
    nodes: frozenset[str] | None
    namespaces: frozenset[int] | None
    min_mode: int
    policies: frozenset[str] | None  # short names ("Basic256Sha256", "None")
    token_types: frozenset[str] | None
    ports: RangeSet


def split_filter(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


def topic_matches(filter_levels: tuple[str, ...], topic: str) -> bool:
    """MQTT 5.0 §4.7: does a topic name match a filter? ``$``-topics never match a leading wildcard."""
    levels = topic.split("/")
    if topic.startswith("$") and filter_levels and filter_levels[0] in ("+", "#"):
        return False
    return _covers(filter_levels, tuple(levels))


def filter_covers(allowed: tuple[str, ...], requested: tuple[str, ...]) -> bool:
    """Does every topic the ``requested`` filter matches also match ``allowed``?"""
    if requested and requested[0] in ("+", "#") and allowed and allowed[0] not in ("+", "#"):
        return False
    if requested and requested[0].startswith("$") and allowed and allowed[0] in ("+", "#"):
        return False  # MQTT 5.0 §4.7.2: a leading wildcard never reaches $-topics
    return _covers(allowed, requested)


def _covers(allowed: tuple[str, ...], requested: tuple[str, ...]) -> bool:
    for i, a in enumerate(allowed):
        if a == "#":
            return True  # also matches the parent level: 'a/#' matches 'a' (MQTT 5.0 §4.7.1.2)
        if i >= len(requested):
            return False
        r = requested[i]
        if r == "#" or (a != "+" and (r == "+" or a != r)):
            return False
    return len(requested) == len(allowed)


@dataclass(frozen=True, slots=True)
class MqttRule:
    index: int
    entry: MqttAllow
    publish: tuple[tuple[str, ...], ...] | None
    subscribe: tuple[tuple[str, ...], ...] | None
    qos: frozenset[int] | None
    retain: bool
    client_ids: frozenset[str] | None
    client_prefixes: tuple[str, ...]
    require_tls: bool
    ports: RangeSet
    tls_ports: RangeSet

    def client_allowed(self, client_id: str) -> bool:
        if self.client_ids is None:
            return True
        return client_id in self.client_ids or any(client_id.startswith(p) for p in self.client_prefixes)


@dataclass(frozen=True, slots=True)
class OtherRule:
    index: int
    entry: OtherAllow
    protocol: str
    transport: str
    ports: RangeSet | None


@dataclass(frozen=True, slots=True)
class CompiledConduit:
    id: str
    from_zone: str
    to_zone: str
    sl_target: int
    modbus: tuple[ModbusRule, ...]
    opcua: tuple[OpcUaRule, ...]
    mqtt: tuple[MqttRule, ...]
    other: tuple[OtherRule, ...]
    rule_count: int


def _ports(spec: list[int | str] | None, default: tuple[tuple[int, int], ...]) -> RangeSet:
    return RangeSet.parse(spec, 0, 65535) if spec is not None else RangeSet(default)


def policy_short_name(uri_or_name: str) -> str:
    """'http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256' -> 'Basic256Sha256'."""
    return uri_or_name.rsplit("#", 1)[-1] if uri_or_name else ""


def compile_conduit(
    conduit_id: str, from_zone: str, to_zone: str, sl: int, entries: Iterable[object]
) -> CompiledConduit:
    modbus: list[ModbusRule] = []
    opcua: list[OpcUaRule] = []
    mqtt: list[MqttRule] = []
    other: list[OtherRule] = []
    count = 0
    for index, e in enumerate(entries):
        count += 1
        if isinstance(e, ModbusAllow):
            modbus.append(
                ModbusRule(
                    index=index,
                    entry=e,
                    functions=modbus_function_codes(e.functions) if e.functions is not None else None,
                    units=RangeSet.parse(e.units, 0, 255) if e.units is not None else None,
                    addresses={t: RangeSet.parse(s, 0, 65535) for t, s in (e.addresses or {}).items()},
                    values={t: RangeSet.parse(s, 0, 65535) for t, s in (e.values or {}).items()},
                    ports=_ports(e.ports, DEFAULT_PORTS["modbus"]),
                )
            )
        elif isinstance(e, OpcUaAllow):
            opcua.append(
                OpcUaRule(
                    index=index,
                    entry=e,
                    services=frozenset(e.services) if e.services is not None else None,
                    nodes=frozenset(e.nodes) if e.nodes is not None else None,
                    namespaces=frozenset(e.namespaces) if e.namespaces is not None else None,
                    min_mode=SECURITY_MODE_RANK[e.min_security_mode],
                    policies=frozenset(policy_short_name(p) for p in e.security_policies)
                    if e.security_policies is not None
                    else None,
                    token_types=frozenset(e.user_token_types) if e.user_token_types is not None else None,
                    ports=_ports(e.ports, DEFAULT_PORTS["opcua"]),
                )
            )
        elif isinstance(e, MqttAllow):
            ids = e.client_ids
            mqtt.append(
                MqttRule(
                    index=index,
                    entry=e,
                    publish=tuple(split_filter(f) for f in e.publish) if e.publish is not None else None,
                    subscribe=tuple(split_filter(f) for f in e.subscribe)
                    if e.subscribe is not None
                    else None,
                    qos=frozenset(e.qos) if e.qos is not None else None,
                    retain=e.retain,
                    client_ids=frozenset(i for i in ids if not i.endswith("*")) if ids is not None else None,
                    client_prefixes=tuple(i[:-1] for i in ids or () if i.endswith("*")),
                    require_tls=e.require_tls,
                    ports=_ports(e.ports, DEFAULT_PORTS["mqtt"]),
                    tls_ports=_ports(e.tls_ports, DEFAULT_MQTT_TLS_PORTS),
                )
            )
        elif isinstance(e, OtherAllow):
            other.append(
                OtherRule(
                    index=index,
                    entry=e,
                    protocol=e.protocol,
                    transport=e.transport,
                    ports=RangeSet.parse(e.ports, 0, 65535) if e.ports is not None else None,
                )
            )
    return CompiledConduit(
        id=conduit_id,
        from_zone=from_zone,
        to_zone=to_zone,
        sl_target=sl,
        modbus=tuple(modbus),
        opcua=tuple(opcua),
        mqtt=tuple(mqtt),
        other=tuple(other),
        rule_count=count,
    )


# --- zones -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Interval:
    first: int
    last: int
    order: int  # zone position in the file: the tie-breaker
    zone: Zone


@dataclass(slots=True)
class ZoneIndex:
    """Which zone a host is in (see module docstring for the precedence)."""

    zones: list[Zone]
    asset_tags: AssetTags | None = None
    max_cache: int = 65536
    asset_ttl: float = 60.0
    by_mac: dict[str, Zone] = field(default_factory=dict)
    by_asset: list[tuple[str, str, Zone]] = field(default_factory=list)  # (kind, value, zone)
    intervals: dict[int, list[_Interval]] = field(default_factory=dict)
    starts: dict[int, list[int]] = field(default_factory=dict)
    cache: dict[tuple[str, str], tuple[Zone | None, float]] = field(default_factory=dict)
    cache_resets: int = 0

    @classmethod
    def build(cls, zones: list[Zone], asset_tags: AssetTags | None = None) -> ZoneIndex:
        index = cls(zones=zones, asset_tags=asset_tags)
        for order, zone in enumerate(zones):
            for member in zone.members:
                if not isinstance(member, str):
                    kind, value = ("asset", member.asset) if member.asset is not None else ("tag", member.tag)
                    index.by_asset.append((kind, value or "", zone))
                    continue
                kind, parsed = parse_address_member(member)
                if kind == "mac":
                    index.by_mac.setdefault(parsed, zone)
                elif kind == "range":
                    first, last = parsed
                    index.intervals.setdefault(first.version, []).append(
                        _Interval(int(first), int(last), order, zone)
                    )
                else:
                    net = parsed
                    index.intervals.setdefault(net.version, []).append(
                        _Interval(int(net.network_address), int(net.broadcast_address), order, zone)
                    )
        for version, ivs in index.intervals.items():
            ivs.sort(key=lambda iv: (iv.first, iv.last))
            index.starts[version] = [iv.first for iv in ivs]
        return index

    def lookup(self, ip: str, mac: str = "", ts: float = 0.0) -> Zone | None:
        key = (ip, mac)
        hit = self.cache.get(key)
        if hit is not None and (hit[1] == 0.0 or ts <= hit[1]):
            return hit[0]
        zone, asked_inventory = self._resolve(ip, mac)
        if len(self.cache) >= self.max_cache:
            self.cache.clear()
            self.cache_resets += 1
        self.cache[key] = (zone, ts + self.asset_ttl if asked_inventory else 0.0)
        return zone

    def _resolve(self, ip: str, mac: str) -> tuple[Zone | None, bool]:
        if mac and self.by_mac:
            zone = self.by_mac.get(mac.lower())
            if zone is not None:
                return zone, False
        asked = False
        if self.by_asset and self.asset_tags is not None:
            asked = True
            labels = self.asset_tags(ip)
            if labels:
                for _kind, label, zone in self.by_asset:
                    if label in labels:
                        return zone, True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None, asked
        value = int(addr)
        best: _Interval | None = None
        ivs = self.intervals.get(addr.version, [])
        # candidates start at or before the address; walk back over them (zones are few)
        for iv in ivs[: bisect.bisect_right(self.starts.get(addr.version, []), value)]:
            if iv.last >= value and (
                best is None or (iv.last - iv.first, iv.order) < (best.last - best.first, best.order)
            ):
                best = iv
        return (best.zone if best is not None else None), asked

    def invalidate(self) -> None:
        self.cache.clear()


class CompiledPolicy:
    """A validated policy ready for evaluation."""

    def __init__(self, policy: Policy, asset_tags: AssetTags | None = None) -> None:
        self.policy = policy
        self.default_deny = policy.default == "deny"
        self.window = policy.aggregation_window
        self.zones = ZoneIndex.build(policy.zones, asset_tags)
        self.zone_by_id = {z.id: z for z in policy.zones}
        pairs: dict[tuple[str, str], list[CompiledConduit]] = {}
        self.conduits: list[CompiledConduit] = []
        for c in policy.conduits:
            sl = c.security_level.target if c.security_level else 0
            compiled = compile_conduit(c.id, c.from_zone, c.to_zone, sl, c.allow)
            self.conduits.append(compiled)
            pairs.setdefault((c.from_zone, c.to_zone), []).append(compiled)
        self.by_pair: dict[tuple[str, str], tuple[CompiledConduit, ...]] = {
            k: tuple(v) for k, v in pairs.items()
        }

    def zone_of(self, ip: str, mac: str = "", ts: float = 0.0) -> Zone | None:
        return self.zones.lookup(ip, mac, ts)

    def conduits_between(self, src_zone: str, dst_zone: str) -> tuple[CompiledConduit, ...]:
        return self.by_pair.get((src_zone, dst_zone), ())


def load_compiled(path: Path, asset_tags: AssetTags | None = None) -> CompiledPolicy:
    """Load, validate and compile a policy file (raises PolicyError with file:line)."""
    from policy.load import load_policy

    return CompiledPolicy(load_policy(path), asset_tags)
