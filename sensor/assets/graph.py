"""The communication graph: who talks to whom, over what, and how (networkx behind a typed facade).

Nodes are assets (IP addresses); edges are keyed by ``(client, server, protocol, port)`` and carry an
:class:`EdgeStats`: packets and bytes in both directions, flows, first/last seen, and the operations
seen on it (Modbus function codes and unit ids, OPC UA services, MQTT topics published/subscribed).

Callers never touch networkx: the facade answers the questions policy and the API ask (neighbours,
communications between two sets of assets, paths) and builds a flat-attribute ``MultiDiGraph`` for
export. The edge objects live in one ordered dict (least recently seen first) so updating an edge on
every event is a dict lookup. The topology is kept in two plain dicts with the semantics and orders of
a networkx ``MultiDiGraph``; networkx itself is imported and the graph built only when a graph
algorithm or an export asks for it, so a replay does not pay its import (~0.1 s of start-up). Edges are
bounded by ``Limits.max_graph_edges``: the least recently seen edge goes first (``graph.edges_evicted``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import networkx as nx

EdgeKey = tuple[str, str, str, int]  # client IP, server IP, protocol, server port
NodePair = tuple[str, str]  # client IP, server IP: one networkx adjacency entry, any number of edges
MAX_OPERATIONS_PER_KIND: Final = 256
OPERATION_KINDS: Final = ("function", "unit", "service", "publish", "subscribe", "receive")


def edge_id(key: EdgeKey) -> str:
    """Stable text id of an edge (the store's primary key): ``client|server|protocol|port``."""
    return f"{key[0]}|{key[1]}|{key[2]}|{key[3]}"


@dataclass(slots=True, eq=False)
class EdgeStats:
    client: str
    server: str
    protocol: str
    port: int
    transport: str
    first_seen: float
    last_seen: float
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    operations: dict[str, set[str]] = field(default_factory=dict)
    evicted: bool = False

    @property
    def key(self) -> EdgeKey:
        return (self.client, self.server, self.protocol, self.port)

    @property
    def id(self) -> str:
        return edge_id(self.key)

    def add_operation(self, kind: str, value: str) -> bool:
        values = self.operations.get(kind)
        if values is None:
            values = self.operations[kind] = set()
        elif value in values:
            return False
        if len(values) >= MAX_OPERATIONS_PER_KIND:
            return False
        values.add(value)
        return True

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "server": self.server,
            "protocol": self.protocol,
            "port": self.port,
            "transport": self.transport,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "packets": self.packets,
            "bytes": self.bytes,
            "flows": self.flows,
            "operations": {k: sorted(v, key=_op_sort) for k, v in sorted(self.operations.items())},
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> EdgeStats:
        return cls(
            client=rec["client"],
            server=rec["server"],
            protocol=rec["protocol"],
            port=int(rec["port"]),
            transport=rec.get("transport", ""),
            first_seen=float(rec["first_seen"]),
            last_seen=float(rec["last_seen"]),
            packets=int(rec.get("packets", 0)),
            bytes=int(rec.get("bytes", 0)),
            flows=int(rec.get("flows", 0)),
            operations={k: set(v) for k, v in rec.get("operations", {}).items()},
        )


def _op_sort(value: str) -> tuple[int, int, str]:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


class CommunicationGraph:
    """Typed facade over a networkx ``MultiDiGraph`` of assets and their conversations."""

    def __init__(self, max_edges: int = 500_000) -> None:
        self.max_edges = max_edges
        self._edges: OrderedDict[EdgeKey, EdgeStats] = OrderedDict()
        # The topology as networkx would hold it. Nodes in insertion order, each with the pairs that
        # touch it in the order they were created; a pair (networkx's succ/pred entry) with its edge keys,
        # dropped with its last edge. A self-loop pair appears once under its node.
        self._adjacent: dict[str, dict[NodePair, None]] = {}
        self._pairs: dict[NodePair, dict[EdgeKey, None]] = {}
        self.dirty: set[EdgeKey] = set()
        self.deleted: set[EdgeKey] = set()
        self.track_deleted = False  # a store is attached and must hear of removed edges
        self.edges_evicted = 0

    def __len__(self) -> int:
        return len(self._edges)

    @property
    def node_count(self) -> int:
        return len(self._adjacent)

    def nodes(self) -> list[str]:
        return list(self._adjacent)

    def edges(self) -> Iterator[EdgeStats]:
        return iter(self._edges.values())

    def get(self, key: EdgeKey) -> EdgeStats | None:
        return self._edges.get(key)

    # --- updates ------------------------------------------------------------------------------

    def edge(
        self, client: str, server: str, protocol: str, port: int, transport: str, ts: float
    ) -> EdgeStats:
        """The edge for this conversation, created when new (evicting the least recently seen)."""
        key = (client, server, protocol, port)
        stats = self._edges.get(key)
        if stats is not None:
            self._edges.move_to_end(key)
            if ts > stats.last_seen:
                stats.last_seen = ts
            self.dirty.add(key)
            return stats
        while len(self._edges) >= self.max_edges > 0:
            old_key, old = self._edges.popitem(last=False)
            old.evicted = True
            self._drop_edge(old_key)
            self.edges_evicted += 1
        stats = EdgeStats(client, server, protocol, port, transport, ts, ts)
        self._insert(stats)
        return stats

    def _insert(self, stats: EdgeStats) -> None:
        key = stats.key
        self._edges[key] = stats
        # networkx add_edge: the client, then the server, become nodes if new; a new pair goes last.
        client, server = key[0], key[1]
        adjacent = self._adjacent
        if client not in adjacent:
            adjacent[client] = {}
        if server not in adjacent:
            adjacent[server] = {}
        pair = (client, server)
        keys = self._pairs.get(pair)
        if keys is None:
            keys = self._pairs[pair] = {}
            adjacent[client][pair] = None
            adjacent[server][pair] = None
        keys[key] = None
        self.dirty.add(key)
        self.deleted.discard(key)

    def _drop_edge(self, key: EdgeKey) -> None:
        pair = (key[0], key[1])
        keys = self._pairs.get(pair)
        if keys is not None and key in keys:
            del keys[key]
            if not keys:  # networkx remove_edge: the pair goes with its last edge, the nodes stay
                del self._pairs[pair]
                del self._adjacent[key[0]][pair]
                self._adjacent[key[1]].pop(pair, None)  # already gone when a self-loop
        self.dirty.discard(key)
        if self.track_deleted:
            self.deleted.add(key)

    def remove_edge(self, key: EdgeKey) -> EdgeStats | None:
        stats = self._edges.pop(key, None)
        if stats is not None:
            stats.evicted = True
            self._drop_edge(key)
        return stats

    def add_node(self, ip: str) -> None:
        if ip not in self._adjacent:
            self._adjacent[ip] = {}

    def remove_node(self, ip: str) -> None:
        """Drop an asset and every edge touching it (the inventory evicted it)."""
        pairs = self._adjacent.pop(ip, None)
        if pairs is None:
            return
        for pair in pairs:
            for key in self._pairs.pop(pair):
                stats = self._edges.pop(key, None)
                if stats is not None:
                    stats.evicted = True
                    self.dirty.discard(key)
                    if self.track_deleted:
                        self.deleted.add(key)
            other = pair[1] if pair[0] == ip else pair[0]
            if other != ip:
                del self._adjacent[other][pair]

    def load(self, edges: Collection[EdgeStats]) -> None:
        for stats in sorted(edges, key=lambda e: e.last_seen):
            while len(self._edges) >= self.max_edges > 0:
                old_key, _ = self._edges.popitem(last=False)
                self._drop_edge(old_key)
            self._insert(stats)
        self.dirty.clear()

    # --- queries ------------------------------------------------------------------------------

    def neighbours(self, ip: str) -> set[str]:
        """Every asset ``ip`` talks to, as client or server."""
        return {server if client == ip else client for client, server in self._adjacent.get(ip, ())}

    def edges_of(self, ip: str) -> list[EdgeStats]:
        """The edges of ``ip`` in networkx's order: as client, then as server (a self-loop twice)."""
        pairs = self._adjacent.get(ip, {})
        outgoing = [pair for pair in pairs if pair[0] == ip]
        incoming = [pair for pair in pairs if pair[1] == ip]
        out = []
        for pair in (*outgoing, *incoming):
            for key in self._pairs[pair]:
                stats = self._edges.get(key)
                if stats is not None:
                    out.append(stats)
        return out

    def communications(
        self, sources: Collection[str], targets: Collection[str], both_directions: bool = False
    ) -> list[EdgeStats]:
        """Edges whose client is in ``sources`` and server in ``targets`` (and the reverse if asked)."""
        src, dst = set(sources), set(targets)
        out = [e for e in self._edges.values() if e.client in src and e.server in dst]
        if both_directions:
            out += [e for e in self._edges.values() if e.client in dst and e.server in src]
        return out

    def paths(self, source: str, target: str, max_hops: int = 4, directed: bool = True) -> list[list[str]]:
        """Simple paths from ``source`` to ``target`` of at most ``max_hops`` edges (client -> server
        direction unless ``directed`` is False), shortest first."""
        if source not in self._adjacent or target not in self._adjacent:
            return []
        import networkx as nx

        topology = self._networkx()
        graph: Any = topology if directed else topology.to_undirected(as_view=True)
        simple = nx.DiGraph(graph) if directed else nx.Graph(graph)
        found = [list(p) for p in nx.all_simple_paths(simple, source, target, cutoff=max_hops)]
        return sorted(found, key=lambda p: (len(p), p))

    def shortest_path(self, source: str, target: str, directed: bool = True) -> list[str] | None:
        if source not in self._adjacent or target not in self._adjacent:
            return None
        import networkx as nx

        topology = self._networkx()
        graph: Any = topology if directed else topology.to_undirected(as_view=True)
        try:
            return list(nx.shortest_path(graph, source, target))
        except nx.NetworkXNoPath:
            return None

    # --- networkx -----------------------------------------------------------------------------

    def _networkx(self) -> nx.MultiDiGraph[str]:
        """The topology as a networkx ``MultiDiGraph``, built now (O(nodes + edges)).

        Nodes are added in their order, then the pairs in the order they were created: that gives
        every node's successors and predecessors the order an incrementally kept networkx graph has,
        so algorithms that walk them (ties between equally short paths) answer the same.
        """
        import networkx as nx

        graph: nx.MultiDiGraph[str] = nx.MultiDiGraph()
        graph.add_nodes_from(self._adjacent)
        for (client, server), keys in self._pairs.items():
            for key in keys:
                graph.add_edge(client, server, key=f"{key[2]}/{key[3]}")
        return graph

    def to_networkx(
        self, node_attributes: Callable[[str], dict[str, Any]] | None = None
    ) -> nx.MultiDiGraph[str]:
        """A copy with flat, export-safe attributes (strings and numbers only, GraphML-compatible)."""
        import networkx as nx

        out: nx.MultiDiGraph[str] = nx.MultiDiGraph()
        for node in sorted(self._adjacent):
            out.add_node(node, **(node_attributes(node) if node_attributes else {}))
        for stats in sorted(self._edges.values(), key=lambda e: e.key):
            attrs: dict[str, Any] = {
                "protocol": stats.protocol,
                "port": stats.port,
                "transport": stats.transport,
                "packets": stats.packets,
                "bytes": stats.bytes,
                "flows": stats.flows,
                "first_seen": stats.first_seen,
                "last_seen": stats.last_seen,
            }
            for kind, values in sorted(stats.operations.items()):
                attrs[f"ops_{kind}"] = ",".join(sorted(values, key=_op_sort))
            out.add_edge(stats.client, stats.server, key=f"{stats.protocol}/{stats.port}", **attrs)
        return out
