-- zonewarden store, version 1: inventory, communication graph, alerts (DESIGN.md §6).
-- Plain SQL types only, so the same file runs on SQLite and PostgreSQL: TEXT/VARCHAR, INTEGER/BIGINT,
-- DOUBLE PRECISION for packet times (seconds since the epoch), JSON documents kept as TEXT.
-- Statements are separated by a semicolon at the end of a line (the migration runner splits on it).

CREATE TABLE assets (
    ip            VARCHAR(64) PRIMARY KEY,
    mac           VARCHAR(17) NOT NULL DEFAULT '',
    vendor        TEXT NOT NULL DEFAULT '',
    name          TEXT NOT NULL DEFAULT '',
    behind_router VARCHAR(17) NOT NULL DEFAULT '',
    first_seen    DOUBLE PRECISION NOT NULL,
    last_seen     DOUBLE PRECISION NOT NULL,
    protocols     TEXT NOT NULL DEFAULT '',
    roles         TEXT NOT NULL DEFAULT '',
    detail        TEXT NOT NULL
);

CREATE INDEX assets_last_seen ON assets (last_seen);

CREATE INDEX assets_vendor ON assets (vendor);

CREATE TABLE asset_roles (
    ip     VARCHAR(64) NOT NULL,
    role   VARCHAR(64) NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (ip, role)
);

CREATE INDEX asset_roles_role ON asset_roles (role);

CREATE TABLE asset_protocols (
    ip       VARCHAR(64) NOT NULL,
    protocol VARCHAR(64) NOT NULL,
    PRIMARY KEY (ip, protocol)
);

CREATE INDEX asset_protocols_protocol ON asset_protocols (protocol);

CREATE TABLE macs (
    mac        VARCHAR(17) PRIMARY KEY,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen  DOUBLE PRECISION NOT NULL,
    ip_count   INTEGER NOT NULL,
    is_router  INTEGER NOT NULL,
    ips        TEXT NOT NULL
);

CREATE TABLE edges (
    edge_id    VARCHAR(300) PRIMARY KEY,
    client_ip  VARCHAR(64) NOT NULL,
    server_ip  VARCHAR(64) NOT NULL,
    protocol   VARCHAR(64) NOT NULL,
    port       INTEGER NOT NULL,
    transport  VARCHAR(16) NOT NULL,
    packets    BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    flows      BIGINT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen  DOUBLE PRECISION NOT NULL,
    operations TEXT NOT NULL
);

CREATE INDEX edges_client ON edges (client_ip);

CREATE INDEX edges_server ON edges (server_ip);

-- Flows whose packet and byte counts are already in an edge: absorbing a flow is idempotent, so a
-- capture replayed twice, or replayed again after a crash, never counts a flow twice.
CREATE TABLE absorbed_flows (
    flow_id BIGINT PRIMARY KEY,
    edge_id VARCHAR(300) NOT NULL,
    ts      DOUBLE PRECISION NOT NULL
);

CREATE INDEX absorbed_flows_ts ON absorbed_flows (ts);

CREATE TABLE alerts (
    alert_id     VARCHAR(64) PRIMARY KEY,
    ts           DOUBLE PRECISION NOT NULL,
    last_ts      DOUBLE PRECISION NOT NULL,
    rule         TEXT NOT NULL,
    signature    TEXT NOT NULL,
    category     VARCHAR(32) NOT NULL,
    severity     INTEGER NOT NULL,
    signature_id BIGINT NOT NULL,
    rev          INTEGER NOT NULL,
    app_proto    VARCHAR(32) NOT NULL DEFAULT '',
    flow_id      BIGINT,
    src_ip       VARCHAR(64) NOT NULL DEFAULT '',
    src_port     INTEGER NOT NULL DEFAULT 0,
    dest_ip      VARCHAR(64) NOT NULL DEFAULT '',
    dest_port    INTEGER NOT NULL DEFAULT 0,
    src_zone     TEXT NOT NULL DEFAULT '',
    dest_zone    TEXT NOT NULL DEFAULT '',
    conduit      TEXT NOT NULL DEFAULT '',
    mitre        TEXT NOT NULL DEFAULT '',
    evidence     TEXT NOT NULL DEFAULT '{}',
    count        BIGINT NOT NULL DEFAULT 1,
    status       VARCHAR(16) NOT NULL DEFAULT 'open',
    acked_at     DOUBLE PRECISION,
    acked_by     TEXT,
    closed_at    DOUBLE PRECISION,
    closed_by    TEXT,
    note         TEXT,
    eve          TEXT NOT NULL
);

CREATE INDEX alerts_ts ON alerts (ts);

CREATE INDEX alerts_status ON alerts (status);

CREATE INDEX alerts_category ON alerts (category);

CREATE INDEX alerts_rule ON alerts (rule);

CREATE TABLE counters (
    name  VARCHAR(128) PRIMARY KEY,
    value BIGINT NOT NULL
);
