// Reusable pieces: tables, a paginated list bound to an API route, tiles, filters.

import { get, getAll, type Page } from "./api";
import { type Child, empty, errorBox, h, replace } from "./dom";
import { num } from "./format";

export interface Column<T> {
  label: string;
  cell: (row: T) => Child;
  className?: string;
}

export function table<T>(columns: Column<T>[], rows: T[], rowAttrs?: (row: T) => Record<string, string>): HTMLElement {
  const thead = h(
    "thead",
    null,
    h(
      "tr",
      null,
      columns.map((c) => h("th", { class: c.className ?? null }, c.label)),
    ),
  );
  const tbody = h("tbody");
  for (const row of rows) tbody.appendChild(tableRow(columns, row, rowAttrs));
  return h("div", { class: "table-wrap" }, h("table", null, thead, tbody));
}

export function tableRow<T>(
  columns: Column<T>[],
  row: T,
  rowAttrs?: (row: T) => Record<string, string>,
): HTMLTableRowElement {
  return h(
    "tr",
    rowAttrs ? rowAttrs(row) : null,
    columns.map((c) => h("td", { class: c.className ?? null }, c.cell(row))),
  );
}

export function tile(label: string, value: Child, sub: Child = null, kind = "", testId = ""): HTMLElement {
  return h(
    "div",
    { class: `tile ${kind}`.trim(), "data-tile": testId || null },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, value),
    sub ? h("div", { class: "sub" }, sub) : null,
  );
}

export const LOCAL_CAP = 10_000;

export type QueryValues = Record<string, string | number | undefined>;

/**
 * A table of one paginated API list. ``query()`` gives the current filters; ``reload()`` fetches the
 * first page again (after a filter changes or a live update). With ``localFilter`` (for filters the API
 * does not offer) every row the API filters select is fetched (up to ``LOCAL_CAP``) and paged here.
 */
export class PagedTable<T> {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;
  private readonly pager: HTMLElement;
  private offset = 0;
  lastPage: Page<T> | null = null;

  constructor(
    private readonly path: string,
    private readonly columns: Column<T>[],
    private readonly query: () => QueryValues,
    private readonly pageSize = 50,
    private readonly emptyText = "Nothing to show.",
    private readonly rowAttrs?: (row: T) => Record<string, string>,
    private readonly localFilter?: (row: T) => boolean,
  ) {
    this.body = h("div");
    this.pager = h("div", { class: "pager" });
    this.element = h("div", null, this.body, this.pager);
  }

  async reload(offset = 0): Promise<void> {
    this.offset = offset;
    try {
      let page: Page<T>;
      if (this.localFilter) {
        const all = await getAll<T>(this.path, this.query(), LOCAL_CAP);
        const rows = all.items.filter(this.localFilter);
        page = { items: rows.slice(offset, offset + this.pageSize), total: rows.length, limit: this.pageSize, offset };
      } else {
        page = await get<Page<T>>(this.path, { ...this.query(), limit: this.pageSize, offset });
      }
      this.lastPage = page;
      this.draw(page);
    } catch (error) {
      replace(this.body, errorBox(String(error instanceof Error ? error.message : error)));
      replace(this.pager);
    }
  }

  private draw(page: Page<T>): void {
    replace(
      this.body,
      page.items.length ? table(this.columns, page.items, this.rowAttrs) : empty(this.emptyText),
    );
    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = page.offset + page.items.length;
    const prev = h("button", { disabled: page.offset === 0 }, "‹ Previous");
    const next = h("button", { disabled: last >= page.total }, "Next ›");
    prev.addEventListener("click", () => void this.reload(Math.max(0, this.offset - this.pageSize)));
    next.addEventListener("click", () => void this.reload(this.offset + this.pageSize));
    replace(
      this.pager,
      h("span", { "data-total": String(page.total) }, `${num(first)}–${num(last)} of ${num(page.total)}`),
      prev,
      next,
    );
  }
}

export function select(
  name: string,
  options: [string, string][],
  value: string,
  onChange: (value: string) => void,
): HTMLSelectElement {
  const el = h(
    "select",
    { name, "aria-label": name },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)),
  );
  el.addEventListener("change", () => onChange(el.value));
  return el;
}

export function searchBox(name: string, value: string, placeholder: string, onChange: (v: string) => void): HTMLInputElement {
  const el = h("input", { type: "search", name, value, placeholder, "aria-label": placeholder });
  let timer: number | undefined;
  el.addEventListener("input", () => {
    clearTimeout(timer);
    timer = window.setTimeout(() => onChange(el.value.trim()), 250);
  });
  return el;
}

/** Loads ``loader`` into ``target``, showing the error instead when it fails. */
export async function fill(target: HTMLElement, loader: () => Promise<Child>): Promise<void> {
  try {
    replace(target, await loader());
  } catch (error) {
    replace(target, errorBox(String(error instanceof Error ? error.message : error)));
  }
}

export function protocolBadge(protocol: string): HTMLElement {
  const known = ["modbus", "opcua", "mqtt", "tls"].includes(protocol) ? protocol : "";
  return h("span", { class: `badge ${known}`.trim() }, protocol);
}
