-- Bulk export jobs (`$davinci-data-export`, `$export`): durable rows any instance can run. A
-- running job holds a lease (owner, until); a job whose lease ran out is claimed again.
CREATE TABLE export_job (
    id               TEXT    PRIMARY KEY,
    client_id        TEXT    NOT NULL,
    group_id         TEXT    NOT NULL,
    group_version    BIGINT  NOT NULL,
    transaction_time BIGINT  NOT NULL,  -- the snapshot instant, microseconds since the epoch
    request          TEXT    NOT NULL,  -- the kick-off URL
    params           TEXT    NOT NULL,  -- the parsed request, JSON (owned by atr-export)
    status           TEXT    NOT NULL,  -- accepted | running | completed | failed | cancelled
    created_at       BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    attempts         BIGINT  NOT NULL,
    done             BIGINT  NOT NULL,  -- resources written by the current attempt
    planned          BIGINT  NOT NULL,  -- resources the current attempt expects to write
    result           TEXT,              -- manifest parts (completed) or the reason (failed)
    finished_at      BIGINT
);
CREATE INDEX export_job_status ON export_job (status, created_at);
CREATE INDEX export_job_client ON export_job (client_id, status);
