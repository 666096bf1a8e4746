// Alerts: filtered list that follows the live alert stream; one alert with its evidence, acknowledge and
// close (with a comment, which the API keeps in its audit log), and "accept into the baseline".

import { ApiError, apiFind, get, post } from "../api";
import { type Column, PagedTable, protocolBadge, searchBox, select } from "../components";
import { add, badge, errorBox, facts, h, link, replace, section } from "../dom";
import { num, severityName, str, when } from "../format";
import { onAlert } from "../live";
import { type Route, setQuery } from "../router";
import { may } from "../session";
import { assetLink } from "./assets";

export type AlertRow = Record<string, unknown> & {
  alert_id: string;
  signature: string;
  severity: number;
  status: string;
  category: string;
  rule: string;
};

export const ALERT_PATHS = {
  ack: (id: string) => `/alerts/${encodeURIComponent(id)}/ack`,
  close: (id: string) => `/alerts/${encodeURIComponent(id)}/close`,
};

function statusBadge(status: string): HTMLElement {
  return badge(status, status === "open" ? "open" : status === "acknowledged" ? "warn" : "");
}

function endpoints(a: Record<string, unknown>): HTMLElement {
  return h(
    "span",
    { class: "small" },
    a.src_ip ? assetLink(str(a.src_ip)) : "",
    a.src_port ? `:${str(a.src_port)}` : "",
    " → ",
    a.dest_ip ? assetLink(str(a.dest_ip)) : "",
    a.dest_port ? `:${str(a.dest_port)}` : "",
  );
}

function zones(a: Record<string, unknown>): string {
  if (!a.src_zone && !a.dest_zone) return "";
  return `${str(a.src_zone) || "?"} → ${str(a.dest_zone) || "?"}`;
}

export async function renderAlerts(root: HTMLElement, route: Route, signal: AbortSignal): Promise<void> {
  const filters = {
    status: route.query.get("status") ?? "",
    category: route.query.get("category") ?? "",
    severity: route.query.get("severity") ?? "",
    q: route.query.get("q") ?? "",
    ip: route.query.get("ip") ?? "",
    zone: route.query.get("zone") ?? "",
  };
  const columns: Column<AlertRow>[] = [
    { label: "Severity", cell: (a) => badge(severityName(a.severity), severityName(a.severity)) },
    {
      label: "Signature",
      cell: (a) => link(`/alerts/${encodeURIComponent(a.alert_id)}`, a.signature),
    },
    { label: "Category", cell: (a) => str(a.category) },
    { label: "Where", cell: (a) => endpoints(a) },
    { label: "Zones", cell: (a) => [zones(a), a.conduit ? h("div", { class: "muted small" }, str(a.conduit)) : null] },
    { label: "Proto", cell: (a) => (a.app_proto ? protocolBadge(str(a.app_proto)) : "") },
    { label: "Count", cell: (a) => num(a.count), className: "num" },
    { label: "Last seen", cell: (a) => when(a.last_ts ?? a.ts) },
    { label: "Status", cell: (a) => statusBadge(a.status) },
  ];
  // Every filter is applied by the API (GET /alerts): one page of 50 rows at a time, whatever the store
  // holds. The text search is a plain substring there, never a pattern.
  const query = () => ({
    status: filters.status || undefined,
    category: filters.category || undefined,
    severity: filters.severity || undefined,
    q: filters.q || undefined,
    ip: filters.ip || undefined,
    zone: filters.zone || undefined,
  });
  const list = new PagedTable<AlertRow>("/alerts", columns, query, 50, "No alerts match.", (a) => ({
    "data-alert-id": a.alert_id,
    "data-status": a.status,
  }));
  const changed = () => {
    setQuery(filters);
    void list.reload();
  };
  const liveNote = h("span", { class: "muted small", id: "live-count" });
  const liveIds = new Set<string>();
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Alerts"), liveNote),
    h(
      "div",
      { class: "card" },
      h(
        "div",
        { class: "toolbar" },
        searchBox("q", filters.q, "Search signature, rule, address…", (v) => {
          filters.q = v;
          changed();
        }),
        searchBox("ip", filters.ip, "Address (either side)", (v) => {
          filters.ip = v;
          changed();
        }),
        searchBox("zone", filters.zone, "Zone", (v) => {
          filters.zone = v;
          changed();
        }),
        select(
          "status",
          [["", "any status"], ["open", "open"], ["acknowledged", "acknowledged"], ["closed", "closed"]],
          filters.status,
          (v) => {
            filters.status = v;
            changed();
          },
        ),
        select(
          "category",
          [["", "any category"], ["policy", "policy"], ["anomaly", "anomaly"], ["signature", "signature"],
            ["certificate", "certificate"]],
          filters.category,
          (v) => {
            filters.category = v;
            changed();
          },
        ),
        select(
          "severity",
          [["", "any severity"], ["1", "high"], ["2", "medium"], ["3", "low"]],
          filters.severity,
          (v) => {
            filters.severity = v;
            changed();
          },
        ),
      ),
      list.element,
    ),
  );
  await list.reload(0);
  // The stream sends an alert again when it changes (counted again, acknowledged): count each once.
  onAlert((alert) => {
    liveIds.add(str(alert.alert_id));
    const n = liveIds.size;
    liveNote.textContent = `${n} new alert${n === 1 ? "" : "s"} (or updated) since this page opened`;
    void list.reload(0);
  }, signal);
}

function triageFacts(alert: Record<string, unknown>): HTMLElement {
  return facts([
    ["Status", str(alert.status)],
    ["Acknowledged", alert.acked_at ? `${when(alert.acked_at)} by ${str(alert.acked_by)}` : ""],
    ["Closed", alert.closed_at ? `${when(alert.closed_at)} by ${str(alert.closed_by)}` : ""],
    ["Note", str(alert.note)],
  ]);
}

export async function renderAlert(root: HTMLElement, route: Route): Promise<void> {
  const id = route.path[1];
  const alert = await get<AlertRow>(`/alerts/${encodeURIComponent(id)}`);
  const statusBox = h("span", { id: "alert-status" }, statusBadge(alert.status));
  const triage = h("div", null, triageFacts(alert));
  const message = h("div", { role: "status" });
  const comment = h("textarea", { class: "comment", name: "comment", placeholder: "Comment (kept in the audit log)", maxlength: 2000 });
  const act = (label: string, path: string, body: unknown, className = "") => {
    const button = h("button", { class: className, "data-action": label.toLowerCase() }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const updated = await post<AlertRow | undefined>(path, body ?? { comment: comment.value });
        const fresh = updated && typeof updated === "object" && "status" in updated
          ? updated
          : await get<AlertRow>(`/alerts/${encodeURIComponent(id)}`);
        replace(statusBox, statusBadge(fresh.status));
        replace(triage, triageFacts(fresh));
        replace(message, h("div", { class: "notice" }, `${label}: done.`));
        refreshButtons(fresh.status);
      } catch (error) {
        const text = error instanceof ApiError && error.status === 403
          ? `${label}: your role may not do this (${error.message}).`
          : `${label} failed: ${String(error instanceof Error ? error.message : error)}`;
        replace(message, errorBox(text));
        button.disabled = false;
      }
    });
    return button;
  };
  // "Accept into the baseline" only when the API offers it (a POST under /baseline taking an alert id).
  const acceptPath = await apiFind(/\/baseline\/.*accept.*\{[a-z_]+\}|\/baseline\/.*\{[a-z_]+\}.*accept/, "post");
  // Actions the signed-in role may not take are not offered (GET /me); the API refuses them anyway.
  const [mayTriage, mayTune] = await Promise.all([may("alerts:write"), may("detection:tune")]);
  const ackButton = act("Acknowledge", ALERT_PATHS.ack(id), undefined, "primary");
  const closeButton = act("Close", ALERT_PATHS.close(id), undefined);
  const refreshButtons = (status: string) => {
    ackButton.disabled = status !== "open";
    closeButton.disabled = status === "closed";
  };
  refreshButtons(alert.status);

  const evidence = alert.evidence && typeof alert.evidence === "object" ? (alert.evidence as Record<string, unknown>) : {};
  add(
    root,
    h(
      "div",
      { class: "page-head" },
      h("h1", null, link("/alerts", "Alerts"), " / ", statusBox, " ", h("span", { id: "alert-signature" }, alert.signature)),
    ),
    h(
      "div",
      { class: "grid" },
      section(
        "What happened",
        facts([
          ["Severity", badge(severityName(alert.severity), severityName(alert.severity))],
          ["Category", str(alert.category)],
          ["Rule", h("span", { class: "mono" }, str(alert.rule))],
          ["Signature id", str(alert.signature_id)],
          ["From", alert.src_ip ? [assetLink(str(alert.src_ip)), alert.src_port ? `:${str(alert.src_port)}` : ""] : ""],
          ["To", alert.dest_ip ? [assetLink(str(alert.dest_ip)), alert.dest_port ? `:${str(alert.dest_port)}` : ""] : ""],
          ["Zones", zones(alert)],
          ["Conduit", str(alert.conduit)],
          ["Protocol", alert.app_proto ? protocolBadge(str(alert.app_proto)) : ""],
          ["MITRE ATT&CK for ICS", Array.isArray(alert.mitre) ? alert.mitre.map((m) => badge(str(m))) : str(alert.mitre)],
          ["First seen", when(alert.ts)],
          ["Last seen", when(alert.last_ts)],
          ["Count", num(alert.count)],
          ["Flow", str(alert.flow_id)],
        ]),
      ),
      section(
        "Triage",
        triage,
        mayTriage || mayTune ? comment : h("p", { class: "muted small", id: "read-only" }, "Your role may read alerts, not change them."),
        h(
          "div",
          { class: "actions" },
          mayTriage ? ackButton : null,
          mayTriage ? closeButton : null,
          acceptPath && mayTune
            ? act("Accept into baseline", acceptPath.replace(/\{[a-z_]+\}/, encodeURIComponent(id)), {}, "")
            : null,
        ),
        message,
      ),
    ),
    section(
      "Evidence",
      Object.keys(evidence).length
        ? facts(Object.entries(evidence).map(([k, v]) => [k.replace(/_/g, " "), typeof v === "object" ? h("span", { class: "mono" }, JSON.stringify(v)) : str(v)]))
        : h("p", { class: "empty" }, "none recorded"),
    ),
    alert.eve ? section("EVE record", h("pre", null, JSON.stringify(alert.eve, null, 2))) : null,
  );
}
