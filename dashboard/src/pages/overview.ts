// Overview: how much the sensor has seen and whether it has seen all of it (capture health).

import { ApiError, get, type Page } from "../api";
import { fill, tile } from "../components";
import { badge, errorBox, facts, h, link, section } from "../dom";
import { num, severityName, str, when } from "../format";
import { onAlert } from "../live";

interface Status {
  sensor: { running: boolean; mode: string; interface?: string | null; finished: boolean };
  /** Where the counters come from: the sensor in this server, the store (an earlier run), or nowhere. */
  source?: "sensor" | "store" | "none";
  saved_at?: number | null;
  packets: number;
  bytes: number;
  flows: number;
  decode_errors: number;
  gaps: number;
  drops: { kernel: number; queue: number };
  capture: Record<string, number>;
  protocols: Record<string, Record<string, unknown>>;
  alerts: Record<string, unknown>;
  versions: Record<string, string>;
}

/** The ``total`` of a list, or null when the route is not there (or the role may not read it). */
async function total(path: string, query: Record<string, string> = {}): Promise<number | null> {
  try {
    const page = await get<Page<unknown>>(path, { ...query, limit: 1 });
    return page.total;
  } catch (error) {
    if (error instanceof ApiError && [403, 404, 405, 503].includes(error.status)) return null;
    throw error;
  }
}

function countTile(label: string, value: number | null, route: string, sub = "", kind = ""): HTMLElement {
  const shown = value === null ? "—" : num(value);
  return link(route, tile(label, shown, value === null ? "not available" : sub, kind, label.toLowerCase()));
}

export async function renderOverview(root: HTMLElement, _route: unknown, signal: AbortSignal): Promise<void> {
  const [status, assets, alerts, openAlerts, issued, edges] = await Promise.all([
    get<Status>("/status"),
    total("/assets"),
    total("/alerts"),
    total("/alerts", { status: "open" }),
    total("/pki/certificates"),
    total("/communications"),
  ]);
  const observed = await total("/certificates/observed");

  const sensorText =
    status.sensor.mode === "none"
      ? status.source === "store"
        ? `no sensor in this server: counters of the last run that wrote the store${status.saved_at ? ` (saved ${when(status.saved_at)})` : ""}`
        : "no sensor in this server (store only)"
      : status.sensor.mode === "replay"
        ? status.sensor.finished
          ? "replay finished"
          : "replaying"
        : status.sensor.running
          ? `capturing on ${status.sensor.interface ?? "?"}`
          : "capture stopped";

  const drops = status.drops.kernel + status.drops.queue;
  const healthy = drops === 0 && status.gaps === 0 && status.decode_errors === 0;

  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", null, "Overview"),
      h("span", { class: "muted", "data-source": status.source ?? "" }, "Sensor: ", badge(sensorText, status.sensor.running ? "ok" : "")),
    ),
    h(
      "div",
      { class: "tiles" },
      countTile("Assets", assets, "/assets"),
      countTile("Communications", edges, "/map"),
      countTile("Alerts", alerts, "/alerts", openAlerts === null ? "" : `${num(openAlerts)} open`,
        openAlerts ? "bad" : ""),
      countTile(
        "Certificates",
        issued === null && observed === null ? null : (issued ?? 0) + (observed ?? 0),
        "/certificates",
        `${issued === null ? "—" : num(issued)} issued · ${observed === null ? "—" : num(observed)} observed`,
      ),
    ),
    h(
      "div",
      { class: "tiles", id: "capture-health" },
      tile("Packets", num(status.packets), `${num(status.bytes)} bytes`, "", "packets"),
      tile("Flows", num(status.flows), null, "", "flows"),
      tile("Drops", num(drops), `kernel ${num(status.drops.kernel)} · queue ${num(status.drops.queue)}`,
        drops ? "bad" : "ok", "drops"),
      tile("Gaps", num(status.gaps), "TCP bytes never seen", status.gaps ? "bad" : "ok", "gaps"),
      tile("Decode errors", num(status.decode_errors), null, status.decode_errors ? "bad" : "ok", "decode-errors"),
    ),
  );

  // Each protocol's counters in a line: numbers as they are, tables of counts summed, lists counted.
  const protocolRows = Object.entries(status.protocols).map(([name, counters]) => {
    const parts: string[] = [];
    for (const [key, value] of Object.entries(counters)) {
      const label = key.replace(/_by_\w+$/, "").replace(/_/g, " ");
      let n = 0;
      if (typeof value === "number") n = value;
      else if (Array.isArray(value)) n = value.length;
      else if (value && typeof value === "object")
        n = Object.values(value).reduce<number>((t, v) => t + (typeof v === "number" ? v : 0), 0);
      if (n > 0) parts.push(`${label} ${num(n)}`);
    }
    return [name, parts.slice(0, 8).join(" · ") || "nothing seen"] as [string, string];
  });
  const byRule = (status.alerts.by_rule ?? {}) as Record<string, number>;

  const recent = h("div");
  root.append(
    h(
      "div",
      { class: "grid" },
      section(
        "Capture health",
        h("p", null, healthy ? badge("complete: no drops, gaps or decode errors", "ok")
          : badge("the sensor missed traffic: see the counters", "bad")),
        facts([
          ...Object.entries(status.capture).map(([k, v]) => [k.replace(/_/g, " "), num(v)] as [string, string]),
        ]),
      ),
      section("Protocols", protocolRows.length ? facts(protocolRows) : h("p", { class: "empty" }, "none")),
      section("Recent alerts", recent),
      section(
        "Alerts raised by this sensor, by rule",
        Object.keys(byRule).length
          ? facts(Object.entries(byRule).map(([rule, n]) => [rule, num(n)] as [string, string]))
          : h("p", { class: "empty" }, "none"),
      ),
      section("Versions", facts(Object.entries(status.versions))),
    ),
  );
  if (!healthy) root.querySelector("#capture-health")?.setAttribute("data-healthy", "false");

  const loadRecent = (): Promise<void> =>
    fill(recent, async () => {
      const page = await get<Page<Record<string, unknown>>>("/alerts", { limit: 8 });
      if (!page.items.length) return h("p", { class: "empty" }, "No alerts.");
      return h(
        "ul",
        { class: "plain recent" },
        page.items.map((a) =>
          h(
            "li",
            { title: str(a.signature) },
            badge(severityName(a.severity), severityName(a.severity)),
            link(`/alerts/${encodeURIComponent(str(a.alert_id ?? a.id))}`, str(a.signature)),
            " ",
            h("span", { class: "muted small" }, str(a.status)),
          ),
        ),
      );
    });
  if (alerts === null) recent.append(errorBox("The alerts list is not available."));
  else await loadRecent();
  onAlert(() => void loadRecent(), signal);
}
