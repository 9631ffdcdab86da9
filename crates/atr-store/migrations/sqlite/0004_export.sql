-- Bulk export jobs (`$davinci-data-export`, `$export`): durable rows any instance can run. A
-- running job holds a lease (owner, until); a job whose lease ran out is claimed again.
CREATE TABLE export_job (
    id               TEXT    PRIMARY KEY,
    client_id        TEXT    NOT NULL,
    group_id         TEXT    NOT NULL,
    group_version    INTEGER  NOT NULL,
    transaction_time INTEGER  NOT NULL,  -- the snapshot instant, microseconds since the epoch
    request          TEXT    NOT NULL,  -- the kick-off URL
    params           TEXT    NOT NULL,  -- the parsed request, JSON (owned by atr-export)
    status           TEXT    NOT NULL,  -- accepted | running | completed | failed | cancelled
    created_at       INTEGER  NOT NULL,
    expires_at       INTEGER  NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    attempts         INTEGER  NOT NULL,
    done             INTEGER  NOT NULL,  -- resources written by the current attempt
    planned          INTEGER  NOT NULL,  -- resources the current attempt expects to write
    result           TEXT,              -- manifest parts (completed) or the reason (failed)
    finished_at      INTEGER
);
CREATE INDEX export_job_status ON export_job (status, created_at);
CREATE INDEX export_job_client ON export_job (client_id, status);
