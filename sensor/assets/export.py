"""Exports of the communication graph: GraphML, JSON (networkx node-link), DOT, SVG and PNG.

GraphML and JSON come from networkx; DOT and SVG are written here (no graphviz or matplotlib needed).
The SVG is laid out for a person reading a plant of 50-200 assets:

    +------------------+-------------------------+------------------+
    |  clients only    |  clients and servers    |  servers only    |
    |  (HMI, SCADA,    |  (gateways, brokers,    |  (PLCs, RTUs,    |
    |   workstations)  |   historians)           |   devices)       |
    +------------------+-------------------------+------------------+

assets in three tiers by what they do, grouped by /24 (or /64) subnet and sorted by address inside a
tier, a tier of more than ``MAX_PER_COLUMN`` assets wrapped into several columns; each edge a curve
from client to server coloured by protocol (legend at the top), its width growing with the log of its
packet count. PNG is the SVG rasterised by ``rsvg-convert`` (Debian package ``librsvg2-bin``).
"""

from __future__ import annotations

import ipaddress
import json
import math
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sensor.assets.graph import CommunicationGraph
from sensor.errors import UserError

if TYPE_CHECKING:
    import networkx as nx

# networkx and xml.sax.saxutils (which pulls urllib.request) are imported by the exports that use them:
# the command line's whole parser (every command but replay and sniff) imports this module for FORMATS.

FORMATS: Final = ("graphml", "json", "dot", "svg", "png")

PROTOCOL_COLOURS: Final[dict[str, str]] = {
    "modbus": "#d62728",
    "opcua": "#1f77b4",
    "mqtt": "#2ca02c",
    "tls": "#9467bd",
    "s7comm": "#ff7f0e",
    "s7comm_plus": "#e377c2",
    "enip": "#8c564b",
    "cip": "#8c564b",
    "dnp3": "#bcbd22",
    "iec104": "#17becf",
    "bacnet": "#7f7f00",
}
EXTRA_COLOURS: Final = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d")
UNKNOWN_COLOUR: Final = "#a0a0a0"
MAX_PER_COLUMN: Final = 40
ROW: Final = 22
COLUMN: Final = 330
MARGIN: Final = 40
LEGEND_HEIGHT: Final = 70
LABEL_CHARS: Final = 34
# a white outline behind labels keeps them readable where edges cross them
HALO: Final = 'paint-order="stroke" stroke="#ffffff" stroke-width="3" stroke-linejoin="round"'

NodeInfo = Mapping[str, Any]


def protocol_colour(protocol: str, assigned: dict[str, str]) -> str:
    if protocol in PROTOCOL_COLOURS:
        return PROTOCOL_COLOURS[protocol]
    if protocol in ("tcp", "udp", ""):
        return UNKNOWN_COLOUR
    if protocol not in assigned:
        assigned[protocol] = EXTRA_COLOURS[len(assigned) % len(EXTRA_COLOURS)]
    return assigned[protocol]


def _flat_node(info: NodeInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("name", "vendor", "mac", "behind_router"):
        if info.get(key):
            out[key] = str(info[key])
    for key in ("roles", "protocols"):
        if info.get(key):
            out[key] = ",".join(info[key])
    return out


def to_networkx(graph: CommunicationGraph, nodes: Mapping[str, NodeInfo]) -> nx.MultiDiGraph[str]:
    for ip in nodes:
        graph.add_node(ip)
    return graph.to_networkx(lambda ip: _flat_node(nodes.get(ip, {})))


def export_graph(graph: CommunicationGraph, nodes: Mapping[str, NodeInfo], fmt: str) -> bytes:
    """The graph in ``fmt`` (one of :data:`FORMATS`) as bytes."""
    if fmt not in FORMATS:
        raise UserError(f"unknown graph format {fmt!r} (choose from {', '.join(FORMATS)})")
    import networkx as nx

    g = to_networkx(graph, nodes)
    if fmt == "json":
        data = nx.node_link_data(g, edges="edges")
        return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    if fmt == "graphml":
        return "\n".join(nx.generate_graphml(g)).encode() + b"\n"
    if fmt == "dot":
        return to_dot(g).encode()
    svg = to_svg(graph, nodes)
    if fmt == "svg":
        return svg.encode()
    return svg_to_png(svg)


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: nx.MultiDiGraph[str]) -> str:
    """Graphviz DOT: nodes labelled with address and name, edges with protocol/port, coloured."""
    assigned: dict[str, str] = {}
    lines = ["digraph zonewarden {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for node, attrs in g.nodes(data=True):
        label = node + (f"\n{attrs['name']}" if attrs.get("name") else "")
        if attrs.get("roles"):
            label += f"\n[{attrs['roles']}]"
        lines.append(f"  {_dot_id(node)} [label={_dot_id(label)}];")
    for u, v, attrs in g.edges(data=True):
        colour = protocol_colour(attrs["protocol"], assigned)
        label = f"{attrs['protocol']}/{attrs['port']}"
        lines.append(f"  {_dot_id(u)} -> {_dot_id(v)} [label={_dot_id(label)}, color={_dot_id(colour)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _subnet(ip: str) -> tuple[int, int]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (addr.version, int(addr) >> (8 if addr.version == 4 else 64))


def _ip_key(ip: str) -> tuple[int, int, str]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0, ip)
    return (addr.version, int(addr), ip)


def layout(graph: CommunicationGraph, nodes: Mapping[str, NodeInfo]) -> dict[str, tuple[float, float, int]]:
    """(x, y, tier) per node: tier 0 clients only, 1 both, 2 servers only (see the module docstring)."""
    clients: set[str] = set()
    servers: set[str] = set()
    for e in graph.edges():
        clients.add(e.client)
        servers.add(e.server)
    everyone = set(nodes) | clients | servers
    tiers: list[list[str]] = [[], [], []]
    for ip in everyone:
        tier = 1 if ip in clients and ip in servers else 0 if ip in clients else 2
        tiers[tier].append(ip)
    positions: dict[str, tuple[float, float, int]] = {}
    x = MARGIN + 230.0  # room for the client labels, drawn left of their nodes
    for tier, members in enumerate(tiers):
        members.sort(key=_ip_key)
        columns = max(1, math.ceil(len(members) / MAX_PER_COLUMN))
        per_column = math.ceil(len(members) / columns) if members else 0
        for c in range(columns):
            y = MARGIN + LEGEND_HEIGHT + 10.0
            previous: tuple[int, int] | None = None
            for ip in members[c * per_column : (c + 1) * per_column]:
                subnet = _subnet(ip)
                if previous is not None and subnet != previous:
                    y += ROW / 2  # a gap between subnets
                previous = subnet
                positions[ip] = (x, y, tier)
                y += ROW
            x += COLUMN
        if not members:
            x += COLUMN / 3
    return positions


def to_svg(graph: CommunicationGraph, nodes: Mapping[str, NodeInfo]) -> str:
    """A standalone SVG drawing of the graph (see the module docstring for the layout)."""
    from xml.sax.saxutils import escape

    pos = layout(graph, nodes)
    width = max((p[0] for p in pos.values()), default=MARGIN) + COLUMN
    height = max((p[1] for p in pos.values()), default=MARGIN + LEGEND_HEIGHT) + MARGIN
    assigned: dict[str, str] = {}
    edges = sorted(graph.edges(), key=lambda e: (e.protocol, e.client, e.server, e.port))
    protocols = sorted({e.protocol for e in edges})
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        f'<text x="{MARGIN}" y="{MARGIN - 14}" font-size="15" font-weight="bold">'
        f"zonewarden communication graph: {len(pos)} assets, {len(edges)} edges</text>",
    ]
    lx = MARGIN
    for protocol in protocols:
        colour = protocol_colour(protocol, assigned)
        out.append(
            f'<line x1="{lx}" y1="{MARGIN + 6}" x2="{lx + 24}" y2="{MARGIN + 6}" '
            f'stroke="{colour}" stroke-width="3"/>'
        )
        out.append(f'<text x="{lx + 30}" y="{MARGIN + 10}">{escape(protocol)}</text>')
        lx += 40 + 8 * len(protocol)
    for title, tier in (("clients", 0), ("clients and servers", 1), ("servers", 2)):
        xs = [p[0] for p in pos.values() if p[2] == tier]
        if xs:
            out.append(
                f'<text x="{min(xs)}" y="{MARGIN + LEGEND_HEIGHT - 12}" font-weight="bold" fill="#555555">'
                f"{escape(title)}</text>"
            )
    out.append('<g fill="none" stroke-opacity="0.75">')
    for e in edges:
        if e.client not in pos or e.server not in pos:
            continue
        x1, y1, _ = pos[e.client]
        x2, y2, _ = pos[e.server]
        colour = protocol_colour(e.protocol, assigned)
        stroke = 1.0 + min(4.0, math.log10(e.packets + 1))
        bend = (x2 - x1) / 2 if x2 != x1 else 80.0
        title = f"{e.client} -> {e.server} {e.protocol}/{e.port}: {e.packets} packets, {e.bytes} bytes"
        out.append(
            f'<path d="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} '
            f'{x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
            f'stroke="{colour}" stroke-width="{stroke:.1f}"><title>{escape(title)}</title></path>'
        )
    out.append("</g>")
    # clients labelled left of the node, servers right, the middle tier above: edges leave clients to
    # the right and reach servers from the left, so they do not run through the labels
    label_place = {
        0: lambda x, y: f'x="{x - 9:.1f}" y="{y + 4:.1f}" text-anchor="end"',
        1: lambda x, y: f'x="{x - 4:.1f}" y="{y - 8:.1f}"',
        2: lambda x, y: f'x="{x + 9:.1f}" y="{y + 4:.1f}"',
    }
    for ip, (x, y, tier) in sorted(pos.items(), key=lambda kv: _ip_key(kv[0])):
        info = nodes.get(ip, {})
        name = str(info.get("name") or "")
        roles = info.get("roles") or []
        label = ip + (f"  {name}" if name else "")
        if len(label) > LABEL_CHARS:
            label = label[: LABEL_CHARS - 1] + "…"
        tooltip = "; ".join(x for x in (ip, name, str(info.get("vendor") or ""), ", ".join(roles)) if x)
        fill = "#333333" if roles else "#ffffff"
        out.append(
            f'<g><title>{escape(tooltip)}</title><circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" '
            f'stroke="#333333"/><text {label_place[tier](x, y)} {HALO}>{escape(label)}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def svg_to_png(svg: str) -> bytes:
    """Rasterise with ``rsvg-convert`` (Debian ``librsvg2-bin``); a clear error when it is missing."""
    tool = shutil.which("rsvg-convert")
    if tool is None:
        raise UserError(
            "PNG export needs rsvg-convert (apt-get install librsvg2-bin); SVG export works without it"
        )
    try:
        done = subprocess.run([tool, "--format", "png"], input=svg.encode(), capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        raise UserError(f"rsvg-convert failed: {error}") from error
    if done.returncode != 0:
        raise UserError(f"rsvg-convert failed: {done.stderr.decode(errors='replace').strip()[:500]}")
    return done.stdout


def write_export(data: bytes, out: Path | None) -> None:
    if out is None:
        import sys

        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        out.write_bytes(data)


__all__ = ["FORMATS", "export_graph", "to_dot", "to_svg", "write_export"]
