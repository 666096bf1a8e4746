"""The asset inventory: what is on the network, what it says it is, and what it does.

Assets are keyed by IP address, as a SPAN port sees them. The MAC an IP is seen behind is kept, but
MACs never merge assets: a MAC seen behind many IPs is a router or layer-3 gateway (every routed host
appears behind it), so it is marked as such and its vendor is not given to the hosts behind it.

Everything an asset accumulates is idempotent: sets (peers, function codes, units, topics), address
intervals, value minima and maxima, first/last times. Replaying the same capture twice therefore
changes nothing, and a run that restarts after a crash can re-read what it had already seen (the only
counters, packets and bytes, live on graph edges and are absorbed once per flow id; ``observer.py``).

Bounds (hostile inputs G1, G2): at most ``Limits.max_assets`` assets, the least recently seen evicted
first (``inventory.evicted``); at most ``Limits.max_asset_detail`` entries per asset in each detail table
and per fact set; every text field cut to ``Limits.max_field_chars`` (``identity.clean_text``).
"""

from __future__ import annotations

import bisect
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from sensor.assets.identity import clean_text
from sensor.assets.oui import OuiDatabase, default_database
from sensor.limits import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

ROUTER_MIN_IPS: Final = 4  # distinct IPs behind one MAC before it is called a router/gateway
MAX_MACS_PER_ASSET: Final = 4
MAX_IPS_PER_MAC: Final = 64  # a router's IP list is a sample; the count keeps going
MAX_INTERVALS: Final = 64  # address intervals per register-map entry and operation
MAX_CERTIFICATES_PER_ASSET: Final = 8
CONFLICT_KINDS: Final = ("opcua.application_uri", "mqtt.client_id")
MAX_CONFLICT_IPS: Final = 16

MODBUS_TABLES: Final = ("coils", "discrete_inputs", "holding_registers", "input_registers")


# --- address intervals ----------------------------------------------------------------------------


class IntervalSet:
    """Sorted, merged, inclusive address intervals; past ``MAX_INTERVALS`` the closest ones merge."""

    __slots__ = ("_last", "spans")

    def __init__(self, spans: Iterable[Iterable[int]] = ()) -> None:
        self.spans: list[list[int]] = [[int(a), int(b)] for a, b in spans]
        self._last: tuple[int, int] = (-1, -1)

    def add(self, start: int, end: int) -> bool:
        """Add ``[start, end]``; True when something new was covered."""
        if (start, end) == self._last:
            return False  # polling reads the same block again and again
        self._last = (start, end)
        spans = self.spans
        i = bisect.bisect_right(spans, [start, end])
        if i and spans[i - 1][0] <= start and spans[i - 1][1] >= end:
            return False
        # merge with every span that overlaps or touches [start, end]
        lo = i
        while lo and spans[lo - 1][1] >= start - 1:
            lo -= 1
        hi = i
        while hi < len(spans) and spans[hi][0] <= end + 1:
            hi += 1
        if lo < hi:
            start = min(start, spans[lo][0])
            end = max(end, spans[hi - 1][1])
        spans[lo:hi] = [[start, end]]
        if len(spans) > MAX_INTERVALS:
            gaps = [spans[k + 1][0] - spans[k][1] for k in range(len(spans) - 1)]
            k = gaps.index(min(gaps))
            spans[k : k + 2] = [[spans[k][0], spans[k + 1][1]]]
        return True

    def as_text(self) -> list[str]:
        return [f"{a}" if a == b else f"{a}-{b}" for a, b in self.spans]


class RegisterUse:
    """How one Modbus table of one unit is used (ANCHORS.md §1 item 8: per server, unit, table)."""

    __slots__ = ("max_value", "min_value", "read", "readers", "writers", "written")

    def __init__(self) -> None:
        self.read = IntervalSet()
        self.written = IntervalSet()
        self.readers: set[str] = set()
        self.writers: set[str] = set()
        self.min_value: int | None = None
        self.max_value: int | None = None

    def values(self, values: tuple[int, ...]) -> bool:
        if not values:
            return False
        return self._extend(min(values), max(values))

    def bits(self, values: tuple[int, ...]) -> bool:
        """:meth:`values` for a coil or discrete-input table, whose values are bools (0 or 1). The
        extremes are then found by membership, which stops at the first match, instead of two scans
        of up to 2000 values (MODBUS v1.1b3 §6.1: a read of 2000 coils)."""
        if not values:
            return False
        return self._extend(0 if False in values else 1, 1 if True in values else 0)

    def _extend(self, lo: int, hi: int) -> bool:
        changed = False
        if self.min_value is None or lo < self.min_value:
            self.min_value, changed = int(lo), True
        if self.max_value is None or hi > self.max_value:
            self.max_value, changed = int(hi), True
        return changed

    def to_record(self) -> dict[str, Any]:
        return {
            "read": self.read.spans,
            "written": self.written.spans,
            "readers": sorted(self.readers),
            "writers": sorted(self.writers),
            "min_value": self.min_value,
            "max_value": self.max_value,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> RegisterUse:
        use = cls()
        use.read = IntervalSet(rec.get("read", ()))
        use.written = IntervalSet(rec.get("written", ()))
        use.readers = set(rec.get("readers", ()))
        use.writers = set(rec.get("writers", ()))
        use.min_value = rec.get("min_value")
        use.max_value = rec.get("max_value")
        return use


# --- assets ---------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Asset:
    """One IP address and everything learnt about it. Mutated only through :class:`Inventory`."""

    ip: str
    first_seen: float
    last_seen: float
    macs: dict[str, float] = field(default_factory=dict)  # MAC -> last seen
    protocols: set[str] = field(default_factory=set)
    identity: dict[str, str] = field(default_factory=dict)
    certificates: dict[str, dict[str, Any]] = field(default_factory=dict)  # sha256 -> summary
    facts: dict[str, set[str]] = field(default_factory=dict)  # role evidence, e.g. "modbus.units"
    modbus_map: dict[str, RegisterUse] = field(default_factory=dict)  # "unit/table" -> use
    opcua_nodes: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # node -> op -> clients
    mqtt_topics: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # topic -> side -> ips
    evicted: bool = False

    def fact(self, key: str) -> set[str]:
        return self.facts.get(key, set())

    @property
    def mac(self) -> str:
        """The MAC most recently seen for this IP ("" when the link layer had none)."""
        return max(self.macs, key=self.macs.__getitem__) if self.macs else ""

    def to_record(self) -> dict[str, Any]:
        """JSON-safe form (the store's ``detail`` column and ``assets show --json``)."""
        return {
            "ip": self.ip,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "macs": dict(sorted(self.macs.items())),
            "protocols": sorted(self.protocols),
            "identity": dict(sorted(self.identity.items())),
            "certificates": dict(sorted(self.certificates.items())),
            "facts": {k: sorted(v) for k, v in sorted(self.facts.items())},
            "modbus_map": {k: v.to_record() for k, v in sorted(self.modbus_map.items())},
            "opcua_nodes": {
                n: {op: sorted(ips) for op, ips in sorted(ops.items())}
                for n, ops in sorted(self.opcua_nodes.items())
            },
            "mqtt_topics": {
                t: {side: sorted(ips) for side, ips in sorted(sides.items())}
                for t, sides in sorted(self.mqtt_topics.items())
            },
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Asset:
        return cls(
            ip=rec["ip"],
            first_seen=float(rec["first_seen"]),
            last_seen=float(rec["last_seen"]),
            macs={k: float(v) for k, v in rec.get("macs", {}).items()},
            protocols=set(rec.get("protocols", ())),
            identity=dict(rec.get("identity", {})),
            certificates=dict(rec.get("certificates", {})),
            facts={k: set(v) for k, v in rec.get("facts", {}).items()},
            modbus_map={k: RegisterUse.from_record(v) for k, v in rec.get("modbus_map", {}).items()},
            opcua_nodes={
                n: {op: set(ips) for op, ips in ops.items()} for n, ops in rec.get("opcua_nodes", {}).items()
            },
            mqtt_topics={
                t: {side: set(ips) for side, ips in sides.items()}
                for t, sides in rec.get("mqtt_topics", {}).items()
            },
        )


@dataclass(slots=True, eq=False)
class MacInfo:
    """A MAC address and the IPs seen behind it (a sample of at most ``MAX_IPS_PER_MAC``)."""

    mac: str
    first_seen: float
    last_seen: float
    ips: set[str] = field(default_factory=set)
    ip_count: int = 0
    is_router: bool = False


@dataclass(frozen=True, slots=True)
class IdentityConflict:
    """The same identity value (ApplicationUri, MQTT client id) claimed from more than one IP."""

    kind: str
    value: str
    ip: str  # the IP that just claimed it
    others: tuple[str, ...]  # the IPs that claimed it before


class Inventory:
    """Bounded map of IP -> :class:`Asset`, MAC table and identity index.

    ``dirty`` holds the IPs changed since the store last saved them, ``deleted`` the IPs evicted since
    then; ``on_evict`` is told about each eviction (the graph drops the node and its edges).
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, oui: OuiDatabase | None = None) -> None:
        self.limits = limits
        self.max_chars = limits.max_field_chars
        self.max_detail = limits.max_asset_detail
        self.oui = oui if oui is not None else default_database()
        self.assets: OrderedDict[str, Asset] = OrderedDict()  # least recently seen first
        self.macs: OrderedDict[str, MacInfo] = OrderedDict()  # least recently seen first
        self.identity_index: dict[tuple[str, str], set[str]] = {}
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()
        self.track_deleted = False  # a store is attached and must hear of evicted assets
        self.dirty_macs: set[str] = set()
        self.evicted = 0
        self.detail_dropped = 0
        self.on_evict: Callable[[str], None] | None = None

    def __len__(self) -> int:
        return len(self.assets)

    def __iter__(self) -> Iterator[Asset]:
        return iter(self.assets.values())

    def get(self, ip: str) -> Asset | None:
        return self.assets.get(ip)

    # --- presence -----------------------------------------------------------------------------

    def touch(self, ip: str, ts: float) -> Asset:
        """The asset for ``ip``, created if new (evicting the least recently seen one at the cap)."""
        assets = self.assets
        asset = assets.get(ip)
        if asset is not None:
            assets.move_to_end(ip)
            if ts > asset.last_seen:
                asset.last_seen = ts
            self.dirty.add(ip)
            return asset
        while len(assets) >= self.limits.max_assets > 0:
            self._evict_oldest()
        asset = Asset(ip, ts, ts)
        assets[ip] = asset
        self.dirty.add(ip)
        self.deleted.discard(ip)
        return asset

    def _evict_oldest(self) -> None:
        ip, asset = self.assets.popitem(last=False)
        asset.evicted = True
        self.evicted += 1
        self.dirty.discard(ip)
        if self.track_deleted:
            self.deleted.add(ip)
        for kind in CONFLICT_KINDS:
            for value in self._identity_values(asset, kind):
                holders = self.identity_index.get((kind, value))
                if holders is not None:
                    holders.discard(ip)
                    if not holders:
                        del self.identity_index[(kind, value)]
        if self.on_evict is not None:
            self.on_evict(ip)

    def see_mac(self, asset: Asset, mac: str, ts: float) -> None:
        """Record that ``asset`` was seen behind ``mac`` (all-zero and empty MACs are ignored)."""
        if not mac or mac == "00:00:00:00:00:00":
            return
        macs = asset.macs
        if mac in macs:
            if ts > macs[mac]:
                macs[mac] = ts
        else:
            if len(macs) >= MAX_MACS_PER_ASSET:
                del macs[min(macs, key=macs.__getitem__)]
            macs[mac] = ts
        info = self.macs.get(mac)
        if info is None:
            while len(self.macs) >= self.limits.max_assets > 0:
                oldest, _ = self.macs.popitem(last=False)
                self.dirty_macs.discard(oldest)
            info = self.macs[mac] = MacInfo(mac, ts, ts)
        else:
            self.macs.move_to_end(mac)
        if ts > info.last_seen:
            info.last_seen = ts
        if asset.ip not in info.ips:
            info.ip_count += 1
            if len(info.ips) < MAX_IPS_PER_MAC:
                info.ips.add(asset.ip)
            if info.ip_count >= ROUTER_MIN_IPS and not info.is_router:
                info.is_router = True
                log.debug("MAC %s seen behind %d IPs: router/gateway", mac, info.ip_count)
            self.dirty_macs.add(mac)

    def vendor(self, asset: Asset) -> str:
        """OUI vendor of the asset's own MAC (none when its MAC is a router's, seen behind many IPs)."""
        mac = asset.mac
        if not mac:
            return ""
        info = self.macs.get(mac)
        if info is not None and info.is_router:
            return ""
        return self.oui.lookup(mac) or ""

    def behind_router(self, asset: Asset) -> str:
        """The router MAC the asset is seen behind, or ""."""
        mac = asset.mac
        info = self.macs.get(mac) if mac else None
        return mac if info is not None and info.is_router else ""

    # --- facts and identity -------------------------------------------------------------------

    def add_fact(self, asset: Asset, key: str, value: str) -> bool:
        """Add ``value`` to the asset's fact set ``key`` (bounded); True when it was new."""
        values = asset.facts.get(key)
        if values is None:
            values = asset.facts[key] = set()
        elif value in values:
            return False
        if len(values) >= self.max_detail:
            self.detail_dropped += 1
            return False
        values.add(value)
        return True

    def set_identity(self, asset: Asset, key: str, value: str) -> IdentityConflict | None:
        """Set an identity field (text capped); a conflict when a unique identity shows up on a 2nd IP."""
        if not value:
            return None
        text = clean_text(value, self.max_chars)
        if asset.identity.get(key) == text:
            return None
        if len(asset.identity) >= self.max_detail and key not in asset.identity:
            self.detail_dropped += 1
            return None
        asset.identity[key] = text
        if key in CONFLICT_KINDS:
            return self._index_identity(asset, key, text)
        return None

    def add_identity_value(self, asset: Asset, kind: str, value: str) -> IdentityConflict | None:
        """Add one of several values of an identity (MQTT client ids of one host); conflicts as above."""
        text = clean_text(value, self.max_chars)
        if not self.add_fact(asset, kind, text):
            return None
        return self._index_identity(asset, kind, text) if kind in CONFLICT_KINDS else None

    def _identity_values(self, asset: Asset, kind: str) -> set[str]:
        values = set(asset.fact(kind))
        if kind in asset.identity:
            values.add(asset.identity[kind])
        return values

    def _index_identity(self, asset: Asset, kind: str, value: str) -> IdentityConflict | None:
        holders = self.identity_index.setdefault((kind, value), set())
        if asset.ip in holders:
            return None
        others = tuple(sorted(holders))
        if len(holders) < MAX_CONFLICT_IPS:
            holders.add(asset.ip)
        return IdentityConflict(kind, value, asset.ip, others) if others else None

    def add_certificate(self, asset: Asset, sha256: str, summary: dict[str, Any]) -> bool:
        if sha256 in asset.certificates:
            return False
        if len(asset.certificates) >= MAX_CERTIFICATES_PER_ASSET:
            oldest = next(iter(asset.certificates))
            del asset.certificates[oldest]
        asset.certificates[sha256] = {
            k: clean_text(v, self.max_chars)
            if isinstance(v, str)
            else [clean_text(x, self.max_chars) for x in v]
            if isinstance(v, list)
            else v
            for k, v in summary.items()
        }
        return True

    # --- protocol detail ----------------------------------------------------------------------

    def register_use(self, asset: Asset, unit: int, table: str) -> RegisterUse | None:
        key = f"{unit}/{table}"
        use = asset.modbus_map.get(key)
        if use is None:
            if len(asset.modbus_map) >= self.max_detail:
                self.detail_dropped += 1
                return None
            use = asset.modbus_map[key] = RegisterUse()
        return use

    def add_node_use(self, asset: Asset, node_id: str, op: str, client: str) -> None:
        node = clean_text(node_id, self.max_chars)
        ops = asset.opcua_nodes.get(node)
        if ops is None:
            if len(asset.opcua_nodes) >= self.max_detail:
                self.detail_dropped += 1
                return
            ops = asset.opcua_nodes[node] = {}
        clients = ops.setdefault(op, set())
        if client not in clients and len(clients) < self.max_detail:
            clients.add(client)

    def add_topic_use(self, broker: Asset, topic: str, side: str, client: str) -> None:
        """``side`` is ``publishers``, ``subscribers`` (by filter) or ``receivers`` (deliveries seen)."""
        name = clean_text(topic, self.max_chars)
        sides = broker.mqtt_topics.get(name)
        if sides is None:
            if len(broker.mqtt_topics) >= self.max_detail:
                self.detail_dropped += 1
                return
            sides = broker.mqtt_topics[name] = {}
        clients = sides.setdefault(side, set())
        if client not in clients and len(clients) < self.max_detail:
            clients.add(client)

    # --- persistence --------------------------------------------------------------------------

    def load(self, assets: Iterable[Asset], macs: Iterable[MacInfo]) -> None:
        """Take assets and MACs saved by the store (oldest first), rebuilding the identity index."""
        for asset in sorted(assets, key=lambda a: a.last_seen):
            if len(self.assets) >= self.limits.max_assets:
                self._evict_oldest()
            self.assets[asset.ip] = asset
            for kind in CONFLICT_KINDS:
                for value in self._identity_values(asset, kind):
                    holders = self.identity_index.setdefault((kind, value), set())
                    if len(holders) < MAX_CONFLICT_IPS:
                        holders.add(asset.ip)
        for info in macs:
            if len(self.macs) < self.limits.max_assets:
                self.macs[info.mac] = info
        self.dirty.clear()
        self.dirty_macs.clear()


NAME_KEYS: Final = (
    "opcua.application_name",
    "modbus.product_name",
    "modbus.model_name",
    "modbus.vendor_name",
    "opcua.application_uri",
    "tls.sni",
    "product_name",
    "plc_name",
    "name_of_station",
    "station_name",
)


def asset_name(asset: Asset) -> str:
    """A short name for lists: what the device calls itself, by the most telling identity field."""
    for key in NAME_KEYS:
        value = asset.identity.get(key)
        if value:
            return value
    for key, value in sorted(asset.identity.items()):
        if key.endswith((".product_name", ".plc_name", ".name_of_station", ".model_name")):
            return value
    ids = sorted(asset.fact("mqtt.client_id"))
    return ids[0] if ids else ""
