// Policy and compliance: the zones and conduits in force, per conduit what was allowed and what was
// denied, rules that nothing used, and the policy the sensor would suggest from what it learned.

import { ApiError, apiHas, get, getAll, post } from "../api";
import { fill, protocolBadge, table } from "../components";
import { type Child, add, badge, empty, errorBox, facts, h, link, replace, section } from "../dom";
import { num, str } from "../format";

type Json = Record<string, unknown>;

export const POLICY_PATHS = {
  current: "/policy",
  compliance: "/policy/compliance",
  learn: "/policy/learn",
};

function arr(value: unknown): Json[] {
  return Array.isArray(value) ? (value as Json[]) : [];
}

function operations(value: unknown): Child {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) {
    return value.map((v) =>
      typeof v === "object" && v !== null
        ? h("div", { class: "small" }, describeOperation(v as Json))
        : badge(str(v)),
    );
  }
  if (typeof value === "object") {
    return Object.entries(value as Json).map(([k, v]) =>
      h("div", { class: "small" }, h("span", { class: "muted" }, `${k}: `), typeof v === "object" ? JSON.stringify(v) : str(v)),
    );
  }
  return str(value);
}

function describeOperation(op: Json): Child {
  const parts: Child[] = [];
  if (op.protocol) parts.push(protocolBadge(str(op.protocol)));
  const text = Object.entries(op)
    .filter(([k]) => !["protocol", "count", "alerts", "first_seen", "last_seen"].includes(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : str(v)}`)
    .join(" ");
  parts.push(text);
  if (op.count !== undefined) parts.push(h("span", { class: "muted" }, ` ×${num(op.count)}`));
  return parts;
}

function zonesTable(zones: Json[]): HTMLElement {
  return table(
    [
      { label: "Zone", cell: (z) => h("strong", null, str(z.id)) },
      { label: "Name", cell: (z) => str(z.name) },
      {
        label: "SL-T",
        cell: (z) => str(z.security_level && typeof z.security_level === "object" ? (z.security_level as Json).target : ""),
      },
      {
        label: "Members",
        cell: (z) =>
          (Array.isArray(z.members) ? (z.members as unknown[]) : []).map((m) =>
            badge(typeof m === "object" ? JSON.stringify(m) : str(m)),
          ),
      },
      { label: "Intra-zone", cell: (z) => str(z.intra_zone ?? "allow") },
    ],
    zones,
  );
}

function conduitsTable(conduits: Json[]): HTMLElement {
  return table(
    [
      { label: "Conduit", cell: (c) => h("strong", null, str(c.id)) },
      { label: "From → to", cell: (c) => `${str(c.from ?? c.initiator)} → ${str(c.to ?? c.responder)}` },
      { label: "Allows", cell: (c) => operations(c.allow) },
    ],
    conduits,
  );
}

function complianceView(report: Json): HTMLElement {
  const conduits = arr(report.conduits);
  const unused = arr(report.unused_rules ?? report.unused);
  const outside = arr(report.unmatched ?? report.no_conduit ?? report.outside_conduits);
  const root = h("div", { id: "compliance" });
  const summary = Object.entries(report).filter(([, v]) => typeof v === "number" || typeof v === "string");
  if (summary.length) root.append(facts(summary.map(([k, v]) => [k.replace(/_/g, " "), str(v)] as [string, string])));
  if (conduits.length) {
    for (const c of conduits) {
      const allowed = c.allowed ?? c.allowed_operations;
      const denied = c.denied ?? c.denied_operations;
      const deniedCount = Array.isArray(denied) ? denied.length : Number(c.denied_count ?? 0);
      root.append(
        h(
          "div",
          { class: "card conduit", "data-conduit": str(c.id ?? c.conduit) },
          h(
            "h3",
            null,
            `${str(c.id ?? c.conduit)}  `,
            h("span", { class: "muted" }, `${str(c.from ?? "")} → ${str(c.to ?? "")}`),
            " ",
            deniedCount ? badge(`${deniedCount} denied`, "denied") : badge("compliant", "allowed"),
          ),
          h(
            "div",
            { class: "grid" },
            h("div", null, h("h3", null, "Allowed operations seen"), operations(allowed) || empty("none")),
            h("div", null, h("h3", null, "Denied operations seen"), operations(denied) || empty("none")),
          ),
          arr(c.unused_rules).length
            ? h("div", null, h("h3", null, "Allow entries nothing used"), operations(c.unused_rules))
            : null,
        ),
      );
    }
  } else {
    root.append(empty("The compliance report lists no conduit."));
  }
  add(root, h("h3", null, "Unused rules"), unused.length ? operations(unused) : empty("Every allow entry was used."));
  if (outside.length) add(root, h("h3", null, "Traffic outside every conduit"), operations(outside));
  return root;
}

function suggestionView(suggestion: Json): HTMLElement {
  const doc = (suggestion.policy ?? suggestion) as Json;
  const zones = arr(doc.zones);
  const conduits = arr(doc.conduits);
  return h(
    "div",
    { id: "suggestion" },
    zones.length ? [h("h3", null, "Suggested zones"), zonesTable(zones)] : null,
    conduits.length ? [h("h3", null, "Suggested conduits"), conduitsTable(conduits)] : null,
    suggestion.yaml ? h("pre", null, str(suggestion.yaml)) : null,
    !zones.length && !conduits.length && !suggestion.yaml ? h("pre", null, JSON.stringify(suggestion, null, 2)) : null,
  );
}

function missing(method: string, path: string, what: string): HTMLElement {
  return h(
    "p",
    { class: "notice missing-endpoint" },
    `This server's API has no ${method} /api/v1${path} (checked in its OpenAPI document), so ${what} cannot be shown.`,
  );
}

/** Zones as the API reports them on assets (each asset's ``zone``, from the policy the server runs). */
function zonesFromAssets(assets: Json[]): HTMLElement {
  const byZone = new Map<string, string[]>();
  for (const a of assets) {
    const zone = str(a.zone) || "(outside every zone)";
    byZone.set(zone, [...(byZone.get(zone) ?? []), str(a.ip)]);
  }
  return table(
    [
      { label: "Zone", cell: ([z]) => (z.startsWith("(") ? h("span", { class: "muted" }, z) : link(`/map?zone=${encodeURIComponent(z)}`, z)) },
      { label: "Assets", cell: ([, ips]) => num(ips.length), className: "num" },
      { label: "Members seen", cell: ([, ips]) => ips.sort().map((ip, i) => [i ? ", " : "", link(`/assets/${encodeURIComponent(ip)}`, ip)]) },
    ],
    [...byZone.entries()].sort(),
  );
}

/** Denied operations per conduit, from the policy alerts the sensor raised (rule policy:<conduit>:<reason>). */
function violationsByConduit(alerts: Json[]): HTMLElement {
  interface Row {
    conduit: string;
    zones: string;
    reasons: Map<string, { rule: string; alerts: number; count: number; open: number }>;
  }
  const rows = new Map<string, Row>();
  for (const a of alerts) {
    const rule = str(a.rule);
    const [, conduitFromRule, reason] = rule.split(":");
    const conduit = str(a.conduit) || conduitFromRule || "(no conduit)";
    const zones = `${str(a.src_zone) || "?"} → ${str(a.dest_zone) || "?"}`;
    const row = rows.get(conduit) ?? { conduit, zones, reasons: new Map() };
    const r = row.reasons.get(reason ?? rule) ?? { rule, alerts: 0, count: 0, open: 0 };
    r.alerts += 1;
    r.count += Number(a.count ?? 1);
    if (a.status === "open") r.open += 1;
    row.reasons.set(reason ?? rule, r);
    rows.set(conduit, row);
  }
  if (!rows.size) return empty("No policy violation has been raised.");
  return h(
    "div",
    { id: "violations-by-conduit" },
    [...rows.values()].map((row) =>
      h(
        "div",
        { class: "card conduit", "data-conduit": row.conduit },
        h("h3", null, `${row.conduit}  `, h("span", { class: "muted" }, row.zones), " ", badge("violations", "denied")),
        table(
          [
            { label: "Denied (reason)", cell: ([reason]) => h("span", { class: "mono" }, reason.replace(/_/g, " ")) },
            { label: "Alerts", cell: ([, r]) => link(`/alerts?category=policy&q=${encodeURIComponent(r.rule)}`, num(r.alerts)), className: "num" },
            { label: "Operations", cell: ([, r]) => num(r.count), className: "num" },
            { label: "Open", cell: ([, r]) => num(r.open), className: "num" },
          ],
          [...row.reasons.entries()],
        ),
      ),
    ),
  );
}

export async function renderPolicy(root: HTMLElement): Promise<void> {
  const [hasPolicy, hasCompliance, hasLearn] = await Promise.all([
    apiHas(POLICY_PATHS.current),
    apiHas(POLICY_PATHS.compliance),
    apiHas(POLICY_PATHS.learn, "post"),
  ]);
  root.append(h("div", { class: "page-head" }, h("h1", null, "Policy and compliance")));

  if (hasPolicy) {
    let current: Json | null = null;
    let why = "";
    try {
      current = await get<Json>(POLICY_PATHS.current);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 503)) why = error.message;
      else throw error;
    }
    if (!current) {
      root.append(section("Current policy", h("p", { class: "empty" }, `No policy is loaded${why ? `: ${why}` : ""}.`)));
    } else {
      const doc = (current.policy ?? current) as Json;
      root.append(
        section(
          "Current policy",
          facts([
            ["Site", str(doc.site)],
            ["Default", str(doc.default)],
            ["Version", str(doc.version)],
            ["Loaded from", str(current.path ?? current.source ?? "")],
            ["Loaded at", str(current.loaded_at ?? "")],
          ]),
          h("h3", null, "Zones"),
          arr(doc.zones).length ? zonesTable(arr(doc.zones)) : empty("none"),
          h("h3", null, "Conduits"),
          arr(doc.conduits).length ? conduitsTable(arr(doc.conduits)) : empty("none"),
        ),
      );
    }
  } else {
    root.append(section("Current policy", missing("GET", POLICY_PATHS.current, "the zones and conduits as written")));
  }

  const [assets, policyAlerts] = await Promise.all([
    getAll<Json>("/assets"),
    getAll<Json>("/alerts", { category: "policy" }, 10_000),
  ]);
  root.append(
    h(
      "div",
      { class: "grid" },
      section("Zones, as the API places assets", zonesFromAssets(assets.items)),
      section("Denied operations per conduit (policy alerts)", violationsByConduit(policyAlerts.items)),
    ),
  );

  const compliance = h("div");
  root.append(section("Compliance report: allowed and denied operations, unused rules", compliance));
  if (hasCompliance) await fill(compliance, async () => complianceView(await get<Json>(POLICY_PATHS.compliance)));
  else compliance.append(missing("GET", POLICY_PATHS.compliance, "allowed operations per conduit and unused rules"));

  if (hasLearn) {
    const learnBox = h("div", null, h("p", { class: "muted" }, "A policy the sensor would suggest from the traffic it has seen."));
    const learnButton = h("button", { class: "primary", id: "learn" }, "Suggest a policy from what was seen");
    learnButton.addEventListener("click", async () => {
      learnButton.disabled = true;
      try {
        replace(learnBox, suggestionView(await post<Json>(POLICY_PATHS.learn, {})));
      } catch (error) {
        replace(learnBox, errorBox(String(error instanceof Error ? error.message : error)));
      } finally {
        learnButton.disabled = false;
      }
    });
    root.append(section("Learned suggestions", learnButton, learnBox));
  } else {
    root.append(section("Learned suggestions", missing("POST", POLICY_PATHS.learn, "a learned policy")));
  }
}
