-- bifrost-async-postgres schema version 2: managed webhook endpoints and their delivery history
-- (the WebhookRecords store capability). @schema@ is the quoted schema name.

-- One row per endpoint: its document (credentials already sealed by the core) and its unique name.
CREATE TABLE @schema@.webhook_endpoints (
    id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE,
    document text NOT NULL
);

-- Outcome counters per endpoint (dropped with the endpoint).
CREATE TABLE @schema@.webhook_counters (
    endpoint_id text COLLATE "C" PRIMARY KEY,
    successes bigint NOT NULL DEFAULT 0,
    failures bigint NOT NULL DEFAULT 0,
    consecutive_failures bigint NOT NULL DEFAULT 0,
    last_status_code integer,
    last_success_at double precision,
    last_failure_at double precision
);

-- One row per delivery attempt; ``seq`` orders them (newest first by index). The newest
-- HISTORY_PER_ENDPOINT are kept per endpoint, and none older than the retention period.
CREATE TABLE @schema@.webhook_deliveries (
    seq bigserial PRIMARY KEY,
    endpoint_id text COLLATE "C" NOT NULL,
    delivery_id text COLLATE "C" NOT NULL UNIQUE,
    document text NOT NULL,
    recorded_at double precision NOT NULL
);
CREATE INDEX webhook_deliveries_endpoint ON @schema@.webhook_deliveries (endpoint_id, seq DESC);
CREATE INDEX webhook_deliveries_age ON @schema@.webhook_deliveries (recorded_at);
