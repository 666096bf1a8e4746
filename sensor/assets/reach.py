"""Who can reach an asset, through which hops: the reachability document of the API and the CLI.

``GET /api/v1/graph/paths`` and ``zonewarden graph paths --json`` answer with the same document, built
here from the store a sensor writes:

* ``source``, ``target``, ``directed``, ``max_hops``, ``limit``: the question, addresses normalised;
* ``paths``: the simple paths :meth:`CommunicationGraph.paths` found, shortest first, each a list of
  hops. A hop names its two ends in the path's order (``client``: the end the path leaves, ``server``:
  the end it enters), the edges between them (the store's edges, with their operations and policy
  marks, as ``/communications`` gives them) and which way those connections were opened:
  ``forward`` (client to server), ``reverse`` (server to client, only when ``directed`` is false) or
  ``both``. With a policy, each end's zone (``None``: in no zone) and whether the hop crosses zones;
  ``policy_status`` is the worst mark of its edges (a hop crossing zones with no conduit for it is a
  ``violation`` whose alerts name conduit ``''``);
* ``truncated``: the limit on paths or the step budget (``Limits.graph_path_steps``) cut the answer;
  ``steps``: neighbours the search examined; ``policy_loaded``: zones are known.

An edge's policy ``status`` is the store's (``violation``, ``closed``) or, with no policy alert on it,
``allowed`` when the caller judges traffic against a policy and ``unknown`` otherwise
(:func:`resolve_policy_status`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from itertools import pairwise
from typing import Any, Final

from sensor.errors import UserError
from sensor.limits import DEFAULT_LIMITS, Limits

DEFAULT_MAX_HOPS: Final = 4
DEFAULT_PATHS: Final = 20
MAX_PATHS: Final = 100  # paths one answer lists (each up to graph_path_max_hops hops of edges)

ZoneOf = Callable[[str], str | None]

# worst first: a hop's policy_status is the first of these any of its edges has
POLICY_STATUSES: Final = ("violation", "closed", "allowed", "unknown")


class UnknownAsset(UserError):
    """The store knows no asset (nor edge end) with this address."""

    def __init__(self, end: str, ip: str) -> None:
        super().__init__(f"no asset {ip} in the store ({end})")
        self.end = end
        self.ip = ip


def normalise_ip(text: str, end: str) -> str:
    """An address as the store writes it (``2001:DB8::0001`` -> ``2001:db8::1``); UserError if not one."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise UserError(f"{end} {text[:64]!r} is not an IPv4 or IPv6 address") from None


def resolve_policy_status(edges: list[dict[str, Any]], policy_configured: bool) -> list[dict[str, Any]]:
    """An edge no policy alert was raised on is ``allowed`` when traffic is judged against a policy
    (the sensor checked every operation on it), else ``unknown``."""
    quiet = "allowed" if policy_configured else "unknown"
    for edge in edges:
        if edge["policy"]["status"] == "none":
            edge["policy"]["status"] = quiet
    return edges


def paths_document(
    store: Any,
    source: str,
    target: str,
    *,
    max_hops: int = DEFAULT_MAX_HOPS,
    directed: bool = True,
    limit: int = DEFAULT_PATHS,
    zone_of: ZoneOf | None = None,
    policy_configured: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """The reachability document (module docstring) over ``store`` (a ``sensor.store.sqlite.Store``).

    ``source`` and ``target`` must be addresses (:func:`normalise_ip`); an address the store does not
    hold raises :class:`UnknownAsset`; ``max_hops`` must be 1 to ``limits.graph_path_max_hops`` and
    ``limit`` 1 to :data:`MAX_PATHS` (ValueError: callers check what people ask). Every read is one
    snapshot of the store (a read transaction), so the hops' edges are those the paths were found on,
    however the sensor writes meanwhile.
    """
    source, target = normalise_ip(source, "source"), normalise_ip(target, "target")
    if not 1 <= limit <= MAX_PATHS:
        raise ValueError(f"limit is 1 to {MAX_PATHS}, not {limit}")
    conn = store.conn
    snapshot = not conn.in_transaction
    if snapshot:
        conn.execute("BEGIN")
    try:
        graph = store.topology()  # the search needs the shape; each hop's edges are read below
        for end, ip in (("source", source), ("target", target)):
            if ip not in graph:
                raise UnknownAsset(end, ip)
        search = graph.paths(source, target, max_hops, directed, limit, limits)
        edges_of: dict[str, list[dict[str, Any]]] = {}

        def between(a: str, b: str) -> list[dict[str, Any]]:
            # the end with fewer neighbours is read (a scanner on the path has thousands of edges)
            end = a if graph.degree(a) <= graph.degree(b) else b
            edges = edges_of.get(end)
            if edges is None:
                rows = store.list_edges_with_policy(ip=end)
                edges = edges_of[end] = resolve_policy_status(rows, policy_configured)
            wanted = {(a, b)} if directed else {(a, b), (b, a)}
            return [e for e in edges if (e["client"], e["server"]) in wanted]

        zones: dict[str, str | None] = {}

        def zone(ip: str) -> str | None:
            if zone_of is None:
                return None
            if ip not in zones:
                zones[ip] = zone_of(ip)
            return zones[ip]

        zoned = zone_of is not None
        paths = [[_hop(a, b, between(a, b), zoned, zone) for a, b in pairwise(p)] for p in search.paths]
    finally:
        if snapshot:
            conn.execute("COMMIT")
    return {
        "source": source,
        "target": target,
        "directed": directed,
        "max_hops": max_hops,
        "limit": limit,
        "truncated": search.truncated,
        "steps": search.steps,
        "policy_loaded": zone_of is not None,
        "paths": paths,
    }


def _hop(
    a: str, b: str, edges: list[dict[str, Any]], zoned: bool, zone: Callable[[str], str | None]
) -> dict[str, Any]:
    forward = any(e["client"] == a for e in edges)
    backward = any(e["client"] == b for e in edges)
    direction = "both" if forward and backward else "reverse" if backward else "forward"
    statuses = {e["policy"]["status"] for e in edges}
    status = next((s for s in POLICY_STATUSES if s in statuses), "unknown")
    client_zone, server_zone = zone(a), zone(b)
    return {
        "client": a,
        "server": b,
        "direction": direction,
        "client_zone": client_zone,
        "server_zone": server_zone,
        "crosses_zones": client_zone != server_zone if zoned else None,
        "policy_status": status,
        "edges": edges,
    }
