// A tiny DOM builder. Every string that came from the API (device names, MQTT topics, certificate
// subjects: all of them chosen by whoever is on the wire) is inserted as a text node, never as HTML, so a
// hostile name cannot run script in an analyst's browser.

export type Child = Node | string | number | null | undefined | false | Child[];
export type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (typeof value === "function") {
        el.addEventListener(name.replace(/^on/, ""), value);
      } else if (value === true) {
        el.setAttribute(name, "");
      } else {
        el.setAttribute(name, String(value));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function replace(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

/** A link inside the single-page app (hash routes). */
export function link(route: string, ...children: Child[]): HTMLAnchorElement {
  return h("a", { href: `#${route}` }, ...children);
}

/** A small coloured label. */
export function badge(text: string, kind = ""): HTMLSpanElement {
  return h("span", { class: `badge ${kind}`.trim() }, text);
}

/** A "label: value" list; rows whose value is empty are left out. */
export function facts(rows: [string, Child][]): HTMLDListElement {
  const dl = h("dl", { class: "facts" });
  for (const [label, value] of rows) {
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && value.length === 0))
      continue;
    append(dl, [h("dt", null, label), h("dd", null, value)]);
  }
  return dl;
}

export function section(title: string, ...children: Child[]): HTMLElement {
  return h("section", { class: "card" }, h("h2", null, title), ...children);
}

export function empty(text: string): HTMLParagraphElement {
  return h("p", { class: "empty" }, text);
}

export function errorBox(text: string): HTMLDivElement {
  return h("div", { class: "error", role: "alert" }, text);
}

/** ``parent.append`` that accepts the same children as ``h`` (null, arrays...). */
export function add(parent: Node, ...children: Child[]): void {
  append(parent, children);
}
