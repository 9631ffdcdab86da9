-- Values no two resources may hold at once (seed 000: one attribution list per contract; member id
-- + payer + contract + plan unique among Coverages). The writer computes each resource's claims
-- (atr_model::contract::unique_claims); the primary key turns away a second holder even when two
-- writes race.
CREATE TABLE unique_claim (
    claim TEXT PRIMARY KEY,
    rtype TEXT NOT NULL,
    id    TEXT NOT NULL
);
CREATE INDEX unique_claim_holder ON unique_claim (rtype, id);
