"""The learned model of normal behaviour: versioned, JSON-serialisable, diffable, resettable per asset.

Everything the baseline knows is a set of *facts* (ANCHORS.md §1 items 8 and 10). A fact is a tuple
whose first element names its section and whose other elements are the section's fields, e.g.
``("modbus_function", "10.0.0.5", "10.0.0.9", 1, 3)``. Learning adds facts; detection asks whether a
fact is known; accepting an alert adds the facts its evidence carries. The same tuples, as JSON
lists, travel in alert evidence, so "accept into baseline" is exact.

Sections:

=====================  ================================================  ========================
section                fields                                            kind of knowledge
=====================  ================================================  ========================
asset                  ip                                                set
edge                   client, server, proto                             set
modbus_unit            client, server, unit                              set
modbus_function        client, server, unit, function                    set
modbus_read            client, server, unit, table, first, last          address intervals
modbus_write           client, server, unit, table, first, last          address intervals
modbus_written_value   server, unit, table, address, value               [min, max] per address
opcua_service          client, server, service                           set
opcua_write            client, server, node                              set
opcua_call             client, server, method                            set
opcua_security         client, server, mode, policy                      set
mqtt_client            broker, client_id, ip                             set
mqtt_publish           broker, topic, client_id                          set
mqtt_subscribe         broker, filter, client_id                         set
mqtt_qos               broker, topic, qos                                set
mqtt_retain            broker, topic, client_id                          set
protocol_anomaly       client, server, kind                              set
allow                  kind, src, dst                                    set (accepted behaviour)
process_range          key, value                                        widens a value's range
process_rate           key, rate                                         raises a value's max rate
=====================  ================================================  ========================

Besides facts the baseline keeps statistics: per polled series (client, server, unit, function,
address) the interval count, mean, variance and extremes; per process value (a register, node or
topic value that is numeric) count, mean, variance, range and the largest rate of change seen.

The JSON form is sorted and indented, one fact per line, so ``diff -u`` of two files is readable;
:func:`diff` gives the same comparison as data. Each save that changes something increments
``revision`` and appends a history entry with what changed (bounded).
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sensor.errors import UserError

FORMAT: Final = "zonewarden-baseline"
SCHEMA: Final = 1
MAX_HISTORY: Final = 50
MAX_HISTORY_FACTS: Final = 200

Fact = tuple[Any, ...]

SET_SECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "asset": ("ip",),
    "edge": ("client", "server", "proto"),
    "modbus_unit": ("client", "server", "unit"),
    "modbus_function": ("client", "server", "unit", "function"),
    "opcua_service": ("client", "server", "service"),
    "opcua_write": ("client", "server", "node"),
    "opcua_call": ("client", "server", "method"),
    "opcua_security": ("client", "server", "mode", "policy"),
    "mqtt_client": ("broker", "client_id", "ip"),
    "mqtt_publish": ("broker", "topic", "client_id"),
    "mqtt_subscribe": ("broker", "filter", "client_id"),
    "mqtt_qos": ("broker", "topic", "qos"),
    "mqtt_retain": ("broker", "topic", "client_id"),
    "protocol_anomaly": ("client", "server", "kind"),
    "allow": ("kind", "src", "dst"),
}
RANGE_SECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "modbus_read": ("client", "server", "unit", "table"),
    "modbus_write": ("client", "server", "unit", "table"),
}
BOUND_SECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "modbus_written_value": ("server", "unit", "table", "address"),
}
# Fields holding an IP address, per section, for per-asset reset.
_IP_FIELDS: Final = frozenset({"ip", "client", "server", "broker", "src", "dst"})


@dataclass(slots=True)
class RunningStats:
    """Welford's running mean/variance plus extremes (numerically stable, O(1) per sample)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)
        self.lo = min(self.lo, x)
        self.hi = max(self.hi, x)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": _round(self.mean),
            "std": _round(self.std),
            "min": _round(self.lo) if self.n else None,
            "max": _round(self.hi) if self.n else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunningStats:
        n = int(d["n"])
        std = float(d["std"])
        return cls(
            n=n,
            mean=float(d["mean"]),
            m2=std * std * (n - 1) if n > 1 else 0.0,
            lo=float(d["min"]) if d.get("min") is not None else math.inf,
            hi=float(d["max"]) if d.get("max") is not None else -math.inf,
        )


@dataclass(slots=True)
class ValueStats:
    """A numeric process value: its distribution and the largest rate of change seen (units/s)."""

    stats: RunningStats
    max_rate: float = 0.0
    ups: int = 0  # consecutive samples that rose / fell while learning: tells a counter from a level
    downs: int = 0

    @property
    def monotonic(self) -> bool:
        """A counter or ramp (energy meter, uptime): it leaves any learned range by design."""
        moves = self.ups + self.downs
        return moves >= 5 and min(self.ups, self.downs) * 20 <= moves

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.stats.as_dict(),
            "max_rate": _round(self.max_rate),
            "ups": self.ups,
            "downs": self.downs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValueStats:
        return cls(
            RunningStats.from_dict(d),
            float(d.get("max_rate", 0.0)),
            int(d.get("ups", 0)),
            int(d.get("downs", 0)),
        )


def _round(x: float) -> float:
    return float(f"{x:.6g}") if math.isfinite(x) else x


def merge_interval(intervals: list[list[int]], first: int, last: int) -> bool:
    """Add [first, last] to sorted disjoint intervals, joining touching ones; True if it grew."""
    if covered(intervals, first, last):
        return False
    merged: list[list[int]] = []
    lo, hi = first, last
    placed = False
    for a, b in intervals:
        if b + 1 < lo:
            merged.append([a, b])
        elif hi + 1 < a:
            if not placed:
                merged.append([lo, hi])
                placed = True
            merged.append([a, b])
        else:
            lo, hi = min(lo, a), max(hi, b)
    if not placed:
        merged.append([lo, hi])
    intervals[:] = sorted(merged)
    return True


def covered(intervals: list[list[int]], first: int, last: int) -> bool:
    return any(a <= first and last <= b for a, b in intervals)


def format_intervals(intervals: Iterable[Iterable[int]]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in intervals)


def series_key(key: tuple[Any, ...]) -> str:
    """Text key of a polled series or process value for JSON (fields joined by '|')."""
    return "|".join(str(k) for k in key)


class Baseline:
    """The learned model. Mutated only through :meth:`add` (and :meth:`reset_asset`)."""

    def __init__(self) -> None:
        self.revision = 0
        self.created = 0.0  # packet time of the first learned event
        self.updated = 0.0  # packet time of the last change
        self.sets: dict[str, set[Fact]] = {name: set() for name in SET_SECTIONS}
        self.ranges: dict[str, dict[tuple[Any, ...], list[list[int]]]] = {n: {} for n in RANGE_SECTIONS}
        self.bounds: dict[str, dict[tuple[Any, ...], list[float]]] = {n: {} for n in BOUND_SECTIONS}
        self.polls: dict[tuple[Any, ...], RunningStats] = {}
        self.values: dict[tuple[Any, ...], ValueStats] = {}
        # ("writes" | "exceptions", client, server) -> most events seen in one burst window
        self.peaks: dict[tuple[Any, ...], float] = {}
        self.relearn: dict[str, float] = {}  # ip -> seconds of packet time to learn again
        self.history: list[dict[str, Any]] = []
        self._saved_snapshot: dict[str, Any] | None = None

    # --- facts ------------------------------------------------------------------------------------

    def knows(self, fact: Fact) -> bool:
        section = fact[0]
        sets = self.sets.get(section)
        if sets is not None:
            return fact in sets
        ranges = self.ranges.get(section)
        if ranges is not None:
            intervals = ranges.get(fact[1:-2])
            return intervals is not None and covered(intervals, fact[-2], fact[-1])
        bounds = self.bounds.get(section)
        if bounds is not None:
            b = bounds.get(fact[1:-1])
            return b is not None and b[0] <= fact[-1] <= b[1]
        if section == "process_range":
            v = self.values.get(tuple(fact[1]))
            return v is not None and v.stats.lo <= fact[2] <= v.stats.hi
        if section == "process_rate":
            v = self.values.get(tuple(fact[1]))
            return v is not None and abs(fact[2]) <= v.max_rate
        return False

    def add(self, fact: Fact) -> bool:
        """Fold a fact in; True when the baseline changed. Unknown sections raise ValueError."""
        section = fact[0]
        sets = self.sets.get(section)
        if sets is not None:
            if len(fact) != len(SET_SECTIONS[section]) + 1:
                raise ValueError(f"fact {fact!r}: {section} has fields {SET_SECTIONS[section]}")
            if fact in sets:
                return False
            sets.add(fact)
            return True
        ranges = self.ranges.get(section)
        if ranges is not None:
            intervals = ranges.setdefault(tuple(fact[1:-2]), [])
            return merge_interval(intervals, int(fact[-2]), int(fact[-1]))
        bounds = self.bounds.get(section)
        if bounds is not None:
            key = tuple(fact[1:-1])
            value = float(fact[-1])
            b = bounds.get(key)
            if b is None:
                bounds[key] = [value, value]
                return True
            if b[0] <= value <= b[1]:
                return False
            b[0], b[1] = min(b[0], value), max(b[1], value)
            return True
        if section == "process_range":
            v = self.values.setdefault(tuple(fact[1]), ValueStats(RunningStats()))
            if v.stats.n and v.stats.lo <= fact[2] <= v.stats.hi:
                return False
            if not v.stats.n:
                v.stats.add(float(fact[2]))
            v.stats.lo, v.stats.hi = min(v.stats.lo, fact[2]), max(v.stats.hi, fact[2])
            return True
        if section == "process_rate":
            v = self.values.setdefault(tuple(fact[1]), ValueStats(RunningStats()))
            if abs(fact[2]) <= v.max_rate:
                return False
            v.max_rate = abs(float(fact[2]))
            return True
        raise ValueError(f"unknown baseline section {section!r}")

    def allows(self, kind: str, src: str, dst: str) -> bool:
        allow = self.sets["allow"]
        return ("allow", kind, src, dst) in allow or ("allow", kind, src, "*") in allow

    def is_known_asset(self, ip: str) -> bool:
        return ("asset", ip) in self.sets["asset"]

    # --- per-asset reset ------------------------------------------------------------------------------

    def reset_asset(self, ip: str, relearn_seconds: float = 0.0) -> int:
        """Forget everything that involves ``ip``; return the number of entries removed.

        With ``relearn_seconds`` the next run learns that asset again for that long (packet time)
        while detecting for every other one.
        """
        removed = 0
        for section, fields in SET_SECTIONS.items():
            positions = [i + 1 for i, f in enumerate(fields) if f in _IP_FIELDS]
            keep = {f for f in self.sets[section] if not any(f[i] == ip for i in positions)}
            removed += len(self.sets[section]) - len(keep)
            self.sets[section] = keep
        for section, fields in RANGE_SECTIONS.items():
            removed += _drop_keys(self.ranges[section], fields, ip)
        for section, fields in BOUND_SECTIONS.items():
            removed += _drop_keys(self.bounds[section], fields, ip)
        for table in (self.polls, self.values, self.peaks):
            drop = [k for k in table if ip in k]
            removed += len(drop)
            for k in drop:
                del table[k]
        if relearn_seconds > 0:
            self.relearn[ip] = relearn_seconds
        return removed

    # --- JSON -------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The content (without revision and history): what :func:`diff` compares."""
        out: dict[str, Any] = {}
        for section, fields in SET_SECTIONS.items():
            out[section] = [
                dict(zip(fields, f[1:], strict=True)) for f in sorted(self.sets[section], key=str)
            ]
        for section, fields in RANGE_SECTIONS.items():
            out[section] = [
                {**dict(zip(fields, k, strict=True)), "addresses": format_intervals(v)}
                for k, v in sorted(self.ranges[section].items(), key=lambda kv: str(kv[0]))
            ]
        for section, fields in BOUND_SECTIONS.items():
            out[section] = [
                {**dict(zip(fields, k, strict=True)), "min": _round(v[0]), "max": _round(v[1])}
                for k, v in sorted(self.bounds[section].items(), key=lambda kv: str(kv[0]))
            ]
        out["polling"] = {
            series_key(k): v.as_dict() for k, v in sorted(self.polls.items(), key=lambda kv: str(kv[0]))
        }
        out["process_values"] = {
            series_key(k): v.as_dict() for k, v in sorted(self.values.items(), key=lambda kv: str(kv[0]))
        }
        out["peak_rates"] = {
            series_key(k): v for k, v in sorted(self.peaks.items(), key=lambda kv: str(kv[0]))
        }
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema": SCHEMA,
            "revision": self.revision,
            "created": self.created,
            "updated": self.updated,
            "relearn": dict(sorted(self.relearn.items())),
            **self.snapshot(),
            "history": self.history,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        if data.get("format") != FORMAT:
            raise UserError("not a zonewarden baseline (format field missing)")
        if data.get("schema") != SCHEMA:
            raise UserError(f"baseline schema {data.get('schema')!r} is not supported (want {SCHEMA})")
        b = cls()
        b.revision = int(data.get("revision", 0))
        b.created = float(data.get("created", 0.0))
        b.updated = float(data.get("updated", 0.0))
        b.relearn = {str(k): float(v) for k, v in (data.get("relearn") or {}).items()}
        b.history = list(data.get("history") or [])
        for section, fields in SET_SECTIONS.items():
            for row in data.get(section) or []:
                b.sets[section].add((section, *(row[f] for f in fields)))
        for section, fields in RANGE_SECTIONS.items():
            for row in data.get(section) or []:
                key = tuple(row[f] for f in fields)
                for part in str(row["addresses"]).split(","):
                    a, _, z = part.strip().partition("-")
                    merge_interval(b.ranges[section].setdefault(key, []), int(a), int(z or a))
        for section, fields in BOUND_SECTIONS.items():
            for row in data.get(section) or []:
                b.bounds[section][tuple(row[f] for f in fields)] = [float(row["min"]), float(row["max"])]
        for text, stats in (data.get("polling") or {}).items():
            b.polls[_parse_key(text)] = RunningStats.from_dict(stats)
        for text, stats in (data.get("process_values") or {}).items():
            b.values[_parse_key(text)] = ValueStats.from_dict(stats)
        for text, peak in (data.get("peak_rates") or {}).items():
            b.peaks[_parse_key(text)] = float(peak)
        b._saved_snapshot = b.snapshot()
        return b

    # --- files ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Baseline:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"{path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from exc
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a zonewarden baseline")
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}: malformed baseline: {exc}") from exc

    def commit(self, action: str, at: float, detail: str = "") -> bool:
        """Record a revision if the content changed since the last commit/load; True if it did."""
        now = self.snapshot()
        changes = diff_snapshots(self._saved_snapshot or Baseline().snapshot(), now)
        if not changes["added"] and not changes["removed"] and not changes["changed"]:
            return False
        self.revision += 1
        self.updated = at
        entry: dict[str, Any] = {"revision": self.revision, "action": action, "at": at}
        if detail:
            entry["detail"] = detail
        for part in ("added", "removed", "changed"):
            entry[part] = changes[part][:MAX_HISTORY_FACTS]
            entry[f"{part}_count"] = len(changes[part])
        self.history = [*self.history, entry][-MAX_HISTORY:]
        self._saved_snapshot = now
        return True

    def save(self, path: Path) -> None:
        text = json.dumps(self.to_json(), indent=1, sort_keys=True, ensure_ascii=False)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(path)

    def counts(self) -> dict[str, int]:
        out = {s: len(v) for s, v in self.sets.items()}
        out.update({s: len(v) for s, v in self.ranges.items()})
        out.update({s: len(v) for s, v in self.bounds.items()})
        out["polling"] = len(self.polls)
        out["process_values"] = len(self.values)
        out["peak_rates"] = len(self.peaks)
        return out


def _drop_keys(table: dict[tuple[Any, ...], Any], fields: tuple[str, ...], ip: str) -> int:
    positions = [i for i, f in enumerate(fields) if f in _IP_FIELDS]
    drop = [k for k in table if any(k[i] == ip for i in positions)]
    for k in drop:
        del table[k]
    return len(drop)


def _parse_key(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in text.split("|"))


def _rows(snapshot: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(section, identity, value) for every entry: identity says *what*, value says *how much*."""
    for section, content in snapshot.items():
        if isinstance(content, dict):
            for key, stats in content.items():
                yield section, key, stats
        else:
            for row in content:
                ident = {k: v for k, v in row.items() if k not in ("addresses", "min", "max")}
                rest = {k: v for k, v in row.items() if k in ("addresses", "min", "max")}
                yield section, json.dumps(ident, sort_keys=True), rest or None


def diff_snapshots(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    """What was added, removed and changed between two snapshots, as readable lines."""
    a = {(s, i): v for s, i, v in _rows(old)}
    b = {(s, i): v for s, i, v in _rows(new)}
    added = [
        f"{s} {i}" + (f" {json.dumps(b[(s, i)], sort_keys=True)}" if b[(s, i)] else "")
        for s, i in b
        if (s, i) not in a
    ]
    removed = [f"{s} {i}" for s, i in a if (s, i) not in b]
    changed = [
        f"{s} {i}: {json.dumps(a[(s, i)], sort_keys=True)} -> {json.dumps(b[(s, i)], sort_keys=True)}"
        for s, i in b
        if (s, i) in a and a[(s, i)] != b[(s, i)]
    ]
    return {"added": sorted(added), "removed": sorted(removed), "changed": sorted(changed)}


def diff(old: Baseline, new: Baseline) -> dict[str, list[str]]:
    return diff_snapshots(old.snapshot(), new.snapshot())


def fact_from_json(value: Any) -> Fact:
    """A fact from alert evidence (a JSON list); raises ValueError when it is not one."""
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        raise ValueError(f"not a baseline fact: {value!r}")
    if value[0] in ("process_range", "process_rate"):
        return (value[0], tuple(value[1]), float(value[2]))
    return tuple(value)


def is_special_address(ip: str) -> bool:
    """Multicast, broadcast and unspecified destinations are not assets (service discovery noise)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    if addr.is_multicast or addr.is_unspecified:
        return True
    return isinstance(addr, ipaddress.IPv4Address) and (ip.endswith(".255") or ip == "255.255.255.255")
