// Rules: the Suricata-format ICS rules the engine runs, with enable/disable.

import { ApiError, apiHas, patch, post } from "../api";
import { type Column, PagedTable, searchBox, select } from "../components";
import { badge, errorBox, h, replace } from "../dom";
import { num, str } from "../format";
import { type Route, setQuery } from "../router";

type Json = Record<string, unknown>;

export const RULE_PATHS = {
  list: "/rules",
  one: (sid: string) => `/rules/${encodeURIComponent(sid)}`,
  enable: (sid: string) => `/rules/${encodeURIComponent(sid)}/enable`,
  disable: (sid: string) => `/rules/${encodeURIComponent(sid)}/disable`,
};

export async function renderRules(root: HTMLElement, route: Route): Promise<void> {
  if (!(await apiHas(RULE_PATHS.list))) {
    root.append(
      h("div", { class: "page-head" }, h("h1", null, "Rules")),
      h(
        "p",
        { class: "notice missing-endpoint" },
        "This server's API has no GET /api/v1/rules (checked in its OpenAPI document), so the rule list and " +
          "enable/disable cannot be shown. Alerts raised by rules are in ",
        h("a", { href: "#/alerts?category=signature" }, "Alerts"),
        ".",
      ),
    );
    return;
  }
  const filters = { q: route.query.get("q") ?? "", enabled: route.query.get("enabled") ?? "" };
  const message = h("div", { role: "status" });
  const toggle = (rule: Json): HTMLElement => {
    const sid = str(rule.sid ?? rule.id);
    const enabled = rule.enabled !== false;
    const button = h("button", { "data-sid": sid }, enabled ? "Disable" : "Enable");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        try {
          await patch(RULE_PATHS.one(sid), { enabled: !enabled });
        } catch (error) {
          if (!(error instanceof ApiError) || ![404, 405].includes(error.status)) throw error;
          await post(enabled ? RULE_PATHS.disable(sid) : RULE_PATHS.enable(sid), {});
        }
        await list.reload();
      } catch (error) {
        replace(message, errorBox(`Rule ${sid}: ${String(error instanceof Error ? error.message : error)}`));
        button.disabled = false;
      }
    });
    return button;
  };
  const columns: Column<Json>[] = [
    { label: "SID", cell: (r) => str(r.sid ?? r.id), className: "num" },
    { label: "Message", cell: (r) => str(r.msg ?? r.message ?? r.signature) },
    { label: "Protocol", cell: (r) => str(r.protocol ?? r.app_proto ?? "") },
    { label: "Action", cell: (r) => str(r.action ?? "") },
    { label: "Source", cell: (r) => h("span", { class: "small muted" }, str(r.source ?? r.file ?? "")) },
    { label: "Hits", cell: (r) => (r.hits === undefined ? "" : num(r.hits)), className: "num" },
    { label: "State", cell: (r) => (r.enabled === false ? badge("disabled") : badge("enabled", "ok")) },
    { label: "", cell: (r) => toggle(r) },
  ];
  const list = new PagedTable<Json>(
    RULE_PATHS.list,
    columns,
    () => ({ q: filters.q || undefined, enabled: filters.enabled || undefined }),
    100,
    "No rules.",
    (r) => ({ "data-sid": str(r.sid ?? r.id) }),
  );
  const changed = () => {
    setQuery(filters);
    void list.reload();
  };
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Rules")),
    h(
      "div",
      { class: "card" },
      h(
        "div",
        { class: "toolbar" },
        searchBox("q", filters.q, "Search message or SID…", (v) => {
          filters.q = v;
          changed();
        }),
        select("enabled", [["", "all"], ["true", "enabled"], ["false", "disabled"]], filters.enabled, (v) => {
          filters.enabled = v;
          changed();
        }),
      ),
      message,
      list.element,
    ),
  );
  await list.reload();
}
