-- SMART Backend Services: registered clients, seen assertion ids, the server's token keys; and the
-- indexes the per-Group access checks probe (which lists reference a provider or a coverage).
CREATE TABLE auth_client (
    client_id   TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    enabled     BOOLEAN NOT NULL,
    admin       BOOLEAN NOT NULL,
    jwks        TEXT,              -- inline public JWK set
    jwks_url    TEXT,              -- or where to fetch it
    scopes      TEXT    NOT NULL,  -- JSON array of allowed scopes
    identifiers TEXT    NOT NULL,  -- JSON array of `system|value` the client acts for
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE TABLE auth_jti (
    client_id  TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at BIGINT NOT NULL,   -- seconds since the epoch; the row may go after this
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX auth_jti_expiry ON auth_jti (expires_at);
CREATE TABLE auth_token_key (
    kid        TEXT    PRIMARY KEY,
    secret     BYTEA   NOT NULL,
    created_at BIGINT NOT NULL    -- seconds since the epoch
);
CREATE INDEX group_member_provider ON group_member (provider) WHERE to_version IS NULL;
CREATE INDEX group_member_coverage ON group_member (coverage) WHERE to_version IS NULL;
