-- zonewarden store, version 2: names and tags people give assets (sensor/assets/labels.py).
-- Kept apart from "assets", which the sensor rewrites whole: a label survives every save, and an
-- address may be labelled before it is seen. Plain SQL types, so the file runs on PostgreSQL too.

CREATE TABLE asset_labels (
    ip         VARCHAR(64) PRIMARY KEY,
    name       VARCHAR(128) NOT NULL DEFAULT '',
    updated_at DOUBLE PRECISION NOT NULL,
    updated_by TEXT NOT NULL DEFAULT ''
);

CREATE TABLE asset_label_tags (
    ip  VARCHAR(64) NOT NULL,
    tag VARCHAR(64) NOT NULL,
    PRIMARY KEY (ip, tag)
);

CREATE INDEX asset_label_tags_tag ON asset_label_tags (tag);

-- Bumped in the same transaction as every label change: a running sensor reads this one row at each
-- commit and reloads the labels only when it moved.
INSERT INTO counters (name, value) VALUES ('labels.revision', 0);
