// Formatting of values as the API returns them: timestamps may come as ISO 8601 text or as seconds since
// the epoch (packet time), counts as integers.

export function toDate(value: unknown): Date | null {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return new Date(value * 1000);
  if (typeof value === "string") {
    const n = Number(value);
    const d = Number.isFinite(n) && /^\d+(\.\d+)?$/.test(value) ? new Date(n * 1000) : new Date(value);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}

export function when(value: unknown): string {
  const d = toDate(value);
  if (!d) return value === null || value === undefined ? "" : String(value);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/:00Z$/, ":00Z");
}

export function num(value: unknown): string {
  if (typeof value === "number") return value.toLocaleString("en-US");
  if (value === null || value === undefined) return "0";
  return String(value);
}

export function bytes(value: unknown): string {
  if (typeof value !== "number") return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = value;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** "in 41 days", "3 days ago". */
export function relative(value: unknown, now = Date.now()): string {
  const d = toDate(value);
  if (!d) return "";
  const seconds = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  const [n, unit] =
    abs < 90
      ? [abs, "s"]
      : abs < 5400
        ? [Math.round(abs / 60), "min"]
        : abs < 129600
          ? [Math.round(abs / 3600), "h"]
          : [Math.round(abs / 86400), abs < 172800 ? "day" : "days"];
  return seconds >= 0 ? `in ${n} ${unit}` : `${n} ${unit} ago`;
}

export function str(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/** Severity 1 is the worst, as in Suricata. */
export function severityName(severity: unknown): string {
  switch (Number(severity)) {
    case 1:
      return "high";
    case 2:
      return "medium";
    case 3:
      return "low";
    default:
      return "info";
  }
}
