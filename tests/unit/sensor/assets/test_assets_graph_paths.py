"""CommunicationGraph.paths: bounded simple-path enumeration, shortest first, with a step budget.

The answer must be networkx's ``all_simple_paths`` sorted by (length, path) and cut to the limit, on
any graph; on a graph an attacker made dense, it must stop at the step budget and say it did.
"""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.assets.graph import CommunicationGraph, PathSearch
from sensor.limits import DEFAULT_LIMITS, Limits

NODES = [f"10.0.0.{i}" for i in range(7)]
PROTOCOLS = [("modbus", 502), ("modbus", 5020), ("opcua", 4840), ("mqtt", 1883)]

edge_lists = st.lists(
    st.tuples(st.sampled_from(NODES), st.sampled_from(NODES), st.sampled_from(PROTOCOLS)), max_size=30
)


def _graph(edges: list[tuple[str, str, tuple[str, int]]]) -> CommunicationGraph:
    g = CommunicationGraph(max_edges=0)
    for client, server, (protocol, port) in edges:
        g.edge(client, server, protocol, port, "tcp", 1.0)
    return g


def _expected(
    g: CommunicationGraph, source: str, target: str, hops: int, directed: bool
) -> list[tuple[str, ...]]:
    ref: nx.Graph[str] = nx.DiGraph() if directed else nx.Graph()
    ref.add_nodes_from(g.nodes())
    ref.add_edges_from((e.client, e.server) for e in g.edges())
    found = (tuple(p) for p in nx.all_simple_paths(ref, source, target, cutoff=hops))
    return sorted(found, key=lambda p: (len(p), p))


@settings(max_examples=200, deadline=None)
@given(
    edges=edge_lists,
    source=st.sampled_from(NODES),
    target=st.sampled_from(NODES),
    hops=st.integers(1, DEFAULT_LIMITS.graph_path_max_hops),
    directed=st.booleans(),
    limit=st.integers(1, 6),
)
def test_paths_are_networkx_simple_paths_shortest_first(
    edges: list[tuple[str, str, tuple[str, int]]],
    source: str,
    target: str,
    hops: int,
    directed: bool,
    limit: int,
) -> None:
    g = _graph(edges)
    if source not in g or target not in g or source == target:
        assert g.paths(source, target, hops, directed) == PathSearch((), False, 0)
        return
    expected = _expected(g, source, target, hops, directed)
    everything = g.paths(source, target, hops, directed, limit=10_000)
    assert list(everything.paths) == expected and not everything.truncated
    cut = g.paths(source, target, hops, directed, limit=limit)
    assert list(cut.paths) == expected[:limit]
    assert cut.truncated == (len(expected) > limit)
    assert cut.steps <= everything.steps <= DEFAULT_LIMITS.graph_path_steps


def test_paths_of_unknown_addresses_and_of_an_asset_to_itself_are_none() -> None:
    g = _graph([("10.0.0.1", "10.0.0.2", ("modbus", 502)), ("10.0.0.2", "10.0.0.1", ("mqtt", 1883))])
    none = PathSearch((), False, 0)
    assert g.paths("10.0.0.9", "10.0.0.2") == none
    assert g.paths("10.0.0.1", "10.0.0.9") == none
    # a 0-hop path is not a path, nor is a round trip (a simple path never comes back)
    assert g.paths("10.0.0.1", "10.0.0.1", directed=False) == none
    g.add_node("10.0.0.3")  # an asset with no edge: known, unreachable
    assert g.paths("10.0.0.1", "10.0.0.3", directed=False) == none


def test_self_loops_and_several_protocols_between_a_pair_are_one_hop() -> None:
    a, b, c = "10.0.0.1", "10.0.0.2", "10.0.0.3"
    g = _graph(
        [
            (a, a, ("modbus", 502)),  # a host polling itself (a loopback capture)
            (a, b, ("modbus", 502)),
            (a, b, ("modbus", 5020)),
            (a, b, ("opcua", 4840)),
            (b, a, ("mqtt", 1883)),
            (b, b, ("mqtt", 1883)),
            (b, c, ("modbus", 502)),
        ]
    )
    for directed in (True, False):
        assert g.paths(a, b, max_hops=8, directed=directed).paths == ((a, b),)
        assert g.paths(a, c, max_hops=8, directed=directed).paths == ((a, b, c),)
    assert g.paths(c, a, max_hops=8).paths == ()
    assert g.paths(c, a, max_hops=8, directed=False).paths == ((c, b, a),)


def test_paths_longer_than_max_hops_are_left_out_and_not_counted_as_cut() -> None:
    chain = [f"10.0.0.{i}" for i in range(6)]
    g = _graph([(x, y, ("modbus", 502)) for x, y in itertools.pairwise(chain)])
    assert g.paths(chain[0], chain[5], max_hops=4) == PathSearch((), False, 0)  # 5 hops away
    found = g.paths(chain[0], chain[5], max_hops=5)
    assert found.paths == (tuple(chain),) and not found.truncated


@pytest.mark.parametrize(("hops", "limit"), [(0, 1), (DEFAULT_LIMITS.graph_path_max_hops + 1, 1), (2, 0)])
def test_paths_refuse_hops_and_limits_out_of_range(hops: int, limit: int) -> None:
    g = _graph([("10.0.0.1", "10.0.0.2", ("modbus", 502))])
    with pytest.raises(ValueError):
        g.paths("10.0.0.1", "10.0.0.2", max_hops=hops, limit=limit)


SOURCE, HUB, TARGET = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def _scanned_plant(width: int = 150) -> CommunicationGraph:
    """Two layers of ``width`` addresses joined both ways, every pair (a scanner's work: 2 x width^2
    edges), hanging off the one hub between the source and the target: SOURCE -> HUB -> TARGET is the
    only simple path, but every walk through the layers looks, by hop distance, as if it could come
    back through HUB. Without a budget the search would walk width^5 of them for 8 hops."""
    g = CommunicationGraph(max_edges=0)
    g.edge(SOURCE, HUB, "opcua", 4840, "tcp", 1.0)
    g.edge(HUB, TARGET, "modbus", 502, "tcp", 1.0)
    left = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(width)]
    right = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(width)]
    for a in left:
        g.edge(HUB, a, "tcp", 22, "tcp", 1.0)
        for b in right:
            g.edge(a, b, "tcp", 80, "tcp", 1.0)
            g.edge(b, a, "tcp", 80, "tcp", 1.0)
    for b in right:
        g.edge(b, HUB, "tcp", 443, "tcp", 1.0)
    return g


@pytest.mark.parametrize("directed", [True, False])
def test_dense_scanned_graph_stops_at_the_step_budget(directed: bool) -> None:
    g = _scanned_plant()
    assert g.node_count == 303 and len(g) == 2 + 150 + 2 * 150 * 150 + 150
    found = g.paths(SOURCE, TARGET, max_hops=8, directed=directed, limit=100)
    assert found.paths == ((SOURCE, HUB, TARGET),)
    assert found.truncated and found.steps == DEFAULT_LIMITS.graph_path_steps
    small = g.paths(SOURCE, TARGET, max_hops=8, directed=directed, limits=Limits(graph_path_steps=5_000))
    assert small.truncated and small.steps == 5_000
    assert small.paths == ((SOURCE, HUB, TARGET),)  # the shortest paths are found before the budget goes
    # within 3 hops no walk through the layers fits: the answer is whole, after a few steps
    whole = g.paths(SOURCE, TARGET, max_hops=3, directed=directed)
    assert whole.paths == ((SOURCE, HUB, TARGET),) and not whole.truncated and whole.steps < 1000


def test_dense_layers_give_the_first_paths_in_order_and_say_there_are_more() -> None:
    """Complete bipartite layers SOURCE -> 150 -> 150 -> TARGET: 22,500 paths of 3 hops."""
    g = CommunicationGraph(max_edges=0)
    left = [f"10.1.0.{i + 1}" for i in range(150)]
    right = [f"10.2.0.{i + 1}" for i in range(150)]
    for a in left:
        g.edge(SOURCE, a, "modbus", 502, "tcp", 1.0)
        for b in right:
            g.edge(a, b, "modbus", 502, "tcp", 1.0)
    for b in right:
        g.edge(b, TARGET, "modbus", 502, "tcp", 1.0)
    found = g.paths(SOURCE, TARGET, max_hops=8, limit=100)
    first = min(left)
    assert found.paths == tuple((SOURCE, first, b, TARGET) for b in sorted(right)[:100])
    assert found.truncated and found.steps < 1000  # one left asset's neighbours, not the 22,500 paths
    undirected = g.paths(SOURCE, TARGET, max_hops=8, directed=False, limit=100)
    assert undirected.paths == found.paths and undirected.truncated
    assert undirected.steps <= DEFAULT_LIMITS.graph_path_steps
