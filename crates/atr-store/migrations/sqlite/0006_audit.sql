-- The access audit log: which client pulled, changed or subscribed to which list, when, and how
-- it ended. One row per audited interaction, written in the transaction of the change it records
-- (right after, for reads and refusals). Rows are never updated.
CREATE TABLE audit_event (
    id        TEXT   PRIMARY KEY,  -- UUID v7
    recorded  BIGINT NOT NULL,     -- microseconds since the epoch
    client_id TEXT   NOT NULL,
    action    TEXT   NOT NULL,     -- C | R | U | D | E (AuditEvent.action)
    subtype   TEXT   NOT NULL,     -- the interaction or operation: create, $member-remove, bulk-file, ...
    entity    TEXT,                -- Type/id of what it was about (a Group for list operations)
    detail    TEXT,                -- e.g. the export job and file name; never resource content
    status    BIGINT NOT NULL      -- the HTTP status answered
);
CREATE INDEX audit_event_recorded ON audit_event (recorded, id);
CREATE INDEX audit_event_entity ON audit_event (entity, recorded);
CREATE INDEX audit_event_client ON audit_event (client_id, recorded);
