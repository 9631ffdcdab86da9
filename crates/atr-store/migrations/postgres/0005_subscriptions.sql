-- atr-list-change Subscriptions and their outbox. Every new Group version adds one
-- subscription_event row per live Subscription on that Group, in the transaction that makes the
-- version, numbered from the Subscription's own counter: an event is never lost, and its number
-- never changes between retries. A delivering instance holds a lease on the Subscription, so its
-- notifications go out one at a time, in order.
CREATE TABLE subscription (
    id                 TEXT    PRIMARY KEY,
    client_id          TEXT    NOT NULL,
    group_id           TEXT    NOT NULL,
    status             TEXT    NOT NULL,  -- requested | active | error | off
    version            BIGINT NOT NULL,
    body               TEXT    NOT NULL,  -- the Subscription as the client wrote it
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    events_since_start BIGINT NOT NULL,  -- the last event number assigned
    delivered_through  BIGINT NOT NULL,  -- the last event number the endpoint acknowledged
    handshake_pending  BOOLEAN NOT NULL,
    heartbeat_secs     BIGINT,
    failures           BIGINT NOT NULL,  -- consecutive failed deliveries
    next_attempt_at    BIGINT NOT NULL,  -- microseconds; backoff after a failure
    last_sent_at       BIGINT,
    last_error         TEXT,
    lease_owner        TEXT,
    lease_until        BIGINT
);
CREATE INDEX subscription_group ON subscription (group_id) WHERE status <> 'off';
CREATE INDEX subscription_client ON subscription (client_id);
CREATE INDEX subscription_due ON subscription (next_attempt_at) WHERE status <> 'off';

CREATE TABLE subscription_event (
    subscription_id TEXT    NOT NULL,
    event_number    BIGINT NOT NULL,
    group_id        TEXT    NOT NULL,
    group_version   BIGINT NOT NULL,
    occurred_at     BIGINT NOT NULL,  -- the Group version's lastUpdated
    PRIMARY KEY (subscription_id, event_number)
);
