-- Provenance sent by Consumers (`X-Provenance`) with reconciliation operations, each linked to the
-- Group version its operation made.
CREATE TABLE provenance (
    id            TEXT    PRIMARY KEY,
    group_id      TEXT    NOT NULL,
    group_version BIGINT NOT NULL,
    recorded      BIGINT NOT NULL,  -- microseconds since the epoch
    body          BYTEA   NOT NULL
);
CREATE INDEX provenance_group ON provenance (group_id, group_version);
