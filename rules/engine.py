"""The rule engine: Suricata-format rules evaluated on zonewarden's own app-layer events.

Loading (:meth:`RuleSet.compile`) turns every parsed rule into a :class:`CompiledRule` - header
predicates (addresses and ports with variables, lists, ranges and negation; ``->`` or ``<>``), value
keywords, content groups on sticky buffers, ``flow``, thresholds - or records why it cannot:
``invalid`` (Suricata would refuse it too) or ``unsupported`` (a keyword this engine does not
evaluate). Neither kind is ever loaded, so no rule passes or matches silently; both are counted and
listed (``zonewarden rules list --unsupported``).

Evaluation (:class:`RulesObserver`) looks rules up by the event's ``app_proto`` (and anomalies by
their protocol), so an event only meets the rules of its protocol; every per-event test is a
precompiled closure. ``pass`` rules are evaluated first and silence the event, as in Suricata's
default action order (pass, drop, reject, alert); ``drop``/``reject`` alert like ``alert`` because
a passive sensor never blocks. ``threshold`` and ``detection_filter`` count in packet time, in a
bounded table.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rules import keywords as kw
from rules.parse import ParsedRule, RuleSyntaxError, parse_rules_text, unquote
from sensor.records import Alert, ProtocolAnomaly

log = logging.getLogger(__name__)

_MITRE = re.compile(r"^T\d{4}(?:\.\d{3})?$")
_THRESHOLD_TABLE_CAP = 65536


@dataclass(frozen=True, slots=True)
class Threshold:
    """``threshold`` (type threshold|limit|both|backoff) or ``detection_filter`` (kind="detection")."""

    kind: str
    track: str
    count: int
    seconds: float = 0.0
    multiplier: int = 0


@dataclass(slots=True)
class CompiledRule:
    parsed: ParsedRule
    app_proto: str  # index key: "modbus" | "mqtt" | "opcua" | "tls" | "anomaly:<proto>"
    predicates: tuple[kw.Predicate, ...]
    src: Callable[[str], bool] | None
    sport: Callable[[int], bool] | None
    dst: Callable[[str], bool] | None
    dport: Callable[[int], bool] | None
    bidirectional: bool
    classtype: str = ""
    priority: int = 3
    mitre: tuple[str, ...] = ()
    threshold: Threshold | None = None
    flow_to_server: bool | None = None
    matches: int = 0
    alerts: int = 0

    @property
    def sid(self) -> int:
        return self.parsed.sid

    def header_matches(self, ev: Any) -> bool:
        if self.src is None and self.sport is None and self.dst is None and self.dport is None:
            return True
        flow = ev.flow
        if flow is None:
            return False
        sip, sport, dip, dport = flow.endpoints(ev.to_server)
        if self._side(sip, sport, dip, dport):
            return True
        return self.bidirectional and self._side(dip, dport, sip, sport)

    def _side(self, sip: str, sport: int, dip: str, dport: int) -> bool:
        return (
            (self.src is None or self.src(sip))
            and (self.sport is None or self.sport(sport))
            and (self.dst is None or self.dst(dip))
            and (self.dport is None or self.dport(dport))
        )


@dataclass(frozen=True, slots=True)
class RejectedRule:
    parsed: ParsedRule | None
    status: str  # "invalid" | "unsupported"
    reason: str
    where: str


@dataclass(slots=True)
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    rejected: list[RejectedRule] = field(default_factory=list)
    disabled: list[ParsedRule] = field(default_factory=list)
    by_proto: dict[str, list[CompiledRule]] = field(default_factory=dict)

    @classmethod
    def compile(
        cls,
        parsed: Iterable[ParsedRule],
        variables: dict[str, str] | None = None,
        syntax_errors: Iterable[RuleSyntaxError] = (),
    ) -> RuleSet:
        merged = dict(kw.DEFAULT_VARS)
        merged.update(variables or {})
        out = cls()
        for err in syntax_errors:
            where, _, reason = str(err).partition(": ")
            out.rejected.append(RejectedRule(None, "invalid", reason or str(err), where))
        seen: set[tuple[int, int]] = set()
        for rule in parsed:
            if not rule.enabled:
                out.disabled.append(rule)
                continue
            if rule.key in seen:
                out.rejected.append(RejectedRule(rule, "invalid", f"duplicate sid {rule.sid}", rule.where))
                continue
            seen.add(rule.key)
            try:
                compiled = compile_rule(rule, merged)
            except kw.RuleUnsupported as exc:
                out.rejected.append(RejectedRule(rule, "unsupported", str(exc), rule.where))
                continue
            except kw.RuleInvalid as exc:
                out.rejected.append(RejectedRule(rule, "invalid", str(exc), rule.where))
                continue
            out.rules.append(compiled)
        for r in out.rules:
            out.by_proto.setdefault(r.app_proto, []).append(r)
        # pass rules first (Suricata's default action order), then by sid for stable output
        for rules in out.by_proto.values():
            rules.sort(key=lambda r: (r.parsed.action != "pass", r.sid))
        return out

    @classmethod
    def from_paths(cls, paths: Sequence[Path], variables: dict[str, str] | None = None) -> RuleSet:
        """Rules of files (``*.rules``) or directories of them."""
        parsed: list[ParsedRule] = []
        errors: list[RuleSyntaxError] = []
        for path in expand_rule_paths(paths):
            rules, errs = parse_rules_text(path.read_text(encoding="utf-8", errors="replace"), str(path))
            parsed.extend(rules)
            errors.extend(errs)
        return cls.compile(parsed, variables, errors)

    def counts(self) -> dict[str, int]:
        c = Counter(r.status for r in self.rejected)
        return {
            "loaded": len(self.rules),
            "disabled": len(self.disabled),
            "unsupported": c.get("unsupported", 0),
            "invalid": c.get("invalid", 0),
        }


def expand_rule_paths(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(x for x in p.iterdir() if x.suffix == ".rules" and x.is_file()))
        else:
            out.append(p)
    return out


def _parse_kv(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        key, _, val = part.partition(" ")
        out[key.strip().lower()] = val.strip()
    return out


def _threshold(value: str, detection: bool) -> Threshold:
    kv = _parse_kv(value)
    kind = "detection" if detection else kv.get("type", "")
    if kind not in ("threshold", "limit", "both", "backoff", "detection"):
        raise kw.RuleInvalid(f"threshold type {kind!r} unknown")
    track = kv.get("track", "")
    if track not in ("by_src", "by_dst", "by_both", "by_rule", "by_flow"):
        raise kw.RuleInvalid(f"threshold track {track!r} unknown")
    if "unique_on" in kv:
        raise kw.RuleUnsupported("detection_filter unique_on is not supported")
    try:
        count = int(kv["count"])
        seconds = float(kv["seconds"]) if "seconds" in kv else 0.0
        multiplier = int(kv["multiplier"]) if "multiplier" in kv else 0
    except (KeyError, ValueError) as exc:
        raise kw.RuleInvalid(f"threshold needs a count and seconds: {value!r}") from exc
    if count < 1 and kind != "detection":
        raise kw.RuleInvalid("threshold count must be at least 1")
    if kind == "backoff":
        if track != "by_flow" or multiplier < 2:
            raise kw.RuleInvalid("backoff needs track by_flow and a multiplier >= 2")
    elif seconds <= 0 and kind != "limit":
        raise kw.RuleInvalid(f"{kind} needs seconds > 0")
    return Threshold(kind, track, count, seconds, multiplier)


def _flow(value: str) -> tuple[bool | None, bool]:
    """-> (to_server wanted or None, matches at all)."""
    to_server: bool | None = None
    for item in value.split(","):
        item = item.strip().lower()
        if item in ("to_server", "from_client"):
            to_server = True
        elif item in ("to_client", "from_server"):
            to_server = False
        elif item in ("established", "stateless", "only_stream"):
            # app-layer events only exist on streams the dissector follows (mid-stream included)
            continue
        elif item in ("not_established", "no_stream", "only_frag", "no_frag"):
            raise kw.RuleUnsupported(f"flow:{item} cannot be evaluated on app-layer events")
        else:
            raise kw.RuleInvalid(f"unknown flow option {item!r}")
    return to_server, True


def compile_rule(rule: ParsedRule, variables: dict[str, str]) -> CompiledRule:
    """One parsed rule -> compiled rule; raises RuleUnsupported / RuleInvalid."""
    header_proto = rule.proto
    if header_proto not in kw.APP_PROTOS and header_proto not in kw.TRANSPORT_PROTOS:
        raise kw.RuleUnsupported(f"protocol {header_proto!r} is not dissected by zonewarden")
    app_protos: set[str] = set()
    anomaly_proto = ""
    predicates: list[kw.Predicate] = []
    content_groups: list[kw.Predicate] = []
    classtype = ""
    priority: int | None = None
    threshold: Threshold | None = None
    to_server: bool | None = None

    buffer_name: str | None = None
    buffer_getter: kw.BufferGetter | None = None
    items: list[kw.ContentItem] = []
    bsize: Callable[[int], bool] | None = None

    def close_group() -> None:
        nonlocal items, bsize
        if buffer_getter is not None and (items or bsize is not None):
            content_groups.append(kw.compile_content_group(buffer_getter, items, bsize))
        items = []
        bsize = None

    for name, value in rule.options:
        if name in kw.META_KEYWORDS:
            if name == "classtype":
                classtype = (value or "").strip()
                if classtype not in kw.CLASSTYPES:
                    raise kw.RuleInvalid(f"unknown classtype {classtype!r}")
            elif name == "priority":
                if value is None or not value.strip().isdigit() or not 1 <= int(value) <= 255:
                    raise kw.RuleInvalid(f"priority must be 1..255, got {value!r}")
                priority = int(value)
            continue
        if name in kw.UNSUPPORTED_BUFFERS:
            raise kw.RuleUnsupported(f"{name}: {kw.UNSUPPORTED_BUFFERS[name]}")
        if name in kw.BUFFERS and value is None:
            close_group()
            app, getter = kw.BUFFERS[name]
            app_protos.add(app)
            buffer_name, buffer_getter = name, getter
            continue
        if name in kw.VALUE_KEYWORDS:
            if value is None:
                raise kw.RuleInvalid(f"{name} needs a value")
            app, compiler = kw.VALUE_KEYWORDS[name]
            app_protos.add(app)
            predicates.append(compiler(unquote(value) if value.startswith('"') else value))
            continue
        if name == "content":
            if buffer_getter is None:
                raise kw.RuleUnsupported(
                    "content on the packet payload: zonewarden matches app-layer buffers only"
                )
            if value is None:
                raise kw.RuleInvalid("content needs a value")
            pattern, negated = kw.parse_content(value)
            items.append(kw.ContentItem(pattern=pattern, negated=negated))
            continue
        if name == "pcre":
            if buffer_getter is None:
                raise kw.RuleUnsupported(
                    "pcre on the packet payload: zonewarden matches app-layer buffers only"
                )
            items.append(kw.parse_pcre(value or ""))
            continue
        if name in kw.CONTENT_MODIFIERS:
            if not items or items[-1].regex is not None:
                if name == "fast_pattern":
                    continue
                raise kw.RuleInvalid(f"{name} must follow a content")
            _apply_modifier(items[-1], name, value)
            continue
        if name == "bsize":
            if buffer_getter is None or value is None:
                raise kw.RuleInvalid("bsize needs a sticky buffer and a value")
            bsize = kw.compile_uint(value, maximum=1 << 32)
            continue
        if name == "flow":
            to_server, _ = _flow(value or "")
            continue
        if name in ("threshold", "detection_filter"):
            if threshold is not None:
                raise kw.RuleInvalid("only one threshold or detection_filter per rule")
            threshold = _threshold(value or "", name == "detection_filter")
            continue
        if name == "app-layer-event":
            anomaly_proto, pred = kw._app_layer_event(value or "")
            predicates.append(pred)
            continue
        raise kw.RuleUnsupported(f"keyword {name!r} is not supported")
    close_group()
    del buffer_name

    if header_proto in kw.APP_PROTOS:
        app_protos.add(header_proto)
    if anomaly_proto:
        if app_protos - {anomaly_proto}:
            raise kw.RuleUnsupported("app-layer-event cannot be combined with other app-layer keywords")
        if content_groups or len(predicates) > 1:
            raise kw.RuleUnsupported("app-layer-event cannot be combined with app-layer keywords")
        index = f"anomaly:{anomaly_proto}"
    else:
        if len(app_protos) > 1:
            raise kw.RuleInvalid(f"keywords of several protocols in one rule: {sorted(app_protos)}")
        if not app_protos:
            raise kw.RuleUnsupported(
                f"a '{header_proto}' rule without app-layer keywords needs packet inspection, "
                "which zonewarden does not do"
            )
        index = next(iter(app_protos))
    src = kw.compile_addresses(rule.src, variables)
    sport = kw.compile_ports(rule.src_port, variables)
    dst = kw.compile_addresses(rule.dst, variables)
    dport = kw.compile_ports(rule.dst_port, variables)
    mitre = tuple(
        v
        for key in ("mitre_technique_id", "mitre_attack", "attack_id")
        for v in rule.metadata.get(key, [])
        if _MITRE.match(v)
    )
    if priority is None:
        priority = kw.CLASSTYPES[classtype][1] if classtype else 3
    # value keywords are cheap dict/int tests; content groups scan bytes: evaluate them last
    return CompiledRule(
        parsed=rule,
        app_proto=index,
        predicates=tuple(predicates + content_groups),
        src=src,
        sport=sport,
        dst=dst,
        dport=dport,
        bidirectional=rule.direction == "<>",
        classtype=classtype,
        priority=priority,
        mitre=mitre,
        threshold=threshold,
        flow_to_server=to_server,
    )


def _apply_modifier(item: kw.ContentItem, name: str, value: str | None) -> None:
    def number() -> int:
        if value is None or not value.strip().lstrip("-").isdigit():
            raise kw.RuleInvalid(f"{name} needs an integer, got {value!r}")
        return int(value.strip())

    if name == "nocase":
        item.nocase = True
    elif name == "startswith":
        item.startswith = True
        item.offset, item.depth = 0, None
    elif name == "endswith":
        item.endswith = True
    elif name == "depth":
        item.depth = number()
        if item.depth < len(item.pattern):
            raise kw.RuleInvalid("depth is shorter than the content")
    elif name == "offset":
        item.offset = number()
    elif name == "distance":
        item.distance = number()
    elif name == "within":
        item.within = number()
        if item.within < len(item.pattern):
            raise kw.RuleInvalid("within is shorter than the content")
    if (item.distance is not None or item.within is not None) and (
        item.offset is not None or item.depth is not None
    ):
        raise kw.RuleInvalid("offset/depth cannot be mixed with distance/within on one content")


class _ThresholdTable:
    """Per (rule, tracked key) counters in packet time, capped (oldest entries dropped, counted)."""

    def __init__(self, cap: int = _THRESHOLD_TABLE_CAP) -> None:
        self.cap = cap
        self.entries: OrderedDict[tuple[Any, ...], list[float]] = OrderedDict()
        self.evicted = 0

    def allow(self, rule: CompiledRule, ev: Any) -> bool:
        th = rule.threshold
        if th is None:
            return True
        key = (rule.parsed.gid, rule.sid, *_track_key(th.track, ev))
        state = self.entries.get(key)
        ts = float(ev.ts)
        if state is None:
            if len(self.entries) >= self.cap:
                self.entries.popitem(last=False)
                self.evicted += 1
            # [window start, count in window, next backoff alert]
            state = [ts, 0.0, float(th.count)]
            self.entries[key] = state
        if th.kind != "backoff" and th.seconds and ts - state[0] >= th.seconds:
            state[0], state[1] = ts, 0.0
        state[1] += 1
        n = state[1]
        if th.kind == "threshold":
            if n >= th.count:
                state[0], state[1] = ts, 0.0
                return True
            return False
        if th.kind == "limit":
            return n <= th.count
        if th.kind == "both":
            return n == th.count
        if th.kind == "backoff":
            if n == state[2]:
                state[2] *= th.multiplier
                return True
            return False
        return n > th.count  # detection_filter: every match after the count-th


def _track_key(track: str, ev: Any) -> tuple[Any, ...]:
    flow = ev.flow
    if flow is None:
        return ()
    if track == "by_flow":
        return (flow.flow_id,)
    sip, _, dip, _ = flow.endpoints(ev.to_server)
    if track == "by_src":
        return (sip,)
    if track == "by_dst":
        return (dip,)
    if track == "by_both":
        return (sip, dip)
    return ()


def _summary(ev: Any) -> dict[str, Any]:
    """A compact, JSON-safe picture of the event that matched, for the alert's evidence."""
    body = ev.eve_body()
    inner = next(iter(body.values())) if len(body) == 1 else body
    if not isinstance(inner, dict):
        return {}
    keep = (
        "function",
        "function_name",
        "unit_id",
        "status",
        "type",
        "client_id",
        "topic",
        "service",
        "security_mode",
        "security_policy",
        "message_type",
        "event",
        "detail",
    )
    out = {k: inner[k] for k in keep if k in inner}
    req = inner.get("request")
    if isinstance(req, dict):
        out["request"] = {k: req[k] for k in ("address", "quantity", "subfunction", "values") if k in req}
    for v in inner.values():
        if isinstance(v, dict) and "topic" in v and "topic" not in out:
            out["topic"] = v["topic"]
    return out


class RulesObserver:
    """An :class:`~sensor.pipeline.Observer` that raises an :class:`Alert` per rule match."""

    def __init__(
        self,
        publish: Callable[[Alert], None],
        ruleset: RuleSet,
        provenance: dict[tuple[int, int], dict[str, Any]] | None = None,
    ) -> None:
        self.publish = publish
        self.ruleset = ruleset
        self.by_proto = ruleset.by_proto
        self.provenance = provenance or {}
        self.thresholds = _ThresholdTable()
        self.counters: Counter[str] = Counter()

    def handle(self, event: Any) -> None:
        if type(event) is ProtocolAnomaly:
            rules = self.by_proto.get(f"anomaly:{event.app_proto}") if event.app_proto else None
        else:
            rules = self.by_proto.get(event.app_proto)
        if not rules:
            return
        self.counters["events_inspected"] += 1
        for rule in rules:
            if rule.flow_to_server is not None and rule.flow_to_server != event.to_server:
                continue
            if not rule.header_matches(event):
                continue
            if not all(p(event) for p in rule.predicates):
                continue
            rule.matches += 1
            self.counters["matches"] += 1
            if rule.parsed.action == "pass":
                self.counters["passed"] += 1
                return
            if not self.thresholds.allow(rule, event):
                self.counters["thresholded"] += 1
                continue
            rule.alerts += 1
            self.publish(self._alert(rule, event))

    def _alert(self, rule: CompiledRule, ev: Any) -> Alert:
        p = rule.parsed
        evidence: dict[str, Any] = {
            "action": p.action,
            "classtype": rule.classtype,
            "priority": rule.priority,
            "event": _summary(ev),
        }
        if p.metadata:
            evidence["metadata"] = p.metadata
        prov = self.provenance.get(p.key)
        if prov:
            evidence["source"] = prov
        return Alert(
            ts=float(ev.ts),
            flow=ev.flow,
            rule=f"{p.gid}:{p.sid}:{p.rev}",
            signature=p.msg or f"sid {p.sid}",
            category="signature",
            severity=min(max(rule.priority, 1), 4),
            signature_id=p.sid,
            rev=p.rev,
            to_server=bool(ev.to_server),
            app_proto=ev.app_proto or "",
            mitre=rule.mitre,
            evidence=evidence,
        )

    def flush(self, now: float) -> None:
        """Signature alerts are published as they match; nothing is held back."""

    def section(self) -> dict[str, Any]:
        counts = self.ruleset.counts()
        return {
            **counts,
            "events_inspected": self.counters["events_inspected"],
            "matches": self.counters["matches"],
            "passed": self.counters["passed"],
            "thresholded": self.counters["thresholded"],
            "threshold_entries_evicted": self.thresholds.evicted,
            "alerts_by_sid": {str(r.sid): r.alerts for r in self.ruleset.rules if r.alerts},
        }
