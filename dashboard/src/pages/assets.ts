// Assets: the inventory table with search and filters, and one asset's page (identity, roles, Modbus
// register map, OPC UA nodes, MQTT topics, certificates, communications, who can reach it, alerts).

import { ApiError, apiHas, get, patch } from "../api";
import { type Column, PagedTable, protocolBadge, searchBox, select, table } from "../components";
import { type Child, badge, empty, errorBox, facts, h, link, replace, section } from "../dom";
import { num, relative, severityName, str, when } from "../format";
import { ROLE_ICONS, roleLabel } from "../icons";
import { type Route, setQuery } from "../router";
import { reachSection } from "./reach";

export type AssetRow = Record<string, unknown> & {
  ip: string;
  name?: string;
  vendor?: string;
  mac?: string;
  zone?: string | null;
  protocols?: string[];
  roles?: string[] | Record<string, string>;
  first_seen?: number | string;
  last_seen?: number | string;
  tags?: string[];
  given_name?: string;
  inferred_name?: string;
};

/** Tags people gave an asset, each a link to the assets carrying it. */
function tagBadges(tags: unknown): Child {
  if (!Array.isArray(tags)) return null;
  return tags.map((t) =>
    h("a", { class: "badge tag", href: `#/assets?tag=${encodeURIComponent(String(t))}`, "data-tag": String(t) }, String(t)),
  );
}

export function roleNames(roles: unknown): string[] {
  if (Array.isArray(roles)) return roles.map(String);
  if (roles && typeof roles === "object") return Object.keys(roles);
  return [];
}

function roleBadges(roles: unknown): Child {
  return roleNames(roles).map((r) =>
    h("span", { class: "badge", title: r }, `${ROLE_ICONS[r]?.glyph ?? "•"} ${roleLabel(r)}`),
  );
}

export function assetLink(ip: string, label?: string): HTMLAnchorElement {
  return link(`/assets/${encodeURIComponent(ip)}`, label || ip);
}

export async function renderAssets(root: HTMLElement, route: Route): Promise<void> {
  const filters = {
    q: route.query.get("q") ?? "",
    zone: route.query.get("zone") ?? "",
    protocol: route.query.get("protocol") ?? "",
    role: route.query.get("role") ?? "",
    tag: route.query.get("tag") ?? "",
  };
  const columns: Column<AssetRow>[] = [
    { label: "Address", cell: (a) => assetLink(a.ip) },
    { label: "Name", cell: (a) => str(a.name) },
    { label: "Tags", cell: (a) => tagBadges(a.tags) },
    { label: "Zone", cell: (a) => (a.zone ? badge(str(a.zone)) : h("span", { class: "muted" }, "—")) },
    { label: "Vendor", cell: (a) => str(a.vendor) },
    { label: "Roles", cell: (a) => roleBadges(a.roles) },
    { label: "Protocols", cell: (a) => (a.protocols ?? []).map(protocolBadge) },
    { label: "Last seen", cell: (a) => h("span", { title: when(a.last_seen) }, relative(a.last_seen)) },
  ];
  const query = () => ({
    q: filters.q || undefined,
    zone: filters.zone || undefined,
    protocol: filters.protocol || undefined,
    role: filters.role || undefined,
    tag: filters.tag || undefined,
  });
  const list = new PagedTable<AssetRow>("/assets", columns, query, 50, "No assets match.", (a) => ({
    "data-ip": a.ip,
  }));
  const changed = () => {
    setQuery(filters);
    void list.reload();
  };
  const zones = await zoneOptions();
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Assets")),
    h(
      "div",
      { class: "card" },
      h(
        "div",
        { class: "toolbar" },
        searchBox("q", filters.q, "Search address, name, vendor, tag…", (v) => {
          filters.q = v;
          changed();
        }),
        searchBox("tag", filters.tag, "Tag", (v) => {
          filters.tag = v;
          changed();
        }),
        select("zone", [["", "all zones"], ...zones.map((z) => [z, z] as [string, string])], filters.zone, (v) => {
          filters.zone = v;
          changed();
        }),
        select(
          "protocol",
          [["", "all protocols"], ["modbus", "Modbus/TCP"], ["opcua", "OPC UA"], ["mqtt", "MQTT"], ["tls", "TLS"]],
          filters.protocol,
          (v) => {
            filters.protocol = v;
            changed();
          },
        ),
        select(
          "role",
          [["", "all roles"], ...Object.keys(ROLE_ICONS).map((r) => [r, roleLabel(r)] as [string, string])],
          filters.role,
          (v) => {
            filters.role = v;
            changed();
          },
        ),
      ),
      list.element,
    ),
  );
  await list.reload();
}

/** Zone ids from the current policy (empty when there is none). */
export async function zoneOptions(): Promise<string[]> {
  try {
    const policy = await get<Record<string, unknown>>("/policy");
    const doc = (policy.policy ?? policy) as Record<string, unknown>;
    const zones = Array.isArray(doc.zones) ? doc.zones : [];
    return zones.map((z) => str((z as Record<string, unknown>).id)).filter(Boolean);
  } catch {
    return [];
  }
}

// --- names and tags people give an asset --------------------------------------------------------

// Mirrors sensor/assets/labels.py (the API checks again and has the last word).
const TAG_RE = /^[A-Za-z0-9][A-Za-z0-9_.:/-]*$/;
const MAX_TAG_CHARS = 64;
const MAX_TAGS = 32;
const MAX_NAME_CHARS = 128;

/** Whether the signed-in role may name and tag assets: /me when the API has it, else "try and see". */
async function mayEditLabels(): Promise<boolean> {
  try {
    if (!(await apiHas("/me"))) return true;
    const me = await get<{ permissions?: string[] }>("/me");
    return Array.isArray(me.permissions) ? me.permissions.includes("assets:write") : true;
  } catch {
    return true;
  }
}

export function parseTags(text: string): { tags: string[]; problem: string | null } {
  const tags = [...new Set(text.split(/[\s,]+/).filter(Boolean))];
  const bad = tags.find((t) => t.length > MAX_TAG_CHARS || !TAG_RE.test(t));
  if (bad !== undefined)
    return { tags, problem: `"${bad}": a tag is a word of letters, digits and _ . : / - (at most ${MAX_TAG_CHARS})` };
  if (tags.length > MAX_TAGS) return { tags, problem: `at most ${MAX_TAGS} tags` };
  return { tags, problem: null };
}

/** "Name and tags": what people call this asset (policy zones {tag: T} / {asset: NAME} hold it). */
async function labelsSection(ip: string, asset: Record<string, unknown>, onSaved: (a: Record<string, unknown>) => void): Promise<HTMLElement> {
  const shown = h("div", { id: "asset-labels" });
  const show = (a: Record<string, unknown>) =>
    replace(
      shown,
      facts([
        ["Given name", str(a.given_name) || h("span", { class: "muted" }, "—")],
        ["Tags", Array.isArray(a.tags) && a.tags.length ? tagBadges(a.tags) : h("span", { class: "muted" }, "none")],
        ["Calls itself", str(a.inferred_name)],
        ["Changed by", a.labels_updated_by ? `${str(a.labels_updated_by)}, ${when(a.labels_updated_at)}` : ""],
      ]),
    );
  show(asset);
  const box = section("Name and tags", shown);
  box.id = "labels";
  if (!(await mayEditLabels())) {
    box.append(h("p", { class: "muted small" }, "Your role may look at names and tags, not change them."));
    return box;
  }
  const nameInput = h("input", {
    type: "text",
    name: "given-name",
    value: str(asset.given_name),
    maxlength: MAX_NAME_CHARS,
    placeholder: "Name (e.g. Line 1 filler PLC)",
    "aria-label": "name",
  });
  const tagsInput = h("input", {
    type: "text",
    name: "tags",
    value: Array.isArray(asset.tags) ? asset.tags.join(" ") : "",
    placeholder: "Tags, separated by spaces (e.g. line1 safety)",
    "aria-label": "tags",
  });
  const message = h("div", { role: "status", id: "labels-message" });
  const save = h("button", { class: "primary", type: "submit", "data-action": "save-labels" }, "Save");
  const form = h(
    "form",
    { class: "labels-form toolbar" },
    nameInput,
    tagsInput,
    save,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { tags, problem } = parseTags(tagsInput.value);
    if (problem) {
      replace(message, errorBox(problem));
      return;
    }
    save.disabled = true;
    try {
      const updated = await patch<Record<string, unknown>>(`/assets/${encodeURIComponent(ip)}`, {
        name: nameInput.value.trim(),
        tags,
      });
      show(updated);
      onSaved(updated);
      replace(message, h("div", { class: "notice" }, "Saved (kept in the audit log)."));
    } catch (error) {
      const text =
        error instanceof ApiError && error.status === 403
          ? `Your role may not change names and tags (${error.message}).`
          : `Saving failed: ${String(error instanceof Error ? error.message : error)}`;
      replace(message, errorBox(text));
    } finally {
      save.disabled = false;
    }
  });
  box.append(form, message);
  return box;
}

// --- one asset ---------------------------------------------------------------------------------

interface RegisterUse {
  read?: number[][];
  written?: number[][];
  readers?: string[];
  writers?: string[];
  min_value?: number | null;
  max_value?: number | null;
}

function spans(list: number[][] | undefined): string {
  if (!list || !list.length) return "";
  return list.map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(", ");
}

/** A bar showing which parts of the 0..65535 address space were read (blue) and written (orange). */
function addressBar(use: RegisterUse): HTMLElement {
  const all = [...(use.read ?? []), ...(use.written ?? [])];
  const top = Math.max(16, ...all.map(([, b]) => b + 1));
  const scale = top <= 100 ? 100 : top <= 1000 ? 1000 : top <= 10000 ? 10000 : 65536;
  const bar = h("div", { class: "bar", title: `addresses 0–${scale - 1}` });
  const mark = (span: number[], kind: string) => {
    const left = (span[0] / scale) * 100;
    const width = Math.max(0.6, ((span[1] - span[0] + 1) / scale) * 100);
    bar.append(h("span", { class: kind, style: `left:${left}%;width:${width}%` }));
  };
  for (const s of use.read ?? []) mark(s, "read");
  for (const s of use.written ?? []) mark(s, "write");
  return h("div", null, bar, h("div", { class: "muted small" }, `0 … ${num(scale - 1)}`));
}

export function registerMap(map: Record<string, RegisterUse>): HTMLElement {
  const rows = Object.entries(map).map(([key, use]) => {
    const [unit, tableName] = key.includes("/") ? key.split("/", 2) : ["", key];
    return { unit, tableName, use };
  });
  rows.sort((a, b) => Number(a.unit) - Number(b.unit) || a.tableName.localeCompare(b.tableName));
  const el = table(
    [
      { label: "Unit", cell: (r) => r.unit, className: "num" },
      { label: "Table", cell: (r) => r.tableName.replace(/_/g, " ") },
      { label: "Read", cell: (r) => h("span", { class: "mono" }, spans(r.use.read)), className: "addr" },
      { label: "Written", cell: (r) => h("span", { class: "mono" }, spans(r.use.written)), className: "addr" },
      { label: "Address space", cell: (r) => addressBar(r.use) },
      {
        label: "Values",
        cell: (r) =>
          r.use.min_value === null || r.use.min_value === undefined
            ? ""
            : r.use.min_value === r.use.max_value
              ? num(r.use.min_value)
              : `${num(r.use.min_value)} … ${num(r.use.max_value)}`,
      },
      {
        label: "By",
        cell: (r) => [
          ...(r.use.readers ?? []).map((ip) => h("div", null, "read: ", assetLink(ip))),
          ...(r.use.writers ?? []).map((ip) => h("div", null, "write: ", assetLink(ip))),
        ],
      },
    ],
    rows,
    (r) => ({ "data-unit": r.unit, "data-table": r.tableName }),
  );
  el.classList.add("regmap");
  el.id = "register-map";
  return el;
}

function nodesTable(nodes: Record<string, Record<string, string[]>>): HTMLElement {
  const rows = Object.entries(nodes);
  return table(
    [
      { label: "Node", cell: ([node]) => h("span", { class: "mono" }, node) },
      {
        label: "Operations",
        cell: ([, ops]) =>
          Object.entries(ops).map(([op, clients]) =>
            h("div", null, badge(op), " by ", clients.map((c, i) => [i ? ", " : "", assetLink(c)])),
          ),
      },
    ],
    rows,
  );
}

function topicsTable(topics: Record<string, Record<string, string[]>>): HTMLElement {
  const rows = Object.entries(topics);
  const side = (sides: Record<string, string[]>, name: string): Child =>
    (sides[name] ?? []).map((c, i) => [i ? ", " : "", assetLink(c)]);
  return table(
    [
      { label: "Topic", cell: ([t]) => h("span", { class: "mono" }, t) },
      { label: "Publishers", cell: ([, s]) => side(s, "publishers") },
      { label: "Subscribers", cell: ([, s]) => side(s, "subscribers") },
      { label: "Receivers", cell: ([, s]) => side(s, "receivers") },
    ],
    rows,
  );
}

export function certificateSummary(cert: Record<string, unknown>): HTMLElement {
  const notAfter = cert.not_after;
  const sans = [cert.san_dns, cert.san_ips, cert.san_uris, cert.sans].flatMap((v) => (Array.isArray(v) ? v : []));
  return facts([
    ["Subject", str(cert.subject)],
    ["Issuer", [str(cert.issuer), cert.self_signed ? badge("self-signed", "warn") : null]],
    ["Not after", notAfter ? `${when(notAfter)} (${relative(notAfter)})` : ""],
    ["SANs", sans.map((v) => badge(str(v)))],
    ["Seen in", str(cert.source)],
    ["SHA-256", h("span", { class: "mono small" }, str(cert.sha256))],
  ]);
}

function edgesTable(edges: Record<string, unknown>[], ip: string): HTMLElement {
  return table(
    [
      {
        label: "Peer",
        cell: (e) => {
          const peer = e.client === ip ? str(e.server) : str(e.client);
          return [e.client === ip ? "→ " : "← ", assetLink(peer)];
        },
      },
      { label: "Protocol", cell: (e) => [protocolBadge(str(e.protocol)), ` ${str(e.port)}/${str(e.transport)}`] },
      { label: "Packets", cell: (e) => num(e.packets), className: "num" },
      { label: "Flows", cell: (e) => num(e.flows), className: "num" },
      { label: "Operations", cell: (e) => operationsSummary(e.operations) },
      { label: "Last seen", cell: (e) => when(e.last_seen) },
    ],
    edges,
  );
}

export function operationsSummary(ops: unknown): Child {
  if (!ops || typeof ops !== "object") return "";
  return Object.entries(ops as Record<string, unknown>).map(([kind, values]) =>
    h(
      "div",
      { class: "small" },
      h("span", { class: "muted" }, `${kind}: `),
      Array.isArray(values) ? values.slice(0, 12).join(", ") + (values.length > 12 ? ` … (${values.length})` : "") : str(values),
    ),
  );
}

export async function renderAsset(root: HTMLElement, route: Route): Promise<void> {
  const ip = route.path[1];
  const asset = await get<Record<string, unknown>>(`/assets/${encodeURIComponent(ip)}`);
  const roles = asset.roles;
  const identity = (asset.identity ?? {}) as Record<string, unknown>;
  const macs = asset.macs && typeof asset.macs === "object" ? Object.keys(asset.macs as object) : [];
  const certs = (asset.certificates ?? {}) as Record<string, Record<string, unknown>> | Record<string, unknown>[];
  const certList = Array.isArray(certs)
    ? certs
    : Object.entries(certs).map(([sha, c]) => ({ sha256: sha, ...c }));
  const modbusMap = (asset.modbus_map ?? asset.register_map ?? {}) as Record<string, RegisterUse>;
  const nodes = (asset.opcua_nodes ?? {}) as Record<string, Record<string, string[]>>;
  const topics = (asset.mqtt_topics ?? {}) as Record<string, Record<string, string[]>>;
  const edges = (asset.edges ?? asset.communications ?? []) as Record<string, unknown>[];

  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", null, link("/assets", "Assets"), " / ", h("span", { id: "asset-ip" }, ip), h("span", { id: "asset-name" }, asset.name ? ` — ${str(asset.name)}` : "")),
      h("span", null, link(`/map?focus=${encodeURIComponent(ip)}`, "Show on the map")),
    ),
    h(
      "div",
      { class: "grid" },
      section(
        "Identity",
        facts([
          ["Address", ip],
          ["Name", str(asset.name)],
          ["Tags", tagBadges(asset.tags)],
          ["Zone", asset.zone ? badge(str(asset.zone)) : ""],
          ["MAC", macs.length ? macs.join(", ") : str(asset.mac)],
          ["Vendor", str(asset.vendor)],
          ["Behind router", str(asset.behind_router)],
          ["First seen", when(asset.first_seen)],
          ["Last seen", when(asset.last_seen)],
          ["Protocols", ((asset.protocols as string[]) ?? []).map(protocolBadge)],
          ...Object.entries(identity).map(([k, v]) => [k.replace(/[._]/g, " "), str(v)] as [string, string]),
        ]),
      ),
      section(
        "Roles",
        roleNames(roles).length
          ? h(
              "ul",
              { class: "plain roles" },
              roleNames(roles).map((r) =>
                h(
                  "li",
                  null,
                  badge(`${ROLE_ICONS[r]?.glyph ?? "•"} ${roleLabel(r)}`),
                  roles && !Array.isArray(roles) && typeof roles === "object"
                    ? h("span", { class: "muted small" }, ` ${str((roles as Record<string, unknown>)[r])}`)
                    : null,
                ),
              ),
            )
          : empty("No role inferred yet."),
      ),
    ),
  );
  root.append(
    await labelsSection(ip, asset, (updated) => {
      const title = root.querySelector("#asset-name");
      if (title) replace(title, updated.name ? ` — ${str(updated.name)}` : "");
    }),
  );
  root.append(
    section(
      "Modbus register map",
      Object.keys(modbusMap).length ? registerMap(modbusMap) : empty("No Modbus register accessed on this asset."),
    ),
  );
  if (Object.keys(nodes).length) root.append(section("OPC UA nodes", nodesTable(nodes)));
  if (Object.keys(topics).length) root.append(section("MQTT topics", topicsTable(topics)));
  root.append(
    section(
      "Certificates",
      certList.length
        ? certList.map((c) => h("div", { class: "cert" }, certificateSummary(c as Record<string, unknown>)))
        : empty("No certificate seen for this asset."),
    ),
  );
  root.append(section("Communications", edges.length ? edgesTable(edges, ip) : empty("None.")));
  // The assets it talks with head the source list (its clients reach it in one hop).
  const peers = [...new Set(edges.map((e) => (e.server === ip ? str(e.client) : str(e.server))))];
  root.append(reachSection(ip, peers));

  const alertsBox = h("div");
  root.append(section("Alerts", alertsBox));
  try {
    // The API selects the alerts naming this address on either side, newest first.
    const page = await get<{ items: Record<string, unknown>[]; total: number }>("/alerts", { ip, limit: 100 });
    const mine = page.items;
    alertsBox.append(
      mine.length
        ? table(
            [
              { label: "Severity", cell: (a) => badge(severityName(a.severity), severityName(a.severity)) },
              { label: "Signature", cell: (a) => link(`/alerts/${encodeURIComponent(str(a.alert_id))}`, str(a.signature)) },
              { label: "Status", cell: (a) => badge(str(a.status), str(a.status)) },
              { label: "Last", cell: (a) => when(a.last_ts ?? a.ts) },
            ],
            mine,
          )
        : empty("No alert involves this asset."),
    );
  } catch (error) {
    alertsBox.append(empty(`Alerts for one asset are not available: ${String(error instanceof Error ? error.message : error)}`));
  }
}
