"""Communication graph facade: edges, queries, eviction and every export format."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from io import BytesIO

import networkx as nx
import pytest

from sensor.assets.export import FORMATS, export_graph, to_svg
from sensor.assets.graph import CommunicationGraph
from sensor.errors import UserError


def plant() -> CommunicationGraph:
    g = CommunicationGraph()
    hmi, gw, broker = "10.0.1.10", "10.0.2.1", "10.0.3.5"
    for i in range(1, 6):
        e = g.edge(hmi, f"10.0.2.{10 + i}", "modbus", 502, "tcp", float(i))
        e.packets, e.bytes = 100 * i, 6400 * i
        e.add_operation("function", "3")
    g.edge(hmi, gw, "opcua", 4840, "tcp", 1.0).add_operation("service", "Read")
    g.edge(gw, "10.0.2.11", "modbus", 502, "tcp", 2.0)
    g.edge("10.0.2.11", broker, "mqtt", 1883, "tcp", 3.0).add_operation("publish", "plant/line1/temp")
    g.edge("10.0.9.9", "10.0.2.12", "s7comm", 102, "tcp", 4.0)
    return g


def test_graph_neighbours_both_directions() -> None:
    g = plant()
    assert g.neighbours("10.0.2.11") == {"10.0.1.10", "10.0.2.1", "10.0.3.5"}
    assert g.neighbours("unknown") == set()


def test_graph_communications_between_sets() -> None:
    g = plant()
    found = g.communications({"10.0.1.10"}, {"10.0.2.11", "10.0.2.12", "10.0.3.5"})
    assert sorted((e.server, e.protocol) for e in found) == [("10.0.2.11", "modbus"), ("10.0.2.12", "modbus")]
    back = g.communications({"10.0.3.5"}, {"10.0.2.11"}, both_directions=True)
    assert [(e.client, e.protocol) for e in back] == [("10.0.2.11", "mqtt")]


def test_graph_paths_follow_client_to_server_direction() -> None:
    g = plant()
    assert g.paths("10.0.1.10", "10.0.3.5").paths == (
        ("10.0.1.10", "10.0.2.11", "10.0.3.5"),
        ("10.0.1.10", "10.0.2.1", "10.0.2.11", "10.0.3.5"),
    )
    assert g.paths("10.0.3.5", "10.0.1.10").paths == ()
    undirected = g.paths("10.0.3.5", "10.0.1.10", directed=False, limit=1)
    assert undirected.paths == (("10.0.3.5", "10.0.2.11", "10.0.1.10"),) and undirected.truncated


def test_graph_multiple_protocols_between_one_pair_are_separate_edges() -> None:
    g = CommunicationGraph()
    g.edge("a", "b", "modbus", 502, "tcp", 1.0)
    g.edge("a", "b", "modbus", 5020, "tcp", 1.0)
    g.edge("a", "b", "opcua", 4840, "tcp", 1.0)
    assert len(g) == 3
    assert g.to_networkx().number_of_edges("a", "b") == 3


def test_graph_edges_bounded_least_recently_seen_evicted() -> None:
    g = CommunicationGraph(max_edges=3)
    for i in range(5):
        g.edge("c", f"s{i}", "tcp", 80, "tcp", float(i))
    assert len(g) == 3 and g.edges_evicted == 2
    assert g.neighbours("c") == {"s2", "s3", "s4"}


def test_graph_remove_node_drops_its_edges() -> None:
    g = plant()
    g.remove_node("10.0.2.11")
    assert all("10.0.2.11" not in (e.client, e.server) for e in g.edges())
    assert g.neighbours("10.0.3.5") == set()


NODES = {"10.0.1.10": {"name": "HMI <1>", "roles": ["hmi_scada"], "protocols": ["modbus"], "vendor": "Dell"}}


def test_export_json_is_networkx_node_link() -> None:
    data = json.loads(export_graph(plant(), NODES, "json"))
    g = nx.node_link_graph(data, edges="edges")
    assert g.is_multigraph() and g.is_directed()
    assert g.number_of_edges() == 9
    assert g.nodes["10.0.1.10"]["name"] == "HMI <1>"
    edge = next(d for _u, v, d in g.edges(data=True) if v == "10.0.2.15")
    assert edge["packets"] == 500 and edge["ops_function"] == "3"


def test_export_graphml_reads_back() -> None:
    g = nx.read_graphml(BytesIO(export_graph(plant(), NODES, "graphml")))
    assert g.number_of_edges() == 9
    assert g.nodes["10.0.1.10"]["roles"] == "hmi_scada"


def test_export_dot_quotes_names() -> None:
    dot = export_graph(plant(), {"x": {"name": 'evil"name\n'}}, "dot").decode()
    assert dot.startswith("digraph zonewarden {")
    assert '"x" [label="x\\nevil\\"name\\n"];' in dot
    assert dot.count("->") == 9


def test_export_svg_well_formed_with_protocol_colours_and_escaped_labels() -> None:
    svg = to_svg(plant(), NODES)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    paths = root.findall(f".//{ns}path")
    assert len(paths) == 9
    assert len({p.get("stroke") for p in paths}) == 4  # modbus, opcua, mqtt, s7comm told apart
    assert "HMI &lt;1&gt;" in svg


def test_export_svg_of_200_assets_stays_readable() -> None:
    g = CommunicationGraph()
    for i in range(200):
        g.edge("10.0.0.1" if i % 2 else "10.0.0.2", f"10.1.{i // 100}.{i % 100}", "modbus", 502, "tcp", 1.0)
    root = ET.fromstring(to_svg(g, {}))
    circles = root.findall(".//{http://www.w3.org/2000/svg}circle")
    assert len(circles) == 202
    ys = [float(c.get("cy", 0)) for c in circles]
    assert max(ys) < 1500  # wrapped into columns, not one 4,000-pixel column
    positions = {(c.get("cx"), c.get("cy")) for c in circles}
    assert len(positions) == 202  # no two assets drawn on top of each other


def test_export_png_through_rsvg_convert() -> None:
    if shutil.which("rsvg-convert") is None:
        with pytest.raises(UserError, match="rsvg-convert"):
            export_graph(plant(), NODES, "png")
        return
    png = export_graph(plant(), NODES, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_unknown_format_refused() -> None:
    assert "svg" in FORMATS
    with pytest.raises(UserError):
        export_graph(plant(), {}, "pdf")
