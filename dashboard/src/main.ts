// The dashboard's shell: sign-in, navigation, and one page at a time under <main>.

import "./style.css";
import { ApiError, clearToken, getToken, setToken, setUnauthorizedHandler } from "./api";
import { errorBox, h, replace } from "./dom";
import { startAlertStream, stopAlertStream, onStreamState } from "./live";
import { forgetMe, whoAmI } from "./session";
import { currentRoute, type PageRenderer } from "./router";
import { renderOverview } from "./pages/overview";
import { renderMap } from "./pages/map";
import { renderAssets, renderAsset } from "./pages/assets";
import { renderAlerts, renderAlert } from "./pages/alerts";
import { renderPolicy } from "./pages/policy";
import { renderCertificates } from "./pages/certificates";
import { renderRules } from "./pages/rules";

interface NavItem {
  route: string;
  label: string;
  list: PageRenderer;
  detail?: PageRenderer;
}

const NAV: NavItem[] = [
  { route: "overview", label: "Overview", list: renderOverview },
  { route: "map", label: "Network map", list: renderMap },
  { route: "assets", label: "Assets", list: renderAssets, detail: renderAsset },
  { route: "alerts", label: "Alerts", list: renderAlerts, detail: renderAlert },
  { route: "policy", label: "Policy", list: renderPolicy },
  { route: "certificates", label: "Certificates", list: renderCertificates },
  { route: "rules", label: "Rules", list: renderRules },
];

const app = document.getElementById("app") as HTMLDivElement;
let pageAbort: AbortController | null = null;

function signIn(message = ""): void {
  stopAlertStream();
  forgetMe();
  pageAbort?.abort();
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "zw_…",
    required: true,
  });
  const status = h("div", { class: "signin-status", role: "status" });
  if (message) replace(status, errorBox(message));
  const form = h(
    "form",
    { class: "signin card", id: "signin" },
    h("h1", null, h("span", { class: "logo" }, "◆"), " zonewarden"),
    h("p", { class: "muted" }, "Passive OT/ICS security monitor. Sign in with an API token."),
    h("label", { for: "token" }, "API token"),
    input,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    status,
    h(
      "p",
      { class: "muted small" },
      "Make one with ",
      h("code", null, "zonewarden tokens create --role analyst"),
      ". The token is kept in this tab only.",
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    replace(status, "Checking…");
    // Check the token itself (not one already stored) against a route every role may read.
    fetch("/api/v1/status", { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } })
      .then(async (response) => {
        if (response.ok) {
          setToken(token);
          if (!location.hash || location.hash === "#/" || location.hash.startsWith("#/signin"))
            location.hash = "#/overview";
          start();
        } else if (response.status === 429) {
          const wait = response.headers.get("Retry-After") ?? "a while";
          replace(status, errorBox(`Too many failed sign-ins from here: try again in ${wait} s.`));
        } else if (response.status === 401) {
          replace(status, errorBox("That token is not valid (or has been revoked)."));
        } else {
          replace(status, errorBox(`The API answered ${response.status}.`));
        }
      })
      .catch((error: unknown) => replace(status, errorBox(`Cannot reach the API: ${String(error)}`)));
  });
  replace(app, h("div", { class: "signin-page" }, form));
  input.focus();
}

function signOut(): void {
  clearToken();
  location.hash = "#/overview";
  signIn();
}

let shell: { main: HTMLElement; nav: HTMLElement; live: HTMLElement } | null = null;

function buildShell(): { main: HTMLElement; nav: HTMLElement; live: HTMLElement } {
  const nav = h(
    "nav",
    { class: "sidebar", "aria-label": "Pages" },
    h("div", { class: "brand" }, h("span", { class: "logo" }, "◆"), " zonewarden"),
    h(
      "ul",
      null,
      NAV.map((item) =>
        h("li", null, h("a", { href: `#/${item.route}`, "data-route": item.route }, item.label)),
      ),
    ),
  );
  const live = h("span", { class: "live", id: "live-state", title: "alert stream" }, "○ offline");
  const whoBadge = h("span", { class: "muted small", id: "whoami" });
  const header = h(
    "header",
    { class: "topbar" },
    h("div", { class: "crumbs", id: "crumbs" }),
    h("div", { class: "topbar-right" }, whoBadge, live, h("button", { id: "signout", onclick: signOut }, "Sign out")),
  );
  void whoAmI().then((me) => {
    if (!me) return;
    whoBadge.textContent = `${me.role} · ${me.token_name}`;
    whoBadge.title = `token ${me.token_prefix}… may: ${me.permissions.join(", ")}`;
    whoBadge.setAttribute("data-role", me.role);
  });
  const main = h("main", { id: "page" });
  replace(app, h("div", { class: "layout" }, nav, h("div", { class: "content" }, header, main)));
  return { main, nav, live };
}

function render(): void {
  if (!getToken()) {
    signIn();
    return;
  }
  if (!shell) shell = buildShell();
  const route = currentRoute();
  const item = NAV.find((n) => n.route === route.path[0]) ?? NAV[0];
  for (const a of shell.nav.querySelectorAll("a")) {
    a.classList.toggle("active", a.getAttribute("data-route") === item.route);
  }
  pageAbort?.abort();
  pageAbort = new AbortController();
  const signal = pageAbort.signal;
  const main = shell.main;
  replace(main, h("p", { class: "muted" }, "Loading…"));
  const renderer = route.path.length > 1 && item.detail ? item.detail : item.list;
  const container = h("div", { class: "page", "data-page": item.route });
  Promise.resolve()
    .then(() => renderer(container, route, signal))
    .then(() => {
      if (!signal.aborted) replace(main, container);
    })
    .catch((error: unknown) => {
      if (signal.aborted) return;
      console.error(error);
      const text =
        error instanceof ApiError
          ? error.status === 404
            ? `Not found: ${error.message}`
            : `The API answered ${error.status}: ${error.message}`
          : String(error);
      replace(main, h("div", { class: "page" }, errorBox(text)));
    });
}

function start(): void {
  shell = null;
  render();
  startAlertStream();
}

setUnauthorizedHandler(() => {
  clearToken();
  shell = null;
  signIn("Your session has ended (the token was refused). Sign in again.");
});

onStreamState((state, detail) => {
  const el = document.getElementById("live-state");
  if (!el) return;
  el.className = `live ${state}`;
  el.textContent = state === "open" ? "● live" : state === "error" ? "○ stream error" : "○ reconnecting";
  el.title = detail ?? "alert stream";
});

window.addEventListener("hashchange", render);
if (getToken()) start();
else signIn();
