// Role icons: small inline SVGs (drawn here, no icon font, nothing fetched) used as node images on the
// map, and a text glyph for tables. Roles are the names the inventory infers (sensor/assets/roles.py).

interface RoleIcon {
  glyph: string;
  label: string;
  /** SVG body on a 24x24 canvas, stroked in currentColor-free plain colours. */
  svg: string;
  rank: number;
}

const S = 'fill="none" stroke="#1d2733" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round"';

const PLC = `<rect x="4" y="5" width="16" height="14" rx="1.5" ${S}/><path d="M7 9h4M7 12h4M7 15h4" ${S}/><circle cx="16" cy="9" r="1.2" fill="#1a7f37"/><circle cx="16" cy="13" r="1.2" fill="#b25e00"/>`;
const GATEWAY = `<path d="M12 3l8 9-8 9-8-9z" ${S}/><path d="M8 12h8M14 10l2 2-2 2" ${S}/>`;
const HMI = `<rect x="3" y="4" width="18" height="12" rx="1.5" ${S}/><path d="M9 20h6M12 16v4" ${S}/><path d="M6 12l3-3 3 2 4-4" ${S}/>`;
const WORKSTATION = `<rect x="5" y="5" width="14" height="10" rx="1" ${S}/><path d="M3 19h18l-2-4H5z" ${S}/><path d="M9 9l-2 1.5L9 12M15 9l2 1.5-2 1.5" ${S}/>`;
const SERVER = `<rect x="5" y="3" width="14" height="6" rx="1" ${S}/><rect x="5" y="9" width="14" height="6" rx="1" ${S}/><rect x="5" y="15" width="14" height="6" rx="1" ${S}/><circle cx="8" cy="6" r="0.9" fill="#1d2733"/><circle cx="8" cy="12" r="0.9" fill="#1d2733"/><circle cx="8" cy="18" r="0.9" fill="#1d2733"/>`;
const CLIENT = `<circle cx="12" cy="12" r="8" ${S}/><path d="M8 12h8M13 9l3 3-3 3" ${S}/>`;
const BROKER = `<circle cx="12" cy="12" r="3" ${S}/><circle cx="4.5" cy="6" r="1.8" ${S}/><circle cx="19.5" cy="6" r="1.8" ${S}/><circle cx="4.5" cy="18" r="1.8" ${S}/><circle cx="19.5" cy="18" r="1.8" ${S}/><path d="M6 7l3.5 3M18 7l-3.5 3M6 17l3.5-3M18 17l-3.5-3" ${S}/>`;
const PUBLISHER = `<circle cx="7" cy="17" r="2" ${S}/><path d="M7 11a6 6 0 016 6M7 6a11 11 0 0111 11" ${S}/>`;
const LOCK = `<rect x="6" y="11" width="12" height="9" rx="1.5" ${S}/><path d="M9 11V8a3 3 0 016 0v3" ${S}/>`;
const UNKNOWN = `<circle cx="12" cy="12" r="8" ${S}/><path d="M10 10a2 2 0 114 0c0 1.5-2 1.5-2 3M12 16.5v.1" ${S}/>`;

export const ROLE_ICONS: Record<string, RoleIcon> = {
  modbus_server: { glyph: "▣", label: "Modbus server (PLC)", svg: PLC, rank: 10 },
  modbus_gateway: { glyph: "◆", label: "Modbus gateway", svg: GATEWAY, rank: 11 },
  opcua_server: { glyph: "▤", label: "OPC UA server", svg: SERVER, rank: 12 },
  mqtt_broker: { glyph: "✳", label: "MQTT broker", svg: BROKER, rank: 13 },
  hmi_scada: { glyph: "▭", label: "HMI / SCADA", svg: HMI, rank: 5 },
  engineering_workstation: { glyph: "⌨", label: "Engineering workstation", svg: WORKSTATION, rank: 4 },
  modbus_client: { glyph: "→", label: "Modbus client", svg: CLIENT, rank: 30 },
  opcua_client: { glyph: "→", label: "OPC UA client", svg: CLIENT, rank: 31 },
  mqtt_publisher: { glyph: "◉", label: "MQTT publisher", svg: PUBLISHER, rank: 32 },
  mqtt_subscriber: { glyph: "◎", label: "MQTT subscriber", svg: PUBLISHER, rank: 33 },
  tls_server: { glyph: "🔒", label: "TLS server", svg: LOCK, rank: 40 },
  tls_client: { glyph: "🔒", label: "TLS client", svg: LOCK, rank: 41 },
};

export function roleLabel(role: string): string {
  return ROLE_ICONS[role]?.label ?? role.replace(/_/g, " ");
}

/** The role that best says what a device is (a PLC before "TLS client"). */
export function mainRole(roles: string[]): string | null {
  let best: string | null = null;
  for (const r of roles) {
    if (!(r in ROLE_ICONS)) continue;
    if (best === null || ROLE_ICONS[r].rank < ROLE_ICONS[best].rank) best = r;
  }
  return best;
}

export function roleIconUrl(role: string | null): string {
  const body = role && ROLE_ICONS[role] ? ROLE_ICONS[role].svg : UNKNOWN;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="48" height="48">${body}</svg>`;
  return `data:image/svg+xml;utf8,${encodeURIComponent(svg)}`;
}
