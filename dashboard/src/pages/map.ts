// The network map: zones drawn as groups, assets as nodes with role icons, communications as edges
// coloured by protocol and drawn by policy status (violations red and dashed), with filters by zone,
// protocol and time, and a detail panel for the node or edge clicked.

import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import { get, getAll, type Page } from "../api";
import { protocolBadge, select } from "../components";
import { type Child, badge, empty, facts, h, link, replace } from "../dom";
import { num, relative, severityName, str, toDate, when } from "../format";
import { mainRole, roleIconUrl, roleLabel } from "../icons";
import { onAlert } from "../live";
import { type Route, setQuery } from "../router";
import { assetLink, operationsSummary, roleNames } from "./assets";

cytoscape.use(fcose);

export const PROTOCOL_COLOURS: Record<string, string> = {
  modbus: "#1f6feb",
  opcua: "#8250df",
  mqtt: "#0a8a6a",
  tls: "#9a6700",
};
const OTHER_COLOUR = "#6e7781";

type Json = Record<string, unknown>;

export interface MapNode {
  id: string;
  label: string;
  zone: string;
  roles: string[];
  protocols: string[];
  lastSeen: number | null;
  raw: Json;
}

export interface MapEdge {
  id: string;
  source: string;
  target: string;
  protocol: string;
  port: string;
  /** "allowed", "violation" or "" (no policy loaded, or the API does not say). */
  policy: string;
  /** The policy alerts on it, by conduit and rule (GET /communications: ``policy.alerts``). */
  policyAlerts: Json[];
  lastSeen: number | null;
  firstSeen: number | null;
  raw: Json;
}

export interface MapZone {
  id: string;
  label: string;
  level: string;
}

function seconds(value: unknown): number | null {
  const d = toDate(value);
  return d ? d.getTime() / 1000 : null;
}

function list(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (value && typeof value === "object") return Object.keys(value);
  if (typeof value === "string" && value) return value.split(/[ ,]+/);
  return [];
}

/** Reads the graph document (node-link JSON) without assuming more than it must. */
export function normaliseGraph(doc: Json): { nodes: MapNode[]; edges: MapEdge[]; zones: MapZone[] } {
  const rawNodes = (Array.isArray(doc.nodes) ? doc.nodes : []) as Json[];
  const rawEdges = (Array.isArray(doc.edges) ? doc.edges : Array.isArray(doc.links) ? doc.links : []) as Json[];
  const nodes: MapNode[] = rawNodes.map((n) => ({
    id: str(n.id ?? n.ip),
    label: str(n.name || n.label || n.id || n.ip),
    zone: str(n.zone ?? ""),
    roles: list(n.roles),
    protocols: list(n.protocols),
    lastSeen: seconds(n.last_seen),
    raw: n,
  }));
  const edges: MapEdge[] = rawEdges.map((e, i) => {
    const source = str(e.source ?? e.client);
    const target = str(e.target ?? e.server);
    const protocol = str(e.protocol ?? e.app_proto ?? "");
    // The API says per communication whether a policy alert exists for it (``policy.status``).
    const policyDoc = e.policy && typeof e.policy === "object" ? (e.policy as Json) : null;
    const status = str(policyDoc ? policyDoc.status : (e.policy_status ?? e.policy ?? e.compliance ?? ""));
    const violations = Number(e.violations ?? 0);
    return {
      id: str(e.id ?? e.key ?? `${source}|${target}|${protocol}|${str(e.port)}|${i}`),
      source,
      target,
      protocol,
      port: str(e.port ?? ""),
      policy:
        violations > 0 || ["denied", "violation", "deny", "violating"].includes(status)
          ? "violation"
          : ["allowed", "allow", "ok", "compliant", "closed"].includes(status)
            ? "allowed"
            : "",
      policyAlerts: policyDoc && Array.isArray(policyDoc.alerts) ? (policyDoc.alerts as Json[]) : [],
      lastSeen: seconds(e.last_seen),
      firstSeen: seconds(e.first_seen),
      raw: e,
    };
  });
  const rawZones = (Array.isArray(doc.zones) ? doc.zones : []) as Json[];
  const zones: MapZone[] = rawZones.map((z) => ({
    id: str(z.id),
    label: str(z.name || z.id),
    level: z.security_level && typeof z.security_level === "object"
      ? str((z.security_level as Json).target)
      : str(z.sl_target ?? z.security_level ?? ""),
  }));
  return { nodes, edges, zones };
}

/**
 * Zones left to right so that zones which talk a lot sit side by side: the order with the smallest
 * sum of (edges between two zones x their distance), tried exhaustively up to 7 zones.
 */
export function zoneOrder(zones: string[], edges: MapEdge[], nodes: Map<string, MapNode>): string[] {
  if (zones.length < 3 || zones.length > 7) return zones;
  const weight = new Map<string, number>();
  for (const e of edges) {
    const a = nodes.get(e.source)?.zone;
    const b = nodes.get(e.target)?.zone;
    if (!a || !b || a === b) continue;
    const key = a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
    weight.set(key, (weight.get(key) ?? 0) + 1);
  }
  let best = zones;
  let bestCost = Infinity;
  const permute = (prefix: string[], rest: string[]): void => {
    if (!rest.length) {
      const pos = new Map(prefix.map((z, i) => [z, i]));
      let cost = 0;
      for (const [key, w] of weight) {
        const [a, b] = key.split("\u0000");
        cost += w * Math.abs((pos.get(a) ?? 0) - (pos.get(b) ?? 0));
      }
      if (cost < bestCost) {
        bestCost = cost;
        best = prefix;
      }
      return;
    }
    rest.forEach((z, i) => permute([...prefix, z], [...rest.slice(0, i), ...rest.slice(i + 1)]));
  };
  permute([], zones);
  return best;
}

/** Sort key of an address: IPv4 octets zero-padded, anything else after. */
function ipKey(ip: string): string {
  const parts = ip.split(".");
  return parts.length === 4 ? parts.map((p) => p.padStart(3, "0")).join(".") : `~${ip}`;
}

export async function renderMap(root: HTMLElement, route: Route, signal: AbortSignal): Promise<void> {
  const filters = {
    zone: route.query.get("zone") ?? "",
    protocol: route.query.get("protocol") ?? "",
    window: route.query.get("window") ?? "",
    focus: route.query.get("focus") ?? "",
  };
  // The map is drawn from the inventory (assets, with their zone when a policy is loaded) and the
  // communications (edges with their operations and their policy status); the alerts of what is
  // clicked are asked for then.
  const [assetPage, edgePage, policyDoc] = await Promise.all([
    getAll<Json>("/assets"),
    getAll<Json>("/communications"),
    get<Json>("/policy").catch(() => null),
  ]);
  const graph = normaliseGraph({ nodes: assetPage.items, edges: edgePage.items });
  if (policyDoc) {
    const doc = (policyDoc.policy ?? policyDoc) as Json;
    graph.zones = normaliseGraph({ zones: doc.zones }).zones;
  }

  const newest = Math.max(0, ...graph.edges.map((e) => e.lastSeen ?? 0), ...graph.nodes.map((n) => n.lastSeen ?? 0));
  const protocols = [...new Set(graph.edges.map((e) => e.protocol).filter(Boolean))].sort();
  const zoneIds = new Set(graph.zones.map((z) => z.id));
  for (const n of graph.nodes) if (n.zone && !zoneIds.has(n.zone)) {
    graph.zones.push({ id: n.zone, label: n.zone, level: "" });
    zoneIds.add(n.zone);
  }
  // With a policy loaded, the sensor checked every operation: an edge no policy alert was raised on
  // is one where nothing violated the policy.
  const policyLoaded = graph.zones.length > 0;
  for (const e of graph.edges) if (!e.policy && policyLoaded) e.policy = "allowed";

  const container = h("div", { id: "cy", role: "img", "aria-label": "network map" });
  const detail = h("div", { class: "detail-panel", id: "map-detail" }, empty("Click an asset or a communication for its detail."));
  const counts = h("span", { class: "muted small", id: "map-counts" });
  const legend = h(
    "div",
    { class: "legend" },
    Object.entries(PROTOCOL_COLOURS).map(([p, c]) => h("span", null, h("span", { class: "swatch", style: `background:${c}` }), p)),
    h("span", null, h("span", { class: "swatch", style: `background:${OTHER_COLOUR}` }), "other"),
    h("span", null, h("span", { class: "swatch dashed", style: "background:#c62828" }), "policy violation"),
    h("span", null, "▢ zone"),
  );

  const windows: [string, string][] = [
    ["", "all time"],
    ["300", "last 5 min of traffic"],
    ["3600", "last hour of traffic"],
    ["86400", "last day of traffic"],
  ];
  const onFilter = () => {
    setQuery(filters);
    draw();
  };
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Network map"), counts),
    h(
      "div",
      { class: "toolbar card" },
      h("label", null, "Zone "),
      select("zone", [["", "all zones"], ...graph.zones.map((z) => [z.id, z.label] as [string, string])], filters.zone, (v) => {
        filters.zone = v;
        onFilter();
      }),
      h("label", null, "Protocol "),
      select("protocol", [["", "all protocols"], ...protocols.map((p) => [p, p] as [string, string])], filters.protocol, (v) => {
        filters.protocol = v;
        onFilter();
      }),
      h("label", null, "Time "),
      select("window", windows, filters.window, (v) => {
        filters.window = v;
        onFilter();
      }),
      h("span", { class: "muted small" }, newest ? `newest traffic ${when(newest)}` : ""),
    ),
    h("div", { class: "map-layout" }, h("div", null, container, legend), h("div", { class: "card" }, detail)),
  );

  const cy = cytoscape({
    container,
    // No layout until the container is in the page and has a size (draw() runs one).
    layout: { name: "preset" },
    minZoom: 0.2,
    maxZoom: 3,
    style: [
      {
        selector: "node.asset",
        style: {
          shape: "round-rectangle",
          width: 46,
          height: 46,
          "background-color": "#ffffff",
          "background-image": "data(icon)",
          "background-fit": "contain",
          "background-clip": "none",
          "background-width": "70%",
          "background-height": "70%",
          "border-width": 2,
          "border-color": "#8a97a5",
          label: "data(label)",
          "font-size": 11,
          "text-valign": "bottom",
          "text-margin-y": 4,
          "text-wrap": "wrap",
          "text-max-width": "140px",
          color: "#1d2733",
          "text-background-color": "#ffffff",
          "text-background-opacity": 0.8,
          "text-background-padding": "2px",
        },
      },
      {
        selector: "node.asset.violating",
        style: {
          "border-color": "#c62828",
          "border-width": 3,
          "underlay-color": "#c62828",
          "underlay-opacity": 0.18,
          "underlay-padding": 6,
        },
      },
      {
        selector: "node.zone",
        style: {
          shape: "round-rectangle",
          "background-color": "#eaf1f8",
          "background-opacity": 0.6,
          "border-color": "#7d9bbb",
          "border-width": 1.5,
          "border-style": "dashed",
          label: "data(label)",
          "font-size": 13,
          "font-weight": "bold",
          "text-valign": "top",
          "text-halign": "center",
          color: "#34506e",
          padding: "22px",
        },
      },
      {
        selector: "edge",
        style: {
          width: "mapData(weight, 0, 1, 1.5, 6)",
          "line-color": "data(colour)",
          "target-arrow-color": "data(colour)",
          "target-arrow-shape": "triangle",
          "curve-style": "bezier",
          "control-point-step-size": 30,
          label: "data(label)",
          "font-size": 9,
          color: "#445566",
          "text-rotation": "autorotate",
          "text-background-color": "#ffffff",
          "text-background-opacity": 0.85,
          "text-background-padding": "1px",
          "loop-direction": "-45deg",
          "loop-sweep": "-60deg",
        },
      },
      {
        selector: "edge.violation",
        style: {
          "line-style": "dashed",
          "line-dash-pattern": [7, 4],
          "underlay-color": "#c62828",
          "underlay-opacity": 0.3,
          "underlay-padding": 4,
          color: "#c62828",
          "font-weight": "bold",
        },
      },
      {
        selector: ":selected",
        style: { "overlay-color": "#1f6feb", "overlay-opacity": 0.15, "overlay-padding": 6 },
      },
    ],
  });

  let drawn = false;
  const draw = () => {
    const since = filters.window ? newest - Number(filters.window) : null;
    const edges = graph.edges.filter(
      (e) =>
        (!filters.protocol || e.protocol === filters.protocol) &&
        (since === null || (e.lastSeen ?? newest) >= since),
    );
    const nodeById = new Map(graph.nodes.map((n) => [n.id, n]));
    let visibleEdges = edges;
    if (filters.zone) {
      visibleEdges = edges.filter(
        (e) => nodeById.get(e.source)?.zone === filters.zone || nodeById.get(e.target)?.zone === filters.zone,
      );
    }
    const endpoints = new Set(visibleEdges.flatMap((e) => [e.source, e.target]));
    const nodes = graph.nodes.filter((n) => {
      if (filters.zone) return n.zone === filters.zone || endpoints.has(n.id);
      if (filters.protocol || since !== null) return endpoints.has(n.id);
      return true;
    });
    const shownIds = new Set(nodes.map((n) => n.id));
    const violating = new Set(visibleEdges.filter((e) => e.policy === "violation").flatMap((e) => [e.source, e.target]));
    const maxPackets = Math.max(1, ...visibleEdges.map((e) => Number(e.raw.packets ?? 0)));
    const usedZones = new Set(nodes.map((n) => n.zone).filter(Boolean));
    const elements: cytoscape.ElementDefinition[] = [
      ...graph.zones
        .filter((z) => usedZones.has(z.id) || !filters.zone || z.id === filters.zone)
        .map((z) => ({
          group: "nodes" as const,
          data: { id: `zone:${z.id}`, label: z.level ? `${z.label} · SL-T ${z.level}` : z.label, zone: z.id },
          classes: "zone",
        })),
      ...nodes.map((n) => ({
        group: "nodes" as const,
        data: {
          id: n.id,
          label: n.label === n.id ? n.id : `${n.label}\n${n.id}`,
          icon: roleIconUrl(mainRole(n.roles)),
          parent: n.zone ? `zone:${n.zone}` : undefined,
        },
        classes: `asset${violating.has(n.id) ? " violating" : ""}`,
      })),
      ...visibleEdges
        .filter((e) => shownIds.has(e.source) && shownIds.has(e.target))
        .map((e) => ({
          group: "edges" as const,
          data: {
            id: `edge:${e.id}`,
            source: e.source,
            target: e.target,
            colour: PROTOCOL_COLOURS[e.protocol] ?? OTHER_COLOUR,
            label: `${e.protocol}${e.port ? `:${e.port}` : ""}${e.policy === "violation" ? " ⚠" : ""}`,
            weight: Math.log1p(Number(e.raw.packets ?? 0)) / Math.log1p(maxPackets),
          },
          classes: e.policy === "violation" ? "violation" : e.policy,
        })),
    ];
    cy.elements().remove();
    cy.add(elements);
    // A deterministic start (zones side by side, their assets on a grid sorted by address) that fcose
    // then refines without randomising: the same data always gives the same picture.
    const columns = zoneOrder([...usedZones].sort(), visibleEdges, nodeById);
    const byColumn = new Map<string, MapNode[]>();
    for (const n of nodes) {
      const key = n.zone || "~";
      byColumn.set(key, [...(byColumn.get(key) ?? []), n]);
    }
    const order = [...columns, ...(byColumn.has("~") ? ["~"] : [])];
    order.forEach((zone, col) => {
      const members = (byColumn.get(zone) ?? []).sort((a, b) => ipKey(a.id).localeCompare(ipKey(b.id)));
      const perRow = Math.max(1, Math.ceil(Math.sqrt(members.length)));
      members.forEach((n, i) => {
        cy.getElementById(n.id).position({ x: col * 320 + (i % perRow) * 130, y: Math.floor(i / perRow) * 130 });
      });
    });
    cy.layout({
      name: "fcose",
      animate: false,
      randomize: false,
      quality: "proof",
      nodeRepulsion: () => 6000,
      idealEdgeLength: () => 100,
      nestingFactor: 0.5,
      gravity: 0.2,
      tile: true,
      padding: 30,
    } as cytoscape.LayoutOptions).run();
    cy.fit(undefined, 30);
    const shownEdges = cy.edges().length;
    const violations = cy.edges(".violation").length;
    counts.textContent = `${nodes.length} assets · ${shownEdges} communications · ${violations} with violations · ${usedZones.size} zones`;
    container.setAttribute("data-assets", String(nodes.length));
    container.setAttribute("data-edges", String(shownEdges));
    container.setAttribute("data-violations", String(violations));
    container.setAttribute("data-zones", [...usedZones].sort().join(","));
    container.setAttribute("data-ready", "true");
    if (filters.focus && shownIds.has(filters.focus)) {
      cy.getElementById(filters.focus).select();
      showNode(filters.focus);
    }
    drawn = true;
  };

  const nodeById = new Map(graph.nodes.map((n) => [n.id, n]));
  const edgeById = new Map(graph.edges.map((e) => [`edge:${e.id}`, e]));

  // The alerts of what was clicked, asked of the API (filtered there), newest first.
  const alertsInto = (target: HTMLElement, query: Record<string, string>) => {
    replace(target, h("p", { class: "muted small" }, "Loading alerts…"));
    get<Page<Json>>("/alerts", { ...query, limit: 20 })
      .then((page) => {
        replace(target, alertList(page.items));
        target.setAttribute("data-loaded", "true");
      })
      .catch((error: unknown) => replace(target, empty(`Alerts unavailable: ${String(error)}`)));
    return target;
  };
  const alertList = (alerts: Json[]): Child =>
    alerts.length
      ? h(
          "ul",
          { class: "plain" },
          alerts.slice(0, 20).map((a) =>
            h(
              "li",
              null,
              badge(severityName(a.severity), severityName(a.severity)),
              link(`/alerts/${encodeURIComponent(str(a.alert_id))}`, str(a.signature)),
              h("span", { class: "muted small" }, ` ${str(a.status)}`),
            ),
          ),
        )
      : empty("No alert.");

  const showNode = (id: string) => {
    const n = nodeById.get(id);
    if (!n) return;
    const touching = graph.edges.filter((e) => e.source === id || e.target === id);
    replace(
      detail,
      h("h2", null, assetLink(n.id, n.label === n.id ? n.id : `${n.label} (${n.id})`)),
      facts([
        ["Zone", n.zone ? badge(n.zone) : "outside every zone"],
        ["Roles", roleNames(n.roles).map((r) => badge(roleLabel(r)))],
        ["Protocols", n.protocols.map(protocolBadge)],
        ["Vendor", str(n.raw.vendor)],
        ["Last seen", n.lastSeen ? `${when(n.lastSeen)} (${relative(n.lastSeen)})` : ""],
        ["Communications", String(touching.length)],
      ]),
      h("h3", null, "Alerts"),
      alertsInto(h("div", { class: "map-alerts" }), { ip: n.id }),
      h("p", null, assetLink(n.id, "Open the asset page →")),
    );
    detail.setAttribute("data-selected", `node:${id}`);
  };

  const showEdge = (id: string) => {
    const e = edgeById.get(id);
    if (!e) return;
    replace(
      detail,
      h("h2", null, protocolBadge(e.protocol), ` ${e.source} → ${e.target}${e.port ? `:${e.port}` : ""}`),
      facts([
        ["Client", assetLink(e.source)],
        ["Server", assetLink(e.target)],
        [
          "Policy",
          e.policy === "violation"
            ? badge("violation", "violation")
            : e.policy
              ? badge("no violation seen", "allowed")
              : "no policy loaded",
        ],
        ["Conduit", str(e.raw.conduit ?? e.policyAlerts.find((a) => a.conduit)?.conduit ?? "")],
        [
          "Policy alerts",
          e.policyAlerts.length
            ? h(
                "ul",
                { class: "plain" },
                e.policyAlerts.map((a) =>
                  h("li", null, h("span", { class: "mono" }, str(a.rule)), ` ×${num(a.count)} (${num(a.open)} open)`),
                ),
              )
            : "none",
        ],
        ["Transport", str(e.raw.transport)],
        ["Packets", num(e.raw.packets)],
        ["Bytes", num(e.raw.bytes)],
        ["Flows", num(e.raw.flows)],
        ["First seen", when(e.firstSeen)],
        ["Last seen", when(e.lastSeen)],
      ]),
      h("h3", null, "Operations"),
      operationsSummary(e.raw.operations) || empty("none recorded"),
      h("h3", null, "Alerts"),
      alertsInto(h("div", { class: "map-alerts" }), { src_ip: e.source, dest_ip: e.target }),
    );
    detail.setAttribute("data-selected", id);
  };

  cy.on("tap", "node.asset", (evt) => showNode(evt.target.id()));
  cy.on("tap", "edge", (evt) => showEdge(evt.target.id()));
  cy.on("tap", "node.zone", (evt) => {
    const zoneId = String(evt.target.data("zone"));
    const z = graph.zones.find((x) => x.id === zoneId);
    const members = graph.nodes.filter((n) => n.zone === zoneId);
    replace(
      detail,
      h("h2", null, `Zone ${z?.label ?? zoneId}`),
      facts([
        ["Security level (target)", z?.level ?? ""],
        ["Assets", String(members.length)],
      ]),
      h("ul", { class: "plain" }, members.map((m) => h("li", null, assetLink(m.id, m.label)))),
    );
    detail.setAttribute("data-selected", `zone:${zoneId}`);
  });

  // The container must be in the document before cytoscape can measure it.
  requestAnimationFrame(() => {
    cy.resize();
    draw();
  });
  // Tests and people can drive the map: window.__zwMap exposes selection by id.
  (window as unknown as { __zwMap?: unknown }).__zwMap = {
    selectNode: (id: string) => showNode(id),
    selectEdge: (id: string) => {
      cy.elements().unselect();
      cy.getElementById(`edge:${id}`).select();
      showEdge(`edge:${id}`);
    },
    edges: () => graph.edges.map((e) => ({ id: e.id, source: e.source, target: e.target, protocol: e.protocol, policy: e.policy })),
    tapNode: (id: string) => cy.getElementById(id).emit("tap"),
    renderedPosition: (id: string) => cy.getElementById(id).renderedPosition(),
  };
  onAlert(() => {
    if (drawn) counts.textContent += " · new alerts: reload to redraw";
  }, signal);
  signal.addEventListener("abort", () => cy.destroy());
}
