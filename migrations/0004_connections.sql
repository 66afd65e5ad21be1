-- Connections: databases a tenant's `sql` tasks run against (shards: tenant data).
-- The URL carries the credentials; the API never returns the password, and the worker that runs
-- a task receives the URL with its assignment only.
CREATE TABLE connections (
    tenant_id   uuid NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('postgres', 'mysql')),
    url         text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
