"""``zonewarden assets`` and ``zonewarden graph export``: read the store a replay or a sniff wrote.

* ``zonewarden assets [--db PATH] [--json] [--role R] [--protocol P]``: one line per asset (address,
  MAC and vendor, name, roles, protocols), most recently seen first.
* ``zonewarden assets show IP [--db PATH] [--json]``: identity, roles with the reason for each,
  register map per unit, OPC UA nodes, MQTT topic tree, certificates and edges.
* ``zonewarden assets tag IP [--name NAME] [--tag TAG ...] [--db PATH]``: give an address a name and
  tags (``sensor/assets/labels.py``); policy zones written ``{tag: TAG}`` or ``{asset: NAME}`` hold it
  from its first packet. The address need not have been seen yet.
* ``zonewarden assets untag IP [--name] [--tag TAG ...] [--all] [--db PATH]``: take them away.
* ``zonewarden graph export --format graphml|json|dot|svg|png [--db PATH] [--out FILE]``.
* ``zonewarden graph paths SOURCE TARGET [--db PATH] [--max-hops N] [--undirected] [--limit N]
  [--policy FILE] [--json]``: the chains of observed connections from SOURCE to TARGET, one a line
  (``10.1.1.5 -[opcua/4840]-> 10.2.0.4 -[modbus/502 fc 3,16]-> 10.3.0.10``), shortest first; ``--json``
  is the document ``GET /api/v1/graph/paths`` answers (``sensor/assets/reach.py``). Exit 0 when a path
  was found, 1 when none was, 2 on an error (no store, an address that is not one or not in it).

``--db`` defaults to :func:`sensor.store.sqlite.default_db_path` (``$ZONEWARDEN_DATA``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from sensor.errors import UserError

EXIT_OK = 0
EXIT_NOT_FOUND = 1


def _open(args: argparse.Namespace) -> Any:
    from sensor.store.sqlite import Store, default_db_path

    return Store(Path(args.db) if args.db else default_db_path(), readonly=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def cmd_assets(args: argparse.Namespace) -> int:
    if getattr(args, "assets_command", None) == "show":
        return cmd_assets_show(args)
    store = _open(args)
    try:
        rows = store.list_assets(role=args.role, protocol=args.protocol, tag=args.tag, limit=args.limit)
    finally:
        store.close()
    if args.json:
        _print_json(rows)
        return EXIT_OK
    header = f"{'IP':<40} {'MAC':<17} {'VENDOR':<24} {'NAME':<28} ROLES / PROTOCOLS [TAGS]"
    print(header)
    for r in rows:
        vendor = r["vendor"] or ("(router " + r["behind_router"] + ")" if r["behind_router"] else "")
        tags = f" [{','.join(r['tags'])}]" if r["tags"] else ""
        print(
            f"{r['ip']:<40} {r['mac'] or '-':<17} {vendor[:24]:<24} {r['name'][:28]:<28} "
            f"{','.join(r['roles']) or '-'} / {','.join(r['protocols']) or '-'}{tags}"
        )
    print(f"{len(rows)} asset(s)")
    return EXIT_OK


def topic_tree(topics: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """MQTT topics ``a/b/c`` as a nested tree; each leaf keeps its publishers/subscribers/receivers."""
    tree: dict[str, Any] = {}
    for topic, sides in sorted(topics.items()):
        node = tree
        for level in topic.split("/"):
            node = node.setdefault(level, {})
        node["_clients"] = sides
    return tree


def _print_tree(tree: dict[str, Any], indent: str = "    ") -> None:
    for level, sub in tree.items():
        if level == "_clients":
            continue
        sides = sub.get("_clients")
        who = ""
        if sides:
            who = "  " + "; ".join(f"{side}: {', '.join(ips)}" for side, ips in sorted(sides.items()))
        print(f"{indent}{level or '(empty)'}{who}")
        _print_tree(sub, indent + "  ")


def cmd_assets_show(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        asset = store.get_asset(args.ip)
    finally:
        store.close()
    if asset is None:
        print(f"zonewarden: no asset {args.ip} in the store", file=sys.stderr)
        return EXIT_NOT_FOUND
    asset["mqtt_topic_tree"] = topic_tree(asset.get("mqtt_topics", {}))
    if args.json:
        _print_json(asset)
        return EXIT_OK
    print(f"{asset['ip']}  {asset['name']}")
    if asset["given_name"] or asset["tags"]:
        print(
            f"  given name {asset['given_name'] or '-'}; tags {', '.join(asset['tags']) or '-'}"
            f" (by {asset['labels_updated_by'] or '?'})"
        )
    if asset["given_name"] and asset["inferred_name"] and asset["inferred_name"] != asset["given_name"]:
        print(f"  calls itself {asset['inferred_name']}")
    print(f"  MAC {asset['mac'] or '-'}  vendor {asset['vendor'] or '-'}", end="")
    print(f"  behind router {asset['behind_router']}" if asset["behind_router"] else "")
    seen = f"{asset['first_seen']:.3f} .. {asset['last_seen']:.3f}"
    print(f"  seen {seen}; protocols {', '.join(asset['protocols'])}")
    if asset["identity"]:
        print("  identity:")
        for key, value in asset["identity"].items():
            print(f"    {key} = {value}")
    if asset["roles"]:
        print("  roles:")
        for role, reason in asset["roles"].items():
            print(f"    {role}: {reason}")
    if asset["modbus_map"]:
        print("  Modbus register map (unit/table: read, written, by, values):")
        for key, use in asset["modbus_map"].items():
            read = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in use["read"]) or "-"
            written = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in use["written"]) or "-"
            print(
                f"    {key}: read {read} by {','.join(use['readers']) or '-'}; written {written} by "
                f"{','.join(use['writers']) or '-'}; values {use['min_value']}..{use['max_value']}"
            )
    if asset["opcua_nodes"]:
        print("  OPC UA nodes:")
        for node, ops in asset["opcua_nodes"].items():
            print(f"    {node}: " + "; ".join(f"{op} by {', '.join(ips)}" for op, ips in ops.items()))
    if asset["mqtt_topics"]:
        print("  MQTT topics:")
        _print_tree(asset["mqtt_topic_tree"])
    for sha, cert in asset["certificates"].items():
        print(f"  certificate {sha[:16]}…: {cert['subject']}")
        print(f"    issuer {cert['issuer']}, valid until {cert['not_after']}")
    if asset["edges"]:
        print("  edges:")
        for e in asset["edges"]:
            ops = "; ".join(f"{k} {','.join(v[:12])}" for k, v in e["operations"].items())
            print(
                f"    {e['client']} -> {e['server']} {e['protocol']}/{e['port']}: {e['packets']} pkts "
                f"{e['bytes']} bytes {e['flows']} flows {ops}"
            )
    return EXIT_OK


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"cli:uid{os.getuid()}"


def _change_labels(args: argparse.Namespace, **change: Any) -> int:
    """Apply one label change with a writable store, audit it, print the result."""
    from sensor.store.sqlite import Store, default_db_path

    actor = _actor()
    store = Store(Path(args.db) if args.db else default_db_path())
    try:
        labels = store.update_labels(args.ip, by=actor, **change)
        _audit(store, actor, labels.ip, labels.to_record())
    finally:
        store.close()
    if args.json:
        _print_json(labels.to_record())
        return EXIT_OK
    seen = "" if _known(args, labels.ip) else " (not seen yet: applies from its first packet)"
    print(f"{labels.ip}: name {labels.name or '-'}; tags {', '.join(labels.tags) or '-'}{seen}")
    return EXIT_OK


def _known(args: argparse.Namespace, ip: str) -> bool:
    store = _open(args)
    try:
        return store.get_asset(ip) is not None
    finally:
        store.close()


def _audit(store: Any, actor: str, ip: str, record: dict[str, Any]) -> None:
    """The API's hash-chained audit log, in the same file: a change from the CLI is on record too."""
    from api.audit import AuditLog

    detail = json.dumps({"name": record["name"], "tags": record["tags"]}, ensure_ascii=False)
    AuditLog(store.conn).append(actor, "assets.labels", f"asset:{ip}", f"ok: {detail}"[:1024])


def cmd_assets_tag(args: argparse.Namespace) -> int:
    if args.name is None and not args.tags:
        raise UserError("give --name NAME and/or --tag TAG")
    return _change_labels(args, name=args.name, add_tags=args.tags or ())


def cmd_assets_untag(args: argparse.Namespace) -> int:
    if args.all:
        return _change_labels(args, name="", tags=())
    if not args.name and not args.tags:
        raise UserError("give --name, --tag TAG or --all")
    return _change_labels(args, name="" if args.name else None, remove_tags=args.tags or ())


def cmd_graph_export(args: argparse.Namespace) -> int:
    from sensor.assets.export import export_graph, write_export

    store = _open(args)
    try:
        graph = store.graph()
        nodes = {r["ip"]: r for r in store.list_assets(limit=10**9)}
    finally:
        store.close()
    data = export_graph(graph, nodes, args.format)
    out = Path(args.out) if args.out else None
    if out is None and args.format == "png" and sys.stdout.isatty():
        raise UserError("refusing to write PNG to a terminal: give --out FILE")
    write_export(data, out)
    return EXIT_OK


# operation kinds shown on a hop, with the word that leads their values
HOP_OPERATIONS: Final = (("function", "fc"), ("service", ""), ("publish", "pub"), ("subscribe", "sub"))
HOP_VALUES_SHOWN: Final = 6


def hop_label(edge: dict[str, Any]) -> str:
    """``modbus/502 fc 3,16``: the protocol, port and operations (the first few of each kind) of one edge
    of a path, as this command and the dashboard's paths panel write it."""
    parts = [f"{edge['protocol']}/{edge['port']}"]
    for kind, word in HOP_OPERATIONS:
        values = edge["operations"].get(kind) or []
        if values:
            shown = ",".join(values[:HOP_VALUES_SHOWN]) + (",…" if len(values) > HOP_VALUES_SHOWN else "")
            parts.append(f"{word} {shown}" if word else shown)
    return " ".join(parts)


def _edge_label(edge: dict[str, Any]) -> str:
    """:func:`hop_label`, with ``!policy`` when the edge violates the policy."""
    label = hop_label(edge)
    return f"{label} !policy" if edge["policy"]["status"] == "violation" else label


def path_line(path: list[dict[str, Any]]) -> str:
    """One path of the reachability document as a line: each asset (with its zone when known) and
    between two, ``-[edges]->`` for connections opened along the path, ``<-[edges]-`` against it."""

    def asset(ip: str, zone: str | None, zoned: bool) -> str:
        return f"{ip} ({zone or 'no zone'})" if zoned else ip

    zoned = path[0]["crosses_zones"] is not None
    words = [asset(path[0]["client"], path[0]["client_zone"], zoned)]
    for hop in path:
        forward = [_edge_label(e) for e in hop["edges"] if e["client"] == hop["client"]]
        backward = [_edge_label(e) for e in hop["edges"] if e["client"] != hop["client"]]
        if forward or not backward:
            words.append(f"-[{'; '.join(forward)}]->")
        if backward:
            words.append(f"<-[{'; '.join(backward)}]-")
        words.append(asset(hop["server"], hop["server_zone"], zoned))
    return " ".join(words)


def _policy_zones(path: str, store: Any) -> Callable[[str], str | None]:
    """ip -> zone id of a policy file; zones by asset name or tag use the store's names and tags."""
    from policy.index import load_compiled
    from policy.load import PolicyError

    labels = store.zone_labels()
    try:
        compiled = load_compiled(Path(path), lambda ip: labels.get(ip, set()))
    except PolicyError as error:
        first = str(error).splitlines()[0] if str(error) else path
        more = len(error.problems) - 1
        hint = f" ({more} more: zonewarden policy validate {path})" if more > 0 else ""
        raise UserError(first + hint) from None

    def zone_of(ip: str) -> str | None:
        zone = compiled.zone_of(ip)
        return None if zone is None else str(zone.id)

    return zone_of


def cmd_graph_paths(args: argparse.Namespace) -> int:
    from sensor.assets.reach import MAX_PATHS, normalise_ip, paths_document
    from sensor.limits import DEFAULT_LIMITS

    source, target = normalise_ip(args.source, "source"), normalise_ip(args.target, "target")
    if not 1 <= args.max_hops <= DEFAULT_LIMITS.graph_path_max_hops:
        raise UserError(f"--max-hops is 1 to {DEFAULT_LIMITS.graph_path_max_hops}, not {args.max_hops}")
    if not 1 <= args.limit <= MAX_PATHS:
        raise UserError(f"--limit is 1 to {MAX_PATHS}, not {args.limit}")
    store = _open(args)
    try:
        zone_of = _policy_zones(args.policy, store) if args.policy else None
        document = paths_document(
            store,
            source,
            target,
            max_hops=args.max_hops,
            directed=not args.undirected,
            limit=args.limit,
            zone_of=zone_of,
            policy_configured=args.policy is not None,
        )
    finally:
        store.close()
    if args.json:
        _print_json(document)
    else:
        for path in document["paths"]:
            print(path_line(path))
        count = len(document["paths"])
        within = f"within {document['max_hops']} hop(s)" + ("" if document["directed"] else ", either way")
        cut = "; more may exist (limit or search budget reached)" if document["truncated"] else ""
        found = f"{count} path(s) from {source} to {target}" if count else "no path"
        print(f"{found} {within}{cut}")
    return EXIT_OK if document["paths"] else EXIT_NOT_FOUND


def register(sub: Any) -> None:
    """Add the ``assets`` and ``graph`` sub-commands to the ``zonewarden`` parser."""
    from sensor.assets.export import FORMATS
    from sensor.assets.reach import DEFAULT_MAX_HOPS, DEFAULT_PATHS, MAX_PATHS
    from sensor.limits import DEFAULT_LIMITS

    a = sub.add_parser("assets", help="list the assets in the store (zonewarden assets show IP: one asset)")
    a.add_argument("--db", metavar="PATH", help="store file (default: $ZONEWARDEN_DATA/zonewarden.db)")
    a.add_argument("--json", action="store_true", help="JSON output")
    a.add_argument("--role", help="only assets with this role (e.g. modbus_server)")
    a.add_argument("--protocol", help="only assets speaking this protocol (e.g. opcua)")
    a.add_argument("--tag", help="only assets people tagged TAG (zonewarden assets tag)")
    a.add_argument("--limit", type=int, default=10_000)
    a.set_defaults(func=cmd_assets)
    asub = a.add_subparsers(dest="assets_command")
    show = asub.add_parser("show", help="everything known about one asset")
    show.add_argument("ip")
    show.add_argument("--db", metavar="PATH", help="store file")
    show.add_argument("--json", action="store_true", help="JSON output")
    show.set_defaults(func=cmd_assets_show)
    tag = asub.add_parser(
        "tag",
        help="give an address a name and tags (policy zones {tag: T} / {asset: NAME} hold it)",
        description="Give an address a name and tags. They are kept in the store, apart from what the "
        "inventory infers, and a policy zone written {tag: T} or {asset: NAME} holds the address from "
        "its first packet. The address need not have been seen yet. Tags are added to those it has.",
    )
    tag.add_argument("ip")
    tag.add_argument("--name", help="the name people use for it ('' clears it)")
    tag.add_argument("--tag", dest="tags", action="append", metavar="TAG", help="add a tag (repeat for more)")
    tag.add_argument("--db", metavar="PATH", help="store file")
    tag.add_argument("--json", action="store_true", help="JSON output")
    tag.set_defaults(func=cmd_assets_tag)
    untag = asub.add_parser("untag", help="take an address's name or tags away")
    untag.add_argument("ip")
    untag.add_argument("--name", action="store_true", help="clear the name")
    untag.add_argument(
        "--tag", dest="tags", action="append", metavar="TAG", help="remove a tag (repeat for more)"
    )
    untag.add_argument("--all", action="store_true", help="clear the name and every tag")
    untag.add_argument("--db", metavar="PATH", help="store file")
    untag.add_argument("--json", action="store_true", help="JSON output")
    untag.set_defaults(func=cmd_assets_untag)

    g = sub.add_parser("graph", help="the communication graph")
    gsub = g.add_subparsers(dest="graph_command", required=True)
    e = gsub.add_parser("export", help="export the graph (GraphML, node-link JSON, DOT, SVG, PNG)")
    e.add_argument("--format", choices=FORMATS, default="json")
    e.add_argument("--db", metavar="PATH", help="store file")
    e.add_argument("--out", metavar="FILE", help="write to FILE (default: stdout)")
    e.set_defaults(func=cmd_graph_export)
    p = gsub.add_parser(
        "paths",
        help="who can reach TARGET from SOURCE: chains of observed connections, hop by hop",
        description="The simple paths from SOURCE to TARGET over the communications in the store, "
        "shortest first, one a line, each hop with its protocols, ports and operations (! marks a policy "
        "violation). A hop goes from a client to a server it opened connections to, unless --undirected. "
        "Exit 0 when a path was found, 1 when none was.",
    )
    p.add_argument("source", help="where the paths start (IP address)")
    p.add_argument("target", help="where they end (IP address)")
    p.add_argument("--db", metavar="PATH", help="store file")
    hops, paths = DEFAULT_LIMITS.graph_path_max_hops, MAX_PATHS
    p.add_argument(
        "--max-hops",
        type=int,
        default=DEFAULT_MAX_HOPS,
        metavar="N",
        help=f"longest path, 1-{hops} hops (default %(default)s)",
    )
    p.add_argument("--undirected", action="store_true", help="hops either way, not only client to server")
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_PATHS,
        metavar="N",
        help=f"paths listed, 1-{paths} (default %(default)s)",
    )
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="the policy the sensor judged this traffic against: each asset's zone, and an edge with no "
        "policy alert in the store counts as allowed (without it: unknown)",
    )
    p.add_argument("--json", action="store_true", help="JSON output (the API's document)")
    p.set_defaults(func=cmd_graph_paths)
