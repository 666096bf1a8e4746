"""The graph's plain-dict topology behaves as the networkx ``MultiDiGraph`` it stands in for.

CommunicationGraph keeps nodes and edges in dicts so a replay never imports networkx, and builds the
networkx graph when an export needs it. Every answer must be the one a networkx graph kept up to date
edge by edge would give, orders included (a node's edges as ``edges_of`` lists them), and the paths
searched on the dicts must be networkx's simple paths. A reference MultiDiGraph follows the same
random operations, evictions included.
"""

from __future__ import annotations

import random

import networkx as nx
import pytest

from sensor.assets.graph import CommunicationGraph, EdgeKey, EdgeStats


def _key(u: str, v: str, k: str) -> EdgeKey:
    protocol, _, port = k.rpartition("/")
    return (u, v, protocol, int(port))


def _assert_same(graph: CommunicationGraph, ref: nx.MultiDiGraph[str]) -> None:
    assert graph.nodes() == list(ref.nodes)
    assert graph.node_count == ref.number_of_nodes()
    assert sorted(e.key for e in graph.edges()) == sorted(_key(u, v, k) for u, v, k in ref.edges(keys=True))
    for node in [*ref.nodes, "192.0.2.99"]:
        if node not in ref:
            assert graph.edges_of(node) == [] and graph.neighbours(node) == set()
            continue
        edges = [*ref.out_edges(node, keys=True), *ref.in_edges(node, keys=True)]
        assert [e.key for e in graph.edges_of(node)] == [_key(u, v, k) for u, v, k in edges]
        assert graph.neighbours(node) == set(ref.successors(node)) | set(ref.predecessors(node))
    simple = nx.DiGraph(ref)
    nodes = list(ref.nodes)[:8]
    for source in nodes:
        for target in nodes:
            expected = sorted(
                (tuple(p) for p in nx.all_simple_paths(simple, source, target, cutoff=3) if source != target),
                key=lambda p: (len(p), p),
            )
            assert list(graph.paths(source, target, max_hops=3, limit=100).paths) == expected


@pytest.mark.parametrize("seed", range(40))
def test_topology_follows_a_networkx_multidigraph(seed: int) -> None:
    rnd = random.Random(seed)
    graph = CommunicationGraph(max_edges=rnd.choice([0, 4, 12]))
    ref: nx.MultiDiGraph[str] = nx.MultiDiGraph()
    ips = [f"10.0.0.{i}" for i in range(rnd.randint(2, 8))]  # few addresses: self-loops, shared pairs
    # A store's edges first (at most 4: no eviction while loading), oldest first, a repeat ignored.
    loaded = [
        EdgeStats(rnd.choice(ips), rnd.choice(ips), "s7comm", 102, "tcp", 0.0, float(rnd.randint(0, 9)))
        for _ in range(rnd.randint(0, 4))
    ]
    graph.load(loaded)
    for stats in sorted(loaded, key=lambda e: e.last_seen):
        ref.add_edge(stats.client, stats.server, key=f"{stats.protocol}/{stats.port}")
    _assert_same(graph, ref)
    for step in range(60):
        roll = rnd.random()
        if roll < 0.6:
            client, server = rnd.choice(ips), rnd.choice(ips)
            protocol, port = rnd.choice([("modbus", 502), ("mqtt", 1883), ("modbus", 5020)])
            before = [e.key for e in graph.edges()]
            new = (client, server, protocol, port) not in before
            graph.edge(client, server, protocol, port, "tcp", float(step))
            after = {e.key for e in graph.edges()}
            for gone in (key for key in before if key not in after):  # evicted, least recently seen first
                ref.remove_edge(gone[0], gone[1], key=f"{gone[2]}/{gone[3]}")
            if new:
                ref.add_edge(client, server, key=f"{protocol}/{port}")
        elif roll < 0.7:
            ip = rnd.choice([*ips, "10.9.9.9"])
            graph.add_node(ip)
            ref.add_node(ip)
        elif roll < 0.8:
            ip = rnd.choice([*ips, "10.9.9.8"])
            graph.remove_node(ip)
            if ip in ref:
                ref.remove_node(ip)
        elif roll < 0.9:
            keys = [e.key for e in graph.edges()]
            if keys:
                key = rnd.choice(keys)
                assert graph.remove_edge(key) is not None
                ref.remove_edge(key[0], key[1], key=f"{key[2]}/{key[3]}")
        else:
            keys = [e.key for e in graph.edges()]
            if keys:
                key = rnd.choice(keys)
                graph.edge(*key, "tcp", float(step))  # seen again: moves in the eviction order only
        if step % 10 == 9:
            _assert_same(graph, ref)
    _assert_same(graph, ref)
