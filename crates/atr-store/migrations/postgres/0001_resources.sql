-- Every version of every resource, as its JSON bytes. A Group's body is its header (no `member`).
CREATE TABLE resource_version (
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated BIGINT  NOT NULL,  -- microseconds since the epoch, UTC
    deleted      BOOLEAN NOT NULL,
    is_current   BOOLEAN NOT NULL,
    member_count BIGINT,           -- Groups: member entries at this version
    body         BYTEA   NOT NULL,  -- empty for a deletion
    PRIMARY KEY (rtype, id, version)
);
CREATE UNIQUE INDEX resource_current ON resource_version (rtype, id) WHERE is_current;
CREATE INDEX resource_updated ON resource_version (rtype, last_updated) WHERE is_current;

-- Search indexes of the current version of each resource.
CREATE TABLE search_token (
    rtype       TEXT NOT NULL,
    id          TEXT NOT NULL,
    param       TEXT NOT NULL,
    system      TEXT NOT NULL,
    code        TEXT NOT NULL,
    type_system TEXT NOT NULL,
    type_code   TEXT NOT NULL
);
CREATE INDEX search_token_code ON search_token (rtype, param, code);
CREATE INDEX search_token_resource ON search_token (rtype, id);

CREATE TABLE search_string (
    rtype TEXT NOT NULL,
    id    TEXT NOT NULL,
    param TEXT NOT NULL,
    norm  TEXT COLLATE "C" NOT NULL,
    raw   TEXT NOT NULL
);
CREATE INDEX search_string_norm ON search_string (rtype, param, norm);
CREATE INDEX search_string_resource ON search_string (rtype, id);

CREATE TABLE search_ref (
    rtype  TEXT NOT NULL,
    id     TEXT NOT NULL,
    param  TEXT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX search_ref_target ON search_ref (rtype, param, target);
CREATE INDEX search_ref_resource ON search_ref (rtype, id);

-- Group members as rows valid for versions [from_version, to_version).
CREATE TABLE group_member (
    row_id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id      TEXT    NOT NULL,
    ord           BIGINT  NOT NULL,  -- position in the Group, kept when the entry changes
    member_key    TEXT    NOT NULL,
    patient       TEXT    NOT NULL,
    coverage      TEXT,
    provider      TEXT,
    period_start  TEXT,
    period_end    TEXT,
    inactive      BOOLEAN NOT NULL,
    change_type   TEXT,              -- shown at from_version
    content_hash  BIGINT  NOT NULL,
    extensions    TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    from_version  BIGINT  NOT NULL,
    to_version    BIGINT
);
CREATE INDEX group_member_current ON group_member (group_id, ord) WHERE to_version IS NULL;
CREATE INDEX group_member_all ON group_member (group_id, ord);
CREATE INDEX group_member_patient ON group_member (patient) WHERE to_version IS NULL;
