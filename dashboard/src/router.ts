// Hash routes ("#/assets/10.0.0.5?zone=control"): the server serves one index.html and never needs to
// know the dashboard's paths.

export interface Route {
  path: string[];
  query: URLSearchParams;
}

export type Cleanup = () => void;
export type PageRenderer = (root: HTMLElement, route: Route, signal: AbortSignal) => Promise<void> | void;

export function currentRoute(): Route {
  const raw = location.hash.replace(/^#\/?/, "");
  const [pathPart, queryPart = ""] = raw.split("?", 2);
  const path = pathPart
    .split("/")
    .filter((s) => s !== "")
    .map((s) => decodeURIComponent(s));
  return { path, query: new URLSearchParams(queryPart) };
}

/** "#/a/b?x=1" from parts; segments are URI-encoded so an id with a slash stays one segment. */
export function href(path: (string | number)[], query?: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v) q.set(k, v);
  const qs = q.toString();
  return `#/${path.map((p) => encodeURIComponent(String(p))).join("/")}${qs ? `?${qs}` : ""}`;
}

/** Changes the query of the current route without re-rendering the page (filters, selections). */
export function setQuery(query: Record<string, string | undefined>): void {
  const route = currentRoute();
  const url = href(route.path, query);
  history.replaceState(null, "", url);
}
