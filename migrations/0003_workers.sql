-- Workers: the registry (catalog), worker tokens, and the logs they stream (shards).

-- ---------------------------------------------------------------- catalog

-- A worker token authenticates a worker process, not a person; it is created by a platform admin.
ALTER TABLE api_tokens ADD COLUMN kind text NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'worker'));

-- Every worker that connected, with what it last said.
CREATE TABLE workers (
    id               text PRIMARY KEY,
    pool             text NOT NULL,
    region           text NOT NULL,
    labels           jsonb NOT NULL DEFAULT '{}',
    hostname         text NOT NULL,
    version          text NOT NULL,
    isolation        text NOT NULL,
    capacity         jsonb NOT NULL,
    free             jsonb NOT NULL,
    running          integer NOT NULL DEFAULT 0,
    draining         boolean NOT NULL DEFAULT false,
    connected        boolean NOT NULL DEFAULT true,
    connected_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_pool ON workers (pool, region);

-- ---------------------------------------------------------------- shard

-- An attempt's log, in the chunks its worker sent. `seq` is per attempt, from 0, without gaps,
-- so a chunk re-sent after a reconnect is stored once.
CREATE TABLE log_chunks (
    tenant_id   uuid NOT NULL,
    attempt_id  uuid NOT NULL,
    seq         bigint NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    data        bytea NOT NULL,
    PRIMARY KEY (tenant_id, attempt_id, seq)
);

ALTER TABLE attempts ADD COLUMN log_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN exit_code integer;

-- Placement constraints of a queued attempt: a worker must be in this region (if set) and carry
-- every one of these labels.
ALTER TABLE queue ADD COLUMN region text;
ALTER TABLE queue ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';
