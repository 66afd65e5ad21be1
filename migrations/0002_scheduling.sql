-- The scheduling core: workflows and their versions, schedules, runs, task states, attempts,
-- the ready queue, the outbox, and the leases that keep one scheduler per shard.

-- ---------------------------------------------------------------- catalog

-- Which scheduler drives which shard's timers. `token` grows on every change of holder and is
-- carried by the holder's writes; each shard remembers the highest token it has seen
-- (`shard_fence`) and refuses writes with a lower one.
CREATE TABLE shard_leases (
    shard_id    integer PRIMARY KEY REFERENCES shards (id),
    owner       text,
    token       bigint NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);

-- Live scheduler processes (for spreading shard leases among them).
CREATE TABLE schedulers (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- shard

CREATE TABLE shard_fence (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    token     bigint NOT NULL
);

-- Per-tenant dispatch limits, copied to the tenant's shard so a claim can read them.
CREATE TABLE tenant_limits (
    tenant_id    uuid PRIMARY KEY,
    -- Most attempts running at once; NULL = unlimited.
    max_running  integer CHECK (max_running IS NULL OR max_running >= 0),
    -- Weight in fair share (a tenant with weight 2 gets twice the slots of weight 1 under contention).
    weight       integer NOT NULL DEFAULT 1 CHECK (weight >= 1)
);

-- Worker pools and their total slots (NULL = bounded only by the workers' own capacity).
CREATE TABLE pools (
    name   text PRIMARY KEY,
    slots  integer CHECK (slots IS NULL OR slots >= 0)
);

CREATE TABLE workflows (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    project_id   uuid NOT NULL,
    name         text NOT NULL,
    version      integer NOT NULL,          -- the current version
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, project_id, name),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id) ON DELETE CASCADE
);

-- Immutable: a version is never changed, only added. Runs pin the version they started with.
CREATE TABLE workflow_versions (
    tenant_id      uuid NOT NULL,
    workflow_id    uuid NOT NULL,
    version        integer NOT NULL,
    spec           jsonb NOT NULL,
    spec_sha256    bytea NOT NULL,
    message        text NOT NULL DEFAULT '',
    created_by     uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workflow_id, version),
    FOREIGN KEY (tenant_id, workflow_id) REFERENCES workflows (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE schedules (
    tenant_id     uuid NOT NULL,
    workflow_id   uuid NOT NULL,
    cron          text NOT NULL,
    dialect       text NOT NULL,
    timezone      text NOT NULL,
    start_at      timestamptz,
    end_at        timestamptz,
    catchup       text NOT NULL,
    max_catchup   integer NOT NULL,
    overlap       text NOT NULL,
    paused        boolean NOT NULL DEFAULT false,
    -- The next tick to fire (NULL once past end_at).
    next_fire_at  timestamptz,
    last_fire_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workflow_id),
    FOREIGN KEY (tenant_id, workflow_id) REFERENCES workflows (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;

CREATE TABLE backfills (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    workflow_id   uuid NOT NULL,
    start_at      timestamptz NOT NULL,
    end_at        timestamptz NOT NULL,
    -- Logical times still to create, in the order they will be created.
    pending       timestamptz[] NOT NULL,
    parallelism   integer NOT NULL CHECK (parallelism >= 1),
    newest_first  boolean NOT NULL,
    params        jsonb NOT NULL DEFAULT '{}',
    state         text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'succeeded', 'cancelled')),
    created_by    uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, workflow_id) REFERENCES workflows (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE runs (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    workflow_id    uuid NOT NULL,
    version        integer NOT NULL,
    trigger        text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'api', 'backfill', 'webhook', 'event', 'sub_workflow')),
    logical_time   timestamptz NOT NULL,
    -- Unique per workflow: a schedule tick, a backfill tick, or an idempotency key. This is
    -- what makes a fire exactly-once: a second insert of the same key does nothing.
    run_key        text NOT NULL,
    state          text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    params         jsonb NOT NULL DEFAULT '{}',
    -- Added to every task's priority (backfills run below fresh work).
    priority       integer NOT NULL DEFAULT 0,
    backfill_id    uuid,
    parent_run_id  uuid,
    parent_task    integer,
    created_by     uuid,
    queued_at      timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    ended_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, workflow_id, run_key),
    FOREIGN KEY (tenant_id, workflow_id) REFERENCES workflows (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX runs_by_workflow ON runs (tenant_id, workflow_id, logical_time DESC);
CREATE INDEX runs_by_tenant ON runs (tenant_id, queued_at DESC);
CREATE INDEX runs_active ON runs (tenant_id, workflow_id, logical_time) WHERE state IN ('queued', 'running');

-- One row per task per run: its state as the engine sees it.
CREATE TABLE task_runs (
    tenant_id          uuid NOT NULL,
    run_id             uuid NOT NULL,
    task_idx           integer NOT NULL,
    task_id            text NOT NULL,
    state              text NOT NULL CHECK (state IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped', 'upstream_failed')),
    attempts           integer NOT NULL DEFAULT 0,
    attempts_at_clear  integer NOT NULL DEFAULT 0,
    outputs            jsonb NOT NULL DEFAULT '{}',
    reason             text,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, run_id, task_idx),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);

-- Every try of a task. A running attempt holds a lease: its worker renews `lease_expires_at`;
-- reports must carry `lease_token`, so a stale worker's report is refused.
CREATE TABLE attempts (
    tenant_id         uuid NOT NULL,
    id                uuid NOT NULL,
    run_id            uuid NOT NULL,
    task_idx          integer NOT NULL,
    attempt           integer NOT NULL,
    state             text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost')),
    pool              text NOT NULL,
    rendered          jsonb NOT NULL,
    timeout_secs      double precision,
    worker_id         text,
    lease_token       bigint,
    lease_expires_at  timestamptz,
    kill_requested    boolean NOT NULL DEFAULT false,
    timeout_handled   boolean NOT NULL DEFAULT false,
    queued_at         timestamptz NOT NULL DEFAULT now(),
    not_before        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    ended_at          timestamptz,
    error             text,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, run_id, task_idx, attempt),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX attempts_running ON attempts (tenant_id, lease_expires_at) WHERE state = 'running';
CREATE INDEX attempts_lease ON attempts (lease_expires_at) WHERE state = 'running';

-- The ready queue: one row per queued attempt. A claim locks rows with FOR UPDATE SKIP LOCKED
-- and deletes them in the same transaction that marks the attempt running.
CREATE TABLE queue (
    seq           bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    attempt_id    uuid NOT NULL,
    pool          text NOT NULL,
    priority      integer NOT NULL,
    not_before    timestamptz NOT NULL,
    cpu_millis    integer NOT NULL DEFAULT 0,
    memory_bytes  bigint NOT NULL DEFAULT 0,
    gpu           integer NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, attempt_id)
);
-- Per pool and tenant, best first: the claim walks tenants through this index.
CREATE INDEX queue_pick ON queue (pool, tenant_id, priority DESC, seq);

-- Events to deliver (email, IM, webhooks): written in the same transaction as the change.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    run_id      uuid,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;
