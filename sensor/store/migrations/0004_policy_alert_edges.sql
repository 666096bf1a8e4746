-- zonewarden store, version 4: the communications each policy alert names, for the map.
-- A policy alert marks the graph edges it is about (Store.list_edges_with_policy): the one its row names
-- and every other one its evidence lists (policy/observer.py). One row each here, with what the map shows
-- of the alert (conduit, rule, count, status, last_ts), so the map reads this table on one index instead
-- of reading every alert's evidence, or looking up every alert, at each request.
-- The rows derive from "alerts" alone. The SQLite store fills the table from the alerts already stored
-- and keeps it in step with every insert, change and deletion of an alert (triggers), in the same
-- transaction as this file: sensor/store/sqlite.py _SQLITE_ONLY_STEPS, since JSON functions and triggers
-- are not portable SQL. Plain SQL types here, so the file runs on PostgreSQL too.

CREATE TABLE policy_alert_edges (
    alert_id  VARCHAR(64) NOT NULL,
    client_ip VARCHAR(64) NOT NULL,
    server_ip VARCHAR(64) NOT NULL,
    protocol  VARCHAR(64) NOT NULL,
    port      INTEGER NOT NULL,
    conduit   TEXT NOT NULL,
    rule      TEXT NOT NULL,
    count     BIGINT NOT NULL,
    status    VARCHAR(16) NOT NULL,
    last_ts   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (alert_id, protocol, port)
);

-- The map's grouping, in this column order, read from the index alone (no sort, no table row); its first
-- three columns are the join to an edge (client_ip, server_ip, port).
CREATE INDEX policy_alert_edges_marks ON policy_alert_edges (
    client_ip, server_ip, port, protocol, conduit, rule, count, status, last_ts
);
