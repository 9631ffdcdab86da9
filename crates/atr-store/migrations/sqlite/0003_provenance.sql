-- Provenance sent by Consumers (`X-Provenance`) with reconciliation operations, each linked to the
-- Group version its operation made.
CREATE TABLE provenance (
    id            TEXT    PRIMARY KEY,
    group_id      TEXT    NOT NULL,
    group_version INTEGER NOT NULL,
    recorded      INTEGER NOT NULL,  -- microseconds since the epoch
    body          BLOB    NOT NULL
);
CREATE INDEX provenance_group ON provenance (group_id, group_version);
