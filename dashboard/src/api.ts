// The only place that talks to the API (/api/v1). The bearer token lives in sessionStorage: it is gone
// when the tab closes, and it never goes into a URL (where it would land in logs and history).

export const API = "/api/v1";
const TOKEN_KEY = "zonewarden.token";

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** What was wrong, field by field, when the API says (422: ``error.details``). */
    readonly details: unknown[] = [],
  ) {
    super(message);
  }
}

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

type Query = Record<string, string | number | boolean | null | undefined | (string | number)[]>;

/** Builds "?a=1&b=2", leaving out empty values (the API refuses unknown or empty parameters). */
export function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) for (const v of value) params.append(key, String(v));
    else params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** JSON.parse. The API sends 64-bit flow ids as strings, so no number loses precision here. */
export function parseJson(text: string): unknown {
  return JSON.parse(text);
}

let onUnauthorized: () => void = () => {};

/** Called when the API says the token is missing, wrong or revoked: the app goes back to sign-in. */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

function authHeaders(token: string | null = getToken()): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function failure(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  let details: unknown[] = [];
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object") {
      const b = body as Record<string, unknown>;
      const err = (b.error && typeof b.error === "object" ? b.error : b) as Record<string, unknown>;
      if (typeof err.code === "string") code = err.code;
      if (typeof err.message === "string") message = err.message;
      else if (typeof b.detail === "string") message = b.detail;
      else if (Array.isArray(b.detail)) message = JSON.stringify(b.detail);
      if (Array.isArray(err.details)) details = err.details;
    }
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(response.status, code, message, details);
}

export async function request<T>(
  method: string,
  path: string,
  options: { query?: Query; body?: unknown; token?: string | null } = {},
): Promise<T> {
  const headers: Record<string, string> = {
    Accept: "application/json",
    ...authHeaders(options.token === undefined ? getToken() : options.token),
  };
  let body: string | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const response = await fetch(`${API}${path}${queryString(options.query)}`, { method, headers, body });
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401) onUnauthorized();
    throw error;
  }
  if (response.status === 204) return undefined as T;
  const type = response.headers.get("Content-Type") ?? "";
  if (type.includes("json")) return parseJson(await response.text()) as T;
  return (await response.text()) as unknown as T;
}

export const get = <T>(path: string, query?: Query): Promise<T> => request<T>("GET", path, { query });
export const post = <T>(path: string, body?: unknown, query?: Query): Promise<T> =>
  request<T>("POST", path, { body, query });
export const put = <T>(path: string, body?: unknown): Promise<T> => request<T>("PUT", path, { body });
export const patch = <T>(path: string, body?: unknown): Promise<T> => request<T>("PATCH", path, { body });

/** Every page of a list, up to ``cap`` rows (the API serves at most 1000 a page). */
export async function getAll<T>(path: string, query: Query = {}, cap = 5000): Promise<Page<T>> {
  const limit = 1000;
  const items: T[] = [];
  let total = 0;
  for (let offset = 0; offset < cap; offset += limit) {
    const page = await get<Page<T>>(path, { ...query, limit, offset });
    items.push(...page.items);
    total = page.total;
    if (items.length >= total || page.items.length === 0) break;
  }
  return { items, total, limit: items.length, offset: 0 };
}

/** Downloads a file through fetch (so the bearer token goes in a header) and hands it to the browser. */
export async function download(path: string, filename: string, query?: Query): Promise<void> {
  const response = await fetch(`${API}${path}${queryString(query)}`, { headers: authHeaders() });
  if (!response.ok) throw await failure(response);
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export interface StreamEvent {
  event: string;
  id: string;
  data: string;
}

/**
 * Follows a server-sent-events stream. EventSource cannot send an Authorization header, so this reads the
 * stream with fetch and parses it by the WHATWG "text/event-stream" rules (fields, blank-line dispatch,
 * comments ignored). It reconnects after a pause, with Last-Event-ID, until ``signal`` aborts.
 */
export async function followStream(
  path: string,
  onEvent: (event: StreamEvent) => void,
  signal: AbortSignal,
  onState: (state: "open" | "closed" | "error", detail?: string) => void = () => {},
): Promise<void> {
  let lastId = "";
  while (!signal.aborted) {
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream", ...authHeaders() };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(`${API}${path}`, { headers, signal });
      if (!response.ok || !response.body) {
        const error = await failure(response);
        onState("error", error.message);
        if (response.status === 401) {
          onUnauthorized();
          return;
        }
        if (response.status === 403 || response.status === 404) return;
      } else {
        onState("open");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        let fields: StreamEvent = { event: "message", id: "", data: "" };
        let hasData = false;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let newline: number;
          while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
            const line = buffer.slice(0, newline);
            buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
            if (line === "") {
              if (hasData) {
                if (fields.id) lastId = fields.id;
                onEvent({ ...fields, data: fields.data.replace(/\n$/, "") });
              }
              fields = { event: "message", id: "", data: "" };
              hasData = false;
              continue;
            }
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const name = colon < 0 ? line : line.slice(0, colon);
            let value = colon < 0 ? "" : line.slice(colon + 1);
            if (value.startsWith(" ")) value = value.slice(1);
            if (name === "data") {
              fields.data += `${value}\n`;
              hasData = true;
            } else if (name === "event") fields.event = value;
            else if (name === "id") fields.id = value;
          }
        }
        onState("closed");
      }
    } catch (error) {
      if (signal.aborted) return;
      onState("error", String(error));
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

let openapi: Promise<Record<string, unknown>> | null = null;

/**
 * Whether this server's API offers ``method path`` (path as in the OpenAPI document, under /api/v1,
 * e.g. "/policy/compliance"), read from its own OpenAPI document. Pages use it to say precisely that
 * an endpoint is missing instead of showing a bare 404.
 */
export async function apiHas(path: string, method = "get"): Promise<boolean> {
  if (!openapi) openapi = get<Record<string, unknown>>("/openapi.json").catch(() => ({}));
  const doc = await openapi;
  const paths = (doc.paths ?? {}) as Record<string, Record<string, unknown>>;
  return Boolean(paths[`${API}${path}`]?.[method]);
}

export function resetApiCache(): void {
  openapi = null;
}

/** The first OpenAPI path (under /api/v1, without the prefix) matching ``pattern`` for ``method``. */
export async function apiFind(pattern: RegExp, method = "get"): Promise<string | null> {
  if (!openapi) openapi = get<Record<string, unknown>>("/openapi.json").catch(() => ({}));
  const doc = await openapi;
  const paths = (doc.paths ?? {}) as Record<string, Record<string, unknown>>;
  for (const [path, ops] of Object.entries(paths)) {
    if (path.startsWith(API) && ops[method] && pattern.test(path)) return path.slice(API.length);
  }
  return null;
}
