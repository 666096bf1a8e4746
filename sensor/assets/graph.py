"""The communication graph: who talks to whom, over what, and how (networkx behind a typed facade).

Nodes are assets (IP addresses); edges are keyed by ``(client, server, protocol, port)`` and carry an
:class:`EdgeStats`: packets and bytes in both directions, flows, first/last seen, and the operations
seen on it (Modbus function codes and unit ids, OPC UA services, MQTT topics published/subscribed).

Callers never touch networkx: the facade answers the questions policy and the API ask (neighbours,
communications between two sets of assets, who can reach an asset through which hops) and builds a
flat-attribute ``MultiDiGraph`` for export. The edge objects live in one ordered dict (least recently
seen first) so updating an edge on every event is a dict lookup. The topology is kept in two plain dicts
with the semantics and orders of a networkx ``MultiDiGraph``; networkx itself is imported and the graph
built only when an export asks for it, so a replay does not pay its import (~0.1 s of start-up). Paths
are searched on the dicts, with a step budget (:meth:`CommunicationGraph.paths`): the graph is as dense
as an attacker makes it. Edges are bounded by ``Limits.max_graph_edges``: the least recently seen edge
goes first (``graph.edges_evicted``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sensor.limits import DEFAULT_LIMITS, Limits

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


@dataclass(frozen=True, slots=True)
class PathSearch:
    """The answer of :meth:`CommunicationGraph.paths`.

    ``paths``: each a tuple of addresses from the source to the target, shortest first, then in
    lexicographic order. ``truncated``: the limit on paths or the step budget cut the answer (more
    paths may exist within the hops asked). ``steps``: neighbours the search examined (what the budget,
    ``Limits.graph_path_steps``, counts).
    """

    paths: tuple[tuple[str, ...], ...]
    truncated: bool
    steps: int


def _op_sort(value: str) -> tuple[int, int, str]:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


class CommunicationGraph:
    """Typed facade over the ``MultiDiGraph`` of assets and their conversations (networkx for export)."""

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

    def __contains__(self, ip: object) -> bool:
        return ip in self._adjacent

    def nodes(self) -> list[str]:
        return list(self._adjacent)

    def degree(self, ip: str) -> int:
        """(client, server) pairs ``ip`` is in: assets it talks to, counted once per direction."""
        return len(self._adjacent.get(ip, ()))

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

    def paths(
        self,
        source: str,
        target: str,
        max_hops: int = 4,
        directed: bool = True,
        limit: int = 20,
        limits: Limits = DEFAULT_LIMITS,
    ) -> PathSearch:
        """Simple paths from ``source`` to ``target`` of at most ``max_hops`` edges, shortest first, at
        most ``limit`` of them, each a tuple of addresses from ``source`` to ``target``.

        ``directed``: a hop goes from a client to a server it opened a connection to (a client can act on
        its server); otherwise either way. Several edges between two assets (protocols, ports, both
        directions when undirected) are one hop; a self-loop is none. ``source == target`` has no path:
        a path here is at least one hop. An address the graph does not hold has none either.

        Enumerating simple paths is exponential in the worst case, and an attacker decides how dense
        the graph is (a scanner adds an edge to every address it touches). So: one breadth-first search
        backwards from the target gives every asset's hop distance to it (within ``max_hops``); then,
        for each length L from the source's distance up to ``max_hops``, a depth-first search that
        enters an asset only when the hops taken plus its distance fit in L collects the paths of
        exactly L hops. Neighbours are visited in sorted order, so paths of one length come out in
        lexicographic order: the answer is ``sorted(all paths, key=(len, path))`` cut to ``limit``.

        The depth-first searches stop after examining ``limits.graph_path_steps`` neighbours in all (the
        breadth-first search is linear in the edges and not counted). ``truncated`` is True when
        ``limit`` or the step budget cut the answer: more paths within ``max_hops`` exist, or may.
        ``max_hops`` above ``limits.graph_path_max_hops``, or ``max_hops`` or ``limit`` below 1, is a
        ValueError (callers check what people ask first).
        """
        if not 1 <= max_hops <= limits.graph_path_max_hops:
            raise ValueError(f"max_hops is 1 to {limits.graph_path_max_hops}, not {max_hops}")
        if limit < 1:
            raise ValueError(f"limit is at least 1, not {limit}")
        max_steps = limits.graph_path_steps
        if source == target or source not in self._adjacent or target not in self._adjacent:
            return PathSearch((), False, 0)
        forward = self._neighbour_lists(directed, outgoing=True)
        distance = self._distances_to(target, max_hops, self._neighbour_lists(directed, outgoing=False))
        first = distance.get(source)
        if first is None:
            return PathSearch((), False, 0)
        # Only assets within max_hops of the target can be on a path: each asset's useful neighbours,
        # sorted, made once and kept for the searches of every length.
        useful: dict[str, list[str]] = {}

        def onward(node: str) -> list[str]:
            nodes = useful.get(node)
            if nodes is None:
                nodes = useful[node] = sorted(n for n in forward(node) if n in distance)
            return nodes

        found: list[tuple[str, ...]] = []
        steps = 0
        for length in range(first, max_hops + 1):
            path = [source]
            on_path = {source}
            pending = [iter(onward(source))]
            while pending:
                for node in pending[-1]:
                    steps += 1
                    if steps > max_steps:
                        return PathSearch(tuple(found), True, max_steps)
                    if node == target:
                        if len(path) == length:
                            if len(found) == limit:  # one more exists: the limit cut the answer
                                return PathSearch(tuple(found), True, steps)
                            found.append((*path, target))
                        continue
                    # len(path) hops taken once at node; it must still reach the target within length
                    if node in on_path or len(path) + distance[node] > length:
                        continue
                    path.append(node)
                    on_path.add(node)
                    pending.append(iter(onward(node)))
                    break
                else:
                    pending.pop()
                    on_path.discard(path.pop())
        return PathSearch(tuple(found), False, steps)

    def _neighbour_lists(self, directed: bool, outgoing: bool) -> Callable[[str], set[str]]:
        """A function giving an asset's neighbours other than itself: the servers it opened connections
        to (``outgoing``) or the clients that opened connections to it, or both when not ``directed``."""
        adjacent = self._adjacent

        def neighbours(node: str) -> set[str]:
            pairs = adjacent.get(node, ())
            if not directed:
                found = {server if client == node else client for client, server in pairs}
            elif outgoing:
                found = {server for client, server in pairs if client == node}
            else:
                found = {client for client, server in pairs if server == node}
            found.discard(node)
            return found

        return neighbours

    @staticmethod
    def _distances_to(target: str, max_hops: int, backwards: Callable[[str], set[str]]) -> dict[str, int]:
        """Hops from every asset to ``target`` (those within ``max_hops``): breadth first, backwards."""
        distance = {target: 0}
        frontier = [target]
        for hops in range(1, max_hops + 1):
            reached = []
            for node in frontier:
                for previous in backwards(node):
                    if previous not in distance:
                        distance[previous] = hops
                        reached.append(previous)
            frontier = reached
        return distance

    # --- export -------------------------------------------------------------------------------

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
