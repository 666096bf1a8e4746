"""Assets, communications, the graph and certificates seen on the wire — read from the sensor store
(``sensor.store.sqlite.Store`` reader API; graph exports from ``sensor.assets.export``)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Path, Query, Request, Response

from api.auth import Permission, Principal
from api.deps import AppSettings, SensorStore, get_principal, set_audit
from api.errors import ApiError, not_found
from api.routes.common import guarded, resource_router
from api.schemas.common import Page
from api.schemas.inventory import (
    AssetDetail,
    AssetLabelsPatch,
    AssetQuery,
    AssetSummary,
    Edge,
    EdgeQuery,
    GraphQuery,
    PathQuery,
    PathsAnswer,
)
from api.schemas.observed import ObservedCertificate, ObservedQuery
from api.settings import Settings

router = resource_router("inventory")

# The inventory is capped (Limits.max_assets), so a filtered list is computed over every row.
ALL_ROWS = 10**9
SEARCHED_FIELDS = ("ip", "mac", "name", "inferred_name", "vendor")  # and the tags

AssetIp = Annotated[str, Path(max_length=45, description="the asset's IP address", examples=["10.10.1.20"])]


def _zone_of(request: Request, settings: Settings) -> Any:
    return request.app.state.zone_lookup.zone_of(settings)


def _page(rows: list[Any], limit: int, offset: int) -> Page[Any]:
    return Page(items=rows[offset : offset + limit], total=len(rows), limit=limit, offset=offset)


@router.get(
    "/assets",
    summary="assets: list, search, filter",
    response_model=Page[AssetSummary],
    **guarded(Permission.READ),
)
def list_assets(
    request: Request, store: SensorStore, settings: AppSettings, params: Annotated[AssetQuery, Query()]
) -> Page[Any]:
    rows = store.list_assets(role=params.role, protocol=params.protocol, tag=params.tag, limit=ALL_ROWS)
    zone_of = _zone_of(request, settings)
    if params.zone is not None and zone_of is None:
        raise ApiError(422, "no_policy", "filtering by zone needs a policy (serve --policy FILE)")
    if params.vendor:
        needle = params.vendor.lower()
        rows = [r for r in rows if needle in (r["vendor"] or "").lower()]
    if params.q:
        needle = params.q.lower()
        rows = [
            r
            for r in rows
            if any(needle in str(r[k] or "").lower() for k in SEARCHED_FIELDS)
            or any(needle in t.lower() for t in r["tags"])
        ]
    for r in rows:
        r["zone"] = zone_of(r["ip"]) if zone_of else None
    if params.zone is not None:
        rows = [r for r in rows if r["zone"] == params.zone]
    return _page(rows, params.limit, params.offset)


@router.get(
    "/assets/{ip}",
    summary="one asset with everything known about it",
    response_model=AssetDetail,
    **guarded(Permission.READ, 404),
)
def get_asset(request: Request, store: SensorStore, settings: AppSettings, ip: AssetIp) -> dict[str, Any]:
    try:
        address = str(ipaddress.ip_address(ip))
    except ValueError:
        raise not_found("asset") from None
    asset = store.get_asset(address)
    if asset is None:
        raise not_found("asset")
    zone_of = _zone_of(request, settings)
    asset["zone"] = zone_of(address) if zone_of else None
    asset["edges"] = _with_policy_status(store.list_edges_with_policy(ip=address), settings)
    return dict(asset)


@router.patch(
    "/assets/{ip}",
    summary="name and tag an asset (what people call it; policy zones {tag: T} hold it)",
    response_model=AssetDetail,
    **guarded(Permission.ASSETS_WRITE, 404),
)
def patch_asset_labels(
    request: Request, settings: AppSettings, ip: AssetIp, body: AssetLabelsPatch
) -> dict[str, Any]:
    """Set the name people use for an asset and its tags (``sensor/assets/labels.py``). The running
    sensor picks them up at its next store commit; policy zones by tag or name follow."""
    from sensor.assets.labels import LabelError
    from sensor.store.sqlite import Store

    principal: Principal = get_principal(request)
    try:
        address = str(ipaddress.ip_address(ip))
    except ValueError:
        raise not_found("asset") from None
    asked = body.model_dump(exclude_none=True)
    set_audit(request, "assets.labels", f"asset:{address}", json.dumps(asked, ensure_ascii=False))
    store = Store(settings.db_path)
    try:
        if store.get_asset(address) is None:
            raise not_found("asset")
        try:
            labels = store.update_labels(address, by=principal.actor, name=body.name, tags=body.tags)
        except LabelError as error:
            raise ApiError(422, "invalid_labels", str(error)) from None
        now = json.dumps({"name": labels.name, "tags": list(labels.tags)}, ensure_ascii=False)
        set_audit(request, "assets.labels", f"asset:{address}", f"now {now}")
        asset = store.get_asset(address)
    finally:
        store.close()
    if asset is None:
        raise not_found("asset")
    zone_of = _zone_of(request, settings)
    asset["zone"] = zone_of(address) if zone_of else None
    return dict(asset)


@router.get(
    "/communications",
    summary="communications (edges) with their operations",
    response_model=Page[Edge],
    **guarded(Permission.READ),
)
def list_communications(
    store: SensorStore, settings: AppSettings, params: Annotated[EdgeQuery, Query()]
) -> Page[Any]:
    rows = store.list_edges_with_policy(ip=params.ip, protocol=params.protocol)
    return _page(_with_policy_status(rows, settings), params.limit, params.offset)


def _with_policy_status(edges: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """An edge no policy alert was raised on is ``allowed`` when this server judges traffic against a
    policy (the sensor checked every operation on it), else ``unknown``."""
    from sensor.assets.reach import resolve_policy_status

    return resolve_policy_status(edges, settings.policy_path is not None)


GRAPH_RETRY_SECONDS = 2


@contextlib.contextmanager
def _whole_graph_read(request: Request) -> Iterator[None]:
    """At most ``Settings.concurrent_graph_reads`` requests read the whole graph at once: on a graph a
    scanner inflated each takes seconds of CPU, in the process that also runs the sensor, and more
    would starve it. The others get 503 with Retry-After rather than queue up."""
    reads: threading.BoundedSemaphore = request.app.state.graph_reads
    if not reads.acquire(blocking=False):
        raise ApiError(
            503,
            "graph_busy",
            "other requests are reading the whole communication graph; retry shortly",
            headers={"Retry-After": str(GRAPH_RETRY_SECONDS)},
        )
    try:
        yield
    finally:
        reads.release()


def _graph(request: Request, store: Any, settings: Settings, params: GraphQuery, fmt: str) -> bytes:
    with _whole_graph_read(request):
        return _export(request, store, settings, params, fmt)


def _export(request: Request, store: Any, settings: Settings, params: GraphQuery, fmt: str) -> bytes:
    from sensor.assets.export import export_graph
    from sensor.assets.graph import CommunicationGraph

    edges = store.load_edges()
    nodes = {r["ip"]: r for r in store.list_assets(limit=ALL_ROWS)}
    if params.zone is not None:
        zone_of = _zone_of(request, settings)
        if zone_of is None:
            raise ApiError(422, "no_policy", "filtering by zone needs a policy (serve --policy FILE)")
        in_zone = {ip for ip in nodes if zone_of(ip) == params.zone}
        edges = [e for e in edges if e.client in in_zone or e.server in in_zone]
        nodes = {ip: n for ip, n in nodes.items() if ip in in_zone}
    if params.protocol:
        edges = [e for e in edges if e.protocol == params.protocol]
    if params.ip:
        edges = [e for e in edges if params.ip in (e.client, e.server)]
        nodes = {ip: n for ip, n in nodes.items() if ip == params.ip}
    if params.protocol or params.ip:
        touched = {e.client for e in edges} | {e.server for e in edges}
        nodes = {ip: n for ip, n in nodes.items() if ip in touched or ip == params.ip}
    graph = CommunicationGraph(max_edges=0)
    graph.load(edges)
    return export_graph(graph, nodes, fmt)


@router.get(
    "/graph",
    summary="the communication graph, node-link JSON (networkx)",
    **guarded(Permission.READ, 422, 503),
)
def graph_json(
    request: Request, store: SensorStore, settings: AppSettings, params: Annotated[GraphQuery, Query()]
) -> Response:
    return Response(_graph(request, store, settings, params, "json"), media_type="application/json")


@router.get(
    "/graph/paths",
    summary="who can reach an asset: chains of observed connections, hop by hop, with policy marks",
    response_model=PathsAnswer,
    **guarded(Permission.READ, 404, 503),
)
def graph_paths(
    request: Request, store: SensorStore, settings: AppSettings, params: Annotated[PathQuery, Query()]
) -> dict[str, Any]:
    """The simple paths from ``source`` to ``target`` over the observed communication graph, shortest
    first: each hop with the edges between its two ends (operations and policy marks as
    ``/communications`` gives them) and, with a policy, the zone of each end. The search is bounded
    (``Limits.graph_path_steps``): ``truncated`` says when the budget or ``limit`` cut the answer."""
    from sensor.assets.reach import UnknownAsset, paths_document

    try:
        with _whole_graph_read(request):
            return paths_document(
                store,
                str(params.source),
                str(params.target),
                max_hops=params.max_hops,
                directed=params.directed,
                limit=params.limit,
                zone_of=_zone_of(request, settings),
                policy_configured=settings.policy_path is not None,
            )
    except UnknownAsset as error:
        raise ApiError(404, "not_found", f"no such asset: {error.end} {error.ip}") from None


@router.get(
    "/graph.graphml",
    summary="the communication graph as GraphML (download)",
    response_class=Response,
    **guarded(
        Permission.READ,
        422,
        503,
        responses={
            200: {
                "content": {"application/graphml+xml": {"schema": {"type": "string"}}},
                "description": "GraphML",
            }
        },
    ),
)
def graph_graphml(
    request: Request, store: SensorStore, settings: AppSettings, params: Annotated[GraphQuery, Query()]
) -> Response:
    return Response(
        _graph(request, store, settings, params, "graphml"),
        media_type="application/graphml+xml",
        headers={"Content-Disposition": 'attachment; filename="zonewarden-graph.graphml"'},
    )


@router.get(
    "/certificates/observed",
    summary="certificates devices presented on the wire",
    response_model=Page[ObservedCertificate],
    **guarded(Permission.READ),
)
def observed_certificates(
    store: SensorStore, settings: AppSettings, params: Annotated[ObservedQuery, Query()]
) -> Page[Any]:
    from api.pki.observed import group_by_certificate, observed_certificates

    rows = group_by_certificate(observed_certificates(store.load_assets(), _issued(settings)))
    if params.q:
        needle = params.q.lower()
        rows = [r for r in rows if needle in r["subject"].lower() or needle in r["issuer"].lower()]
    if params.ip:
        rows = [r for r in rows if params.ip in r["assets"]]
    if params.status:
        rows = [r for r in rows if any(p["status"] == params.status for p in r["presenters"])]
    return _page(rows, params.limit, params.offset)


def _issued(settings: Settings) -> dict[str, dict[str, Any]]:
    """This PKI's certificates by SHA-256 (``api.pki.observed.issued_index``); none without a PKI."""
    if settings.pki_dir is None:
        return {}
    from api.pki.ca import DATABASE, iso, utc_now
    from api.pki.observed import issued_index
    from api.pki.store import PkiStore

    if not (settings.pki_dir / DATABASE).is_file():
        return {}
    store = PkiStore(settings.pki_dir / DATABASE)
    try:
        now = iso(utc_now())
        return issued_index(row.as_dict(now) for row in store.all())
    finally:
        store.close()
