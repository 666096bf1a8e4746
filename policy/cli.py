"""``zonewarden policy ...``: schema, validate, lint, check, learn, export.

Exit codes: 0 success (``check``: no violation; ``lint``: no finding), 1 ``check`` found violations
or ``lint`` found something, 2 a bad policy file (``file:line: what is wrong`` on stderr) or bad usage.

``policy check --json`` is a CONTRACT (only add keys)::

    {"violations": [{"rule": "policy:<conduit or a->b>:<reason>", "src_ip": ..., "dest_ip": ...,
                     "dest_port": ..., "count": N, "reason": ..., "src_zone": ..., "dest_zone": ...,
                     "conduit": ..., "first_ts": ..., "last_ts": ..., "severity": ..., "evidence": {...},
                     "alerts": N, "edges": [{"protocol": ..., "port": ...}], "protocols": [...],
                     "dest_ports": [...], "edges_truncated": false, "operations": [...],
                     "operations_truncated": false}],
     "conduits": {"<id>": {"from": ..., "to": ..., "allowed": {"modbus:read_coils": N},
                           "denied": {...}, "unused_rules": [index, ...]}},
     "no_conduit": [...], "unused_rules": [...], "summary": {...}}
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sensor.records import Alert

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("policy", help="IEC 62443 zone/conduit policy: check, learn, export")
    sub = p.add_subparsers(dest="policy_command", required=True)

    s = sub.add_parser("schema", help="print the JSON Schema of a policy file")
    s.set_defaults(func=cmd_schema)

    v = sub.add_parser("validate", help="check a policy file; file:line errors, exit 2 when bad")
    v.add_argument("policy_file", metavar="FILE")
    v.set_defaults(func=cmd_validate)

    lint_p = sub.add_parser(
        "lint", help="warnings about a valid policy (weak security, overlaps, shadowed rules)"
    )
    lint_p.add_argument("policy_file", metavar="FILE", nargs="?")
    lint_p.add_argument("--policy", metavar="FILE")
    lint_p.set_defaults(func=cmd_lint)

    c = sub.add_parser("check", help="compliance report of captures against a policy")
    c.add_argument("--policy", metavar="FILE", required=True)
    c.add_argument("pcap", nargs="+")
    c.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    c.add_argument("--deep", action="store_true", help="name other protocols with tshark first")
    c.set_defaults(func=cmd_check)

    learn_p = sub.add_parser("learn", help="propose zones and least-privilege conduits from captures (YAML)")
    learn_p.add_argument("pcap", nargs="+")
    learn_p.add_argument("--site", default="")
    learn_p.add_argument("--deep", action="store_true", help="name other protocols with tshark first")
    learn_p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    learn_p.set_defaults(func=cmd_learn)

    e = sub.add_parser("export", help="export a policy as nftables, Suricata rules, CSV or Markdown")
    e.add_argument("--policy", metavar="FILE", required=True)
    e.add_argument("--format", choices=("nftables", "suricata", "csv", "markdown"), required=True)
    e.add_argument("--sid-base", type=int, default=9_300_000, help="first SID of Suricata rules")
    e.set_defaults(func=cmd_export)


def cmd_schema(args: argparse.Namespace) -> int:
    from policy.schema import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from policy.load import load_policy

    policy = load_policy(Path(args.policy_file))  # PolicyError -> exit 2 in main()
    print(f"{args.policy_file}: ok ({len(policy.zones)} zones, {len(policy.conduits)} conduits)")
    return EXIT_OK


def cmd_lint(args: argparse.Namespace) -> int:
    from policy.lint import lint
    from policy.load import load_policy_with_lines
    from sensor.errors import UserError

    name = args.policy or args.policy_file
    if not name:
        raise UserError("policy lint needs a policy file")
    policy, lines = load_policy_with_lines(Path(name))
    findings = lint(policy, lines)
    for f in findings:
        print(f.format(name))
    return EXIT_FINDINGS if findings else EXIT_OK


def run_check(policy_path: Path, pcaps: list[Path], deep: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Replay captures with the policy; the report (``--json`` layout) and per-file errors."""
    from policy.index import load_compiled
    from policy.learn import deep_flow_protocols
    from policy.observer import PolicyObserver
    from sensor.runtime import Sensor, SensorConfig

    compiled = load_compiled(policy_path)
    alerts: list[Alert] = []

    class _Collect:
        def handle(self, event: Any) -> None:
            if isinstance(event, Alert) and event.category == "policy":
                alerts.append(event)

    flow_protocol = deep_flow_protocols(pcaps) if deep else None
    observer_box: list[PolicyObserver] = []

    def make(publish: Any) -> PolicyObserver:
        obs = PolicyObserver(compiled, publish, flow_protocol=flow_protocol, source=str(policy_path))
        observer_box.append(obs)
        return obs

    sensor = Sensor(SensorConfig(), observers=[make])
    sensor.alerts.sinks.append(_Collect())
    errors = []
    for path in pcaps:
        report = sensor.replay_file(path)
        if report.error:
            errors.append(report.error)
    sensor.finish(pcaps)
    observer = observer_box[0]
    rows = []
    for a in alerts:
        src, _sport, dst, dport = a.flow.endpoints(True) if a.flow else ("", 0, "", 0)
        rows.append(
            {
                "rule": a.rule,
                "src_ip": src,
                "dest_ip": dst,
                "dest_port": dport,
                "count": a.count,
                "src_zone": a.src_zone,
                "dest_zone": a.dest_zone,
                "conduit": a.conduit,
                "ts": a.ts,
                "last_ts": a.last_ts,
                "severity": a.severity,
                "signature": a.signature,
                "evidence": a.evidence,
            }
        )
    violations = merge_violations(rows)
    compliance = observer.report()
    out: dict[str, Any] = {
        "violations": violations,
        **compliance,
        "summary": {
            "policy": str(policy_path),
            "files": [str(p) for p in pcaps],
            "operations": observer.operations,
            "violations": sum(r["count"] for r in violations),
            "alerts": len(alerts),
        },
    }
    return out, errors


def merge_violations(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``violations`` of the report: policy alerts merged per (rule, initiator, responder).

    Each input is an alert as a dict with the alert store's field names (``rule``, ``src_ip``,
    ``dest_ip``, ``dest_port``, ``count``, ``src_zone``, ``dest_zone``, ``conduit``, ``ts``,
    ``last_ts``, ``severity``, ``signature``, ``evidence``), so the web API can report from the store.

    A rule between two hosts fires once per aggregation window, and one alert can span several
    communications of the two hosts (policy/observer.py), so a merged row can stand for many ports,
    protocols and operations. It keeps the earliest alert's ``dest_port``, ``signature`` and
    ``evidence`` whatever order the alerts come in (the CLI hands them in publication order, the API
    newest first), the most severe ``severity`` (1 is the highest), and adds what all of them saw:
    ``alerts`` (how many were merged), ``edges`` (``{protocol, port}`` first seen first, named as the
    inventory names communications: the protocol, else the transport), ``protocols``, ``dest_ports``
    (sorted) and ``operations`` (distinct summaries), at most :data:`MAX_MERGED_EDGES` edges and
    :data:`MAX_MERGED_OPERATIONS` operations (``edges_truncated``, ``operations_truncated``).
    """
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    seen: dict[tuple[str, str, str], _Seen] = {}
    for a in sorted(alerts, key=lambda a: (a["ts"], a["dest_port"], str(a["signature"]))):
        key = (a["rule"], a["src_ip"], a["dest_ip"])
        row = merged.get(key)
        last = a["last_ts"] or a["ts"]
        if row is None:
            row = merged[key] = {
                "rule": a["rule"],
                "src_ip": a["src_ip"],
                "dest_ip": a["dest_ip"],
                "dest_port": a["dest_port"],
                "count": a["count"],
                "reason": a["rule"].rsplit(":", 1)[-1],
                "src_zone": a["src_zone"],
                "dest_zone": a["dest_zone"],
                "conduit": a["conduit"],
                "first_ts": a["ts"],
                "last_ts": last,
                "severity": a["severity"],
                "signature": a["signature"],
                "evidence": a["evidence"],
            }
            seen[key] = _Seen()
        else:
            row["count"] += a["count"]
            row["first_ts"] = min(row["first_ts"], a["ts"])
            row["last_ts"] = max(row["last_ts"], last)
            row["severity"] = min(row["severity"], a["severity"])
        seen[key].add(a)
    for key, row in merged.items():
        row.update(seen[key].fields())
    return sorted(merged.values(), key=lambda r: (r["rule"], r["src_ip"], r["dest_ip"]))


MAX_MERGED_EDGES = 64  # distinct (protocol, port) listed per merged violation (a long port scan makes many)
MAX_MERGED_OPERATIONS = 16  # distinct operation summaries listed per merged violation


class _Seen:
    """What the alerts merged into one violation saw: their communications and operations."""

    def __init__(self) -> None:
        self.alerts = 0
        self.edges: dict[tuple[str, int], None] = {}  # first seen first
        self.protocols: dict[str, None] = {}
        self.edges_truncated = False
        self.operations: dict[str, None] = {}
        self.operations_truncated = False

    def add(self, alert: dict[str, Any]) -> None:
        self.alerts += 1
        evidence = alert["evidence"] if isinstance(alert["evidence"], dict) else {}
        # the alert's own communication, as policy/observer.py names the edges it lists
        protocol = evidence.get("protocol")
        if not isinstance(protocol, str) or protocol in ("", "unknown"):
            protocol = evidence.get("transport")
        if not isinstance(protocol, str) or not protocol:
            protocol = alert.get("app_proto") or "unknown"
        self._edge(str(protocol), alert["dest_port"])
        listed = evidence.get("edges")
        for edge in listed if isinstance(listed, list) else ():
            if isinstance(edge, dict):
                self._edge(edge.get("protocol"), edge.get("port"))
        if evidence.get("edges_truncated") is True:
            self.edges_truncated = True
        operations = evidence.get("distinct_operations")
        for operation in operations if isinstance(operations, list) else [evidence.get("summary")]:
            if isinstance(operation, str) and operation not in self.operations:
                if len(self.operations) < MAX_MERGED_OPERATIONS:
                    self.operations[operation] = None
                else:
                    self.operations_truncated = True

    def _edge(self, protocol: Any, port: Any) -> None:
        if not isinstance(protocol, str) or not protocol or type(port) is not int:
            return  # evidence written by something else: nothing to list
        if (protocol, port) in self.edges:
            return
        if len(self.edges) < MAX_MERGED_EDGES:
            self.edges[(protocol, port)] = None
            self.protocols[protocol] = None
        else:
            self.edges_truncated = True

    def fields(self) -> dict[str, Any]:
        return {
            "alerts": self.alerts,
            "edges": [{"protocol": protocol, "port": port} for protocol, port in self.edges],
            "protocols": list(self.protocols),
            "dest_ports": sorted({port for _, port in self.edges}),
            "edges_truncated": self.edges_truncated,
            "operations": list(self.operations),
            "operations_truncated": self.operations_truncated,
        }


def _print_report(report: dict[str, Any]) -> None:
    s = report["summary"]
    print(f"policy {s['policy']}: {s['operations']} operations checked, {s['violations']} violations")
    print()
    for cid, c in report["conduits"].items():
        print(f"conduit {cid} ({c['from']} -> {c['to']})")
        for label, n in c["allowed"].items():
            print(f"  allowed {n:>8}  {label}")
        for label, n in c["denied"].items():
            print(f"  DENIED  {n:>8}  {label}")
        if c["unused_rules"]:
            print(f"  entries never used: {', '.join(f'allow[{i}]' for i in c['unused_rules'])}")
    if report["no_conduit"]:
        print()
        print("traffic with no conduit:")
        for row in report["no_conduit"]:
            print(f"  {row['count']:>8}  {row['src_zone']} -> {row['dest_zone']}")
    if report["violations"]:
        print()
        print("violations:")
        for v in report["violations"]:
            print(f"  {v['count']:>8}  {v['rule']}  {v['src_ip']} -> {v['dest_ip']}:{v['dest_port']}")
            print(f"            {v['evidence'].get('summary', '')}: {v['evidence'].get('detail', '')}")
            if len(v["edges"]) > 1:
                listed = ", ".join(f"{e['protocol']}/{e['port']}" for e in v["edges"])
                print(f"            on {listed}{', ...' if v['edges_truncated'] else ''}")


def cmd_check(args: argparse.Namespace) -> int:
    report, errors = run_check(Path(args.policy), [Path(p) for p in args.pcap], args.deep)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        _print_report(report)
    for e in errors:
        print(f"zonewarden: error: {e}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    return EXIT_FINDINGS if report["violations"] else EXIT_OK


def cmd_learn(args: argparse.Namespace) -> int:
    from policy.learn import learn

    text, errors = learn([Path(p) for p in args.pcap], args.site, args.deep)
    for e in errors:
        print(f"zonewarden: error: {e}", file=sys.stderr)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_USAGE if errors else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from policy.export import export
    from policy.load import load_policy

    policy = load_policy(Path(args.policy))
    sys.stdout.write(export(policy, args.format, sid_base=args.sid_base))
    return EXIT_OK
