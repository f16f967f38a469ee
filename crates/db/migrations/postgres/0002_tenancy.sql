-- Tenancy: tenants, their API keys, and one usage record per request.
CREATE TABLE tenants (
    id                         TEXT PRIMARY KEY,
    name                       TEXT NOT NULL UNIQUE,
    tier                       TEXT NOT NULL,
    monthly_token_budget       BIGINT,            -- NULL: no budget
    monthly_cost_budget_micros BIGINT,            -- NULL: no budget
    models                     TEXT NOT NULL,     -- allow-list, comma-separated; empty: the tier's
    created_at                 BIGINT NOT NULL    -- unix seconds
);

-- The secret is never stored: only the SHA-256 of it, as hex.
CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,         -- the public key id inside the key
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    name                TEXT NOT NULL,
    secret_sha256       TEXT NOT NULL,
    scopes              TEXT NOT NULL,            -- comma-separated
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT,
    revoked_at          BIGINT,
    requests_per_minute BIGINT,                   -- per-key overrides of the tier
    requests_per_hour   BIGINT,
    tokens_per_minute   BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- The request id is the key, so a retried write never counts twice.
CREATE TABLE usage_records (
    request_id        TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    model             TEXT NOT NULL,
    deployment        TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    status_code       BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    created_at        BIGINT NOT NULL             -- unix seconds
);
CREATE INDEX usage_records_tenant_time ON usage_records (tenant_id, created_at);
