// Certificates: those the device CA issued (status, expiry, CRL and trust bundle downloads) and those the
// sensor saw on the wire (OPC UA OpenSecureChannel, TLS handshakes), with status and expiry.

import { ApiError, download, get, type Page } from "../api";
import { type Column, PagedTable, searchBox, select } from "../components";
import { badge, empty, errorBox, facts, h, section } from "../dom";
import { relative, str, toDate, when } from "../format";
import { type Route, setQuery } from "../router";
import { assetLink } from "./assets";

type Json = Record<string, unknown>;

export const OBSERVED_PATH = "/certificates/observed";
const SOON_DAYS = 30;

// The wire↔PKI judgement (api/pki/wire.py): managed is what a plant wants; not_judged means the sensor ran
// without --pki-dir.
const PKI_STATUS_KIND: Record<string, string> = {
  managed: "ok",
  not_judged: "",
  expiring_soon: "warn",
  renewed_old_in_use: "warn",
  self_signed: "warn",
  unmanaged: "warn",
};

function pkiBadge(status: string): HTMLElement {
  return badge(status.replace(/_/g, " "), PKI_STATUS_KIND[status] ?? "revoked");
}

function findingsOf(c: Json): HTMLElement | null {
  const findings = Array.isArray(c.findings) ? c.findings.map(str).filter((f) => f !== str(c.status)) : [];
  return findings.length ? h("div", { class: "muted small" }, findings.map((f) => f.replace(/_/g, " ")).join(", ")) : null;
}

/** Each asset that presented the certificate, how (server/client) and the judgement for it. */
function presenters(c: Json): HTMLElement[] {
  const list = Array.isArray(c.presenters) ? (c.presenters as Json[]) : (Array.isArray(c.assets) ? c.assets : []).map((ip) => ({ ip }) as Json);
  return list.map((p) =>
    h(
      "div",
      { "data-presenter": str(p.ip) },
      assetLink(str(p.ip)),
      Array.isArray(p.roles) && p.roles.length ? h("span", { class: "muted small" }, ` as ${p.roles.map(str).join(" and ")}`) : null,
      p.status ? [" ", pkiBadge(str(p.status))] : null,
    ),
  );
}

function expiryBadge(notAfter: unknown, status?: string): HTMLElement {
  const d = toDate(notAfter);
  if (status === "revoked") return badge("revoked", "revoked");
  if (!d) return badge(status || "unknown");
  const days = (d.getTime() - Date.now()) / 86_400_000;
  if (days < 0 || status === "expired") return badge("expired", "expired");
  if (days < SOON_DAYS) return badge(`expires ${relative(d.getTime() / 1000)}`, "expiring");
  return badge(status || "valid", "valid");
}

export async function renderCertificates(root: HTMLElement, route: Route): Promise<void> {
  const filters = { status: route.query.get("status") ?? "", q: route.query.get("q") ?? "" };
  root.append(h("div", { class: "page-head" }, h("h1", null, "Certificates")));

  // --- the device CA -----------------------------------------------------------------------------
  const caBox = h("div");
  let hasCa = true;
  try {
    const ca = await get<Json>("/pki/ca");
    const root_ = (ca.root ?? {}) as Json;
    const issuing = (ca.issuing ?? {}) as Json;
    const downloads = h(
      "div",
      { class: "actions" },
      h("button", { onclick: () => void download("/pki/trust-bundle", "zonewarden-trust-bundle.pem") }, "Trust bundle (PEM)"),
      h("button", { onclick: () => void download("/pki/crl", "zonewarden.crl.pem") }, "CRL (PEM)"),
    );
    caBox.append(
      h(
        "div",
        { class: "grid" },
        h("div", null, h("h3", null, "Root CA"), facts([
          ["Subject", str(root_.subject)],
          ["Valid until", [when(root_.not_after), " ", expiryBadge(root_.not_after)]],
          ["SHA-256", h("span", { class: "mono small" }, str(root_.sha256))],
        ])),
        h("div", null, h("h3", null, "Issuing CA"), facts([
          ["Subject", str(issuing.subject)],
          ["Valid until", [when(issuing.not_after), " ", expiryBadge(issuing.not_after)]],
          ["Key", str(ca.key_kind)],
          ["Issuing here", ca.can_issue ? "yes (keys unlocked)" : "no (keys locked)"],
        ])),
      ),
      downloads,
    );
  } catch (error) {
    hasCa = !(error instanceof ApiError && error.status === 503);
    const text =
      error instanceof ApiError && error.status === 503
        ? "No device CA is configured in this server (zonewarden pki init, then serve with it)."
        : String(error instanceof Error ? error.message : error);
    caBox.append(h("p", { class: "empty" }, text));
  }
  root.append(section("Device CA", caBox));

  // --- issued ------------------------------------------------------------------------------------
  const issuedColumns: Column<Json>[] = [
    { label: "Subject", cell: (c) => str(c.subject) },
    { label: "Profile", cell: (c) => str(c.profile) },
    { label: "SANs", cell: (c) => (Array.isArray(c.sans) ? c.sans.map((s) => badge(str(s))) : "") },
    { label: "Serial", cell: (c) => h("span", { class: "mono small" }, str(c.serial).slice(0, 16)) },
    { label: "Not after", cell: (c) => when(c.not_after) },
    { label: "Status", cell: (c) => expiryBadge(c.not_after, str(c.status)) },
    { label: "Revoked", cell: (c) => (c.revoked_at ? `${when(c.revoked_at)} (${str(c.revocation_reason)})` : "") },
  ];
  const issued = new PagedTable<Json>(
    "/pki/certificates",
    issuedColumns,
    () => ({ status: filters.status || undefined, q: filters.q || undefined }),
    25,
    "No certificate issued.",
    (c) => ({ "data-serial": str(c.serial) }),
  );
  const changed = () => {
    setQuery(filters);
    void issued.reload();
  };
  if (hasCa) root.append(
    section(
      "Issued by the device CA",
      h(
        "div",
        { class: "toolbar" },
        searchBox("q", filters.q, "Search subject or SAN…", (v) => {
          filters.q = v;
          changed();
        }),
        select("status", [["", "any status"], ["valid", "valid"], ["expired", "expired"], ["revoked", "revoked"]], filters.status, (v) => {
          filters.status = v;
          changed();
        }),
      ),
      issued.element,
    ),
  );
  if (hasCa) await issued.reload();

  // --- observed ----------------------------------------------------------------------------------
  const observedBox = h("div", { id: "observed" });
  root.append(section("Observed on the wire", observedBox));
  try {
    const page = await get<Page<Json>>(OBSERVED_PATH, { limit: 200 });
    if (!page.items.length) observedBox.append(empty("No certificate seen on the wire."));
    else {
      const rows = page.items;
      observedBox.append(
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            null,
            h("thead", null, h("tr", null, ["Subject", "Issuer", "SANs", "Presented by (role, PKI status)", "Seen in", "Not after", "Status"].map((t) => h("th", null, t)))),
            h(
              "tbody",
              null,
              rows.map((c) =>
                h(
                  "tr",
                  { "data-sha256": str(c.sha256) },
                  h("td", null, str(c.subject), c.issued_here ? [" ", badge("issued here", "ok")] : null),
                  h("td", null, str(c.issuer), c.self_signed ? [" ", badge("self-signed", "warn")] : null),
                  h("td", null, [c.san_dns, c.san_ips, c.san_uris].flatMap((v) => (Array.isArray(v) ? v : [])).map((v) => badge(str(v)))),
                  h("td", null, presenters(c)),
                  h("td", null, (Array.isArray(c.sources) ? c.sources : []).map((v) => badge(str(v)))),
                  h("td", null, when(c.not_after)),
                  h("td", { "data-status": str(c.status) }, pkiBadge(str(c.status)), " ", expiryBadge(c.not_after), findingsOf(c)),
                ),
              ),
            ),
          ),
        ),
      );
    }
  } catch (error) {
    observedBox.append(
      error instanceof ApiError && error.status === 404
        ? h("p", { class: "empty" }, "The API has no list of observed certificates; each asset page shows the certificates seen for it.")
        : errorBox(String(error instanceof Error ? error.message : error)),
    );
  }
}
