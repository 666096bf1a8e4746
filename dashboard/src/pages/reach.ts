// "Who can reach this asset" on an asset page: the chains of observed connections from another asset to
// this one, shortest first, from GET /graph/paths (sensor/assets/reach.py builds the answer). Each path
// is a row of chips: asset (zone) → hop → asset…; a hop names the protocols and ports of its
// connections with their Modbus function codes, OPC UA services or MQTT topics, and is marked when its
// policy status is a violation or when it crosses zones. Addresses, names and topics come from the wire:
// all of them go in as text nodes or attribute values (dom.ts), never as HTML.

import { ApiError, apiHas, get, type Page } from "../api";
import { type Child, add, empty, errorBox, h, link, replace } from "../dom";
import { num, str } from "../format";

/** The API's longest path (Limits.graph_path_max_hops) and the panel's default (reach.DEFAULT_MAX_HOPS). */
export const MAX_HOPS = 8;
export const DEFAULT_HOPS = 4;
/** Assets offered in the source list (one page of /assets). */
const SOURCES_LISTED = 1000;

export interface PathEdge {
  id: string;
  client: string;
  server: string;
  protocol: string;
  port: number;
  operations?: Record<string, string[]>;
  policy?: { status?: string } | null;
}

export interface PathHop {
  client: string;
  server: string;
  direction: "forward" | "reverse" | "both";
  client_zone: string | null;
  server_zone: string | null;
  crosses_zones: boolean | null;
  policy_status: string;
  edges: PathEdge[];
}

export interface PathsAnswer {
  source: string;
  target: string;
  directed: boolean;
  max_hops: number;
  limit: number;
  truncated: boolean;
  steps: number;
  policy_loaded: boolean;
  paths: PathHop[][];
}

// Operation kinds a hop shows, each with the word before its values (as `zonewarden graph paths`).
const HOP_OPERATIONS: [string, string][] = [
  ["function", "fc"],
  ["service", ""],
  ["publish", "pub"],
  ["subscribe", "sub"],
];
export const HOP_VALUES_SHOWN = 6;

/** "modbus/502 fc 3,16": an edge's protocol, port and operations (at most 6 values of each kind). */
export function edgeLabel(edge: PathEdge): string {
  const parts = [`${str(edge.protocol)}/${str(edge.port)}`];
  const ops = edge.operations ?? {};
  for (const [kind, word] of HOP_OPERATIONS) {
    const values = Array.isArray(ops[kind]) ? ops[kind].map(str) : [];
    if (!values.length) continue;
    const shown = values.slice(0, HOP_VALUES_SHOWN).join(",") + (values.length > HOP_VALUES_SHOWN ? ",…" : "");
    parts.push(word ? `${word} ${shown}` : shown);
  }
  return parts.join(" ");
}

/** Every operation of an edge, one kind a line (the chip's tooltip: the label shows only the first few). */
function edgeTitle(edge: PathEdge): string {
  const lines = [`${str(edge.client)} → ${str(edge.server)} ${str(edge.protocol)}/${str(edge.port)}`];
  for (const [kind, values] of Object.entries(edge.operations ?? {}))
    if (Array.isArray(values) && values.length) lines.push(`${kind}: ${values.map(str).join(", ")}`);
  const status = str(edge.policy?.status);
  if (status) lines.push(`policy: ${status}`);
  return lines.join("\n");
}

const ARROWS: Record<string, string> = { forward: "→", reverse: "←", both: "↔" };

function assetChip(ip: string, zone: string | null, zoned: boolean, names: Map<string, string>, here: string): HTMLElement {
  const name = names.get(ip);
  return h(
    "span",
    { class: `path-asset${ip === here ? " here" : ""}`, "data-ip": ip, "data-zone": zoned ? (zone ?? "") : null },
    link(`/assets/${encodeURIComponent(ip)}`, ip),
    zoned ? h("span", { class: "zone" }, zone ?? "no zone") : null,
    name && name !== ip ? h("span", { class: "name" }, name) : null,
  );
}

function hopChip(hop: PathHop): HTMLElement {
  const violation = hop.policy_status === "violation";
  const crosses = hop.crosses_zones === true;
  const edges = hop.edges.map((e) => {
    // Which way this connection was opened, against the path's order (client → server).
    const way = e.client === hop.client ? "forward" : "reverse";
    const edgeViolation = e.policy?.status === "violation";
    return h(
      "span",
      {
        class: `hop-edge${edgeViolation ? " violation" : ""}`,
        "data-edge": str(e.id),
        "data-way": way,
        "data-policy": str(e.policy?.status),
        title: edgeTitle(e),
      },
      h("span", { class: "way" }, ARROWS[way]),
      " ",
      h("span", { class: "label" }, edgeLabel(e)),
    );
  });
  return h(
    "span",
    {
      class: `path-hop${violation ? " violation" : ""}${crosses ? " crosses" : ""}`,
      "data-client": hop.client,
      "data-server": hop.server,
      "data-direction": hop.direction,
      "data-policy": hop.policy_status,
      "data-crosses": hop.crosses_zones === null ? null : String(hop.crosses_zones),
    },
    h("span", { class: "hop-edges" }, edges.length ? edges : h("span", { class: "muted" }, ARROWS[hop.direction] ?? "→")),
    violation
      ? h(
          "span",
          { class: "badge violation", "data-mark": "violation", title: "a connection of this hop violates the policy" },
          "⚠ policy violation",
        )
      : hop.policy_status === "closed"
        ? h("span", { class: "badge", "data-mark": "closed", title: "its policy alerts were closed" }, "violation closed")
        : null,
    crosses
      ? h(
          "span",
          { class: "badge warn", "data-mark": "crosses", title: "the two ends are in different zones" },
          `⇄ ${hop.client_zone ?? "no zone"} → ${hop.server_zone ?? "no zone"}`,
        )
      : null,
  );
}

/** One path as a row: asset → hop → asset → … (the last asset is the one the page shows). */
export function pathRow(path: PathHop[], index: number, policyLoaded: boolean, names: Map<string, string>, here: string): HTMLElement {
  const zoned = policyLoaded && path.length > 0 && path[0].crosses_zones !== null;
  const chips: Child[] = [];
  if (path.length) chips.push(assetChip(path[0].client, path[0].client_zone, zoned, names, here));
  for (const hop of path) chips.push(hopChip(hop), assetChip(hop.server, hop.server_zone, zoned, names, here));
  return h(
    "li",
    {
      class: "path",
      "data-path": String(index),
      "data-hops": String(path.length),
      "data-violations": String(path.filter((hop) => hop.policy_status === "violation").length),
    },
    h("span", { class: "path-length muted small" }, `${path.length} hop${path.length === 1 ? "" : "s"}`),
    h("span", { class: "path-chips" }, chips),
  );
}

/** The API's complaint, with the fields it names (422: "source: Input is not a valid IPv4 address"). */
export function apiErrorText(error: unknown): string {
  if (!(error instanceof ApiError)) return String(error instanceof Error ? error.message : error);
  const byField = new Map<string, string[]>();
  for (const detail of error.details) {
    if (!detail || typeof detail !== "object") continue;
    const d = detail as Record<string, unknown>;
    const loc = Array.isArray(d.loc) ? d.loc.map(str) : [];
    const field = (loc[0] === "query" || loc[0] === "body" ? loc[1] : loc[0]) ?? "";
    const said = byField.get(field) ?? [];
    if (!said.includes(str(d.msg))) said.push(str(d.msg));
    byField.set(field, said);
  }
  const problems = [...byField].map(([field, said]) => `${field ? `${field}: ` : ""}${said.join(" / ")}`);
  return problems.length ? `${error.message} (${problems.join("; ")})` : error.message;
}

/** What the answer says: paths, or none within max_hops, and whether more may exist. */
export function pathsView(answer: PathsAnswer, names: Map<string, string>, here: string): HTMLElement {
  const box = h("div", {
    id: "reach-result",
    "data-source": answer.source,
    "data-paths": String(answer.paths.length),
    "data-truncated": String(answer.truncated),
  });
  if (!answer.paths.length) {
    add(
      box,
      empty(`No path within ${answer.max_hops} hop${answer.max_hops === 1 ? "" : "s"}.`),
      answer.directed
        ? h("p", { class: "muted small" }, "Only connections opened toward this asset were followed: tick “either direction” to follow them both ways.")
        : null,
    );
  } else {
    box.append(
      h(
        "p",
        { class: "muted small" },
        `${num(answer.paths.length)} path${answer.paths.length === 1 ? "" : "s"} from ${answer.source}, shortest first` +
          (answer.directed ? " (each hop follows connections the way they were opened)" : " (connections followed either way)"),
      ),
      h(
        "ol",
        { class: "paths" },
        answer.paths.map((path, i) => pathRow(path, i, answer.policy_loaded, names, here)),
      ),
    );
  }
  if (answer.truncated)
    box.append(
      h(
        "div",
        { class: "notice", id: "reach-truncated" },
        `More paths may exist: the answer stopped at ${num(answer.limit)} paths or at the search's step budget ` +
          `(${num(answer.steps)} neighbours examined).`,
      ),
    );
  return box;
}

/**
 * The panel for asset ``ip``: source (a list of known assets, or any address), max hops, either
 * direction, and the answer. ``peers`` (addresses this asset talks with) fill the list at once; the
 * rest of the inventory follows from /assets.
 */
export function reachSection(ip: string, peers: string[]): HTMLElement {
  const names = new Map<string, string>();
  const listId = "reach-sources";
  const options = h("datalist", { id: listId });
  const listed = new Map<string, HTMLOptionElement>();
  const peerSet = new Set(peers);
  const offer = (address: string, ...words: string[]) => {
    if (!address || address === ip) return;
    const label = [...words, peerSet.has(address) ? "talks with this asset" : ""].filter(Boolean).join(" · ");
    const known = listed.get(address);
    if (known) replace(known, label);
    else {
      const option = h("option", { value: address }, label);
      listed.set(address, option);
      options.append(option);
    }
  };
  for (const peer of peers) offer(peer);
  void get<Page<Record<string, unknown>>>("/assets", { limit: SOURCES_LISTED })
    .then((page) => {
      for (const a of page.items) {
        const address = str(a.ip);
        const name = str(a.name);
        if (name) names.set(address, name);
        offer(address, name, a.zone ? `zone ${str(a.zone)}` : "");
      }
    })
    .catch(() => {
      // The list is a convenience: any address can be typed.
    });

  const source = h("input", {
    type: "text",
    name: "reach-source",
    list: listId,
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "Source address (e.g. 10.10.2.30)",
    "aria-label": "source address",
  });
  const hops = h("input", {
    type: "number",
    name: "reach-hops",
    min: 1,
    max: MAX_HOPS,
    step: 1,
    value: DEFAULT_HOPS,
    required: true,
    "aria-label": "max hops",
  });
  const either = h("input", { type: "checkbox", name: "reach-either", id: "reach-either" });
  const run = h("button", { class: "primary", type: "submit", "data-action": "find-paths" }, "Find paths");
  const result = h("div", { id: "reach-answer", role: "status" });
  const form = h(
    "form",
    { class: "toolbar reach-form" },
    h("label", null, "From ", source),
    options,
    h("label", null, "max hops ", hops),
    h("label", { class: "check" }, either, " either direction"),
    run,
  );
  let asked = 0;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const from = source.value.trim();
    const maxHops = Number(hops.value);
    if (from === ip) {
      replace(result, errorBox("That is this asset: pick the address the paths should start from."));
      return;
    }
    if (!Number.isInteger(maxHops) || maxHops < 1 || maxHops > MAX_HOPS) {
      replace(result, errorBox(`Max hops is 1 to ${MAX_HOPS}.`));
      return;
    }
    const mine = ++asked; // a slower earlier answer must not replace a later one
    run.disabled = true;
    replace(result, h("p", { class: "muted" }, "Searching…"));
    try {
      const answer = await get<PathsAnswer>("/graph/paths", {
        source: from,
        target: ip,
        max_hops: maxHops,
        directed: !either.checked,
      });
      if (mine === asked) replace(result, pathsView(answer, names, ip));
    } catch (error) {
      if (mine !== asked) return;
      // 404 is an unknown source (the API says which), or a server older than this route.
      const missing = error instanceof ApiError && error.status === 404 && !(await apiHas("/graph/paths"));
      replace(
        result,
        errorBox(missing ? `This server does not answer who can reach an asset (${error.message}).` : apiErrorText(error)),
      );
    } finally {
      if (mine === asked) run.disabled = false;
    }
  });
  const box = h(
    "section",
    { class: "card", id: "reach" },
    h("h2", null, "Who can reach this asset"),
    h(
      "p",
      { class: "muted small" },
      "Chains of observed connections from another asset to this one, shortest first. A hop goes from a client " +
        "to the server it opened connections to (it can act on it); “either direction” follows them both ways.",
    ),
    form,
    result,
  );
  return box;
}
