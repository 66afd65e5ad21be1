-- Orrery applies ONE ordered set of migrations to every database it uses: the catalog and each
-- shard. With a single database the catalog is shard 1. Catalog tables stay empty in the other
-- shards, and shard tables are empty in a catalog that is not also shard 1.

-- ---------------------------------------------------------------- catalog

-- Shard databases known to this deployment (their URLs live in the configuration, not here).
CREATE TABLE shards (
    id          integer PRIMARY KEY CHECK (id >= 1),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE,
    name        text NOT NULL,
    -- The shard database that holds everything this tenant runs.
    shard_id    integer NOT NULL REFERENCES shards (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    email           text NOT NULL UNIQUE,
    display_name    text NOT NULL,
    -- argon2id PHC string; NULL for users who only sign in through an identity provider.
    password_hash   text,
    platform_admin  boolean NOT NULL DEFAULT false,
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- External identities (OpenID Connect subjects) linked to users. Password logins use users.email.
CREATE TABLE identities (
    provider        text NOT NULL,   -- e.g. 'oidc:<tenant slug>:<issuer>'
    subject         text NOT NULL,   -- the provider's stable `sub`
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_login_at   timestamptz,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user ON identities (user_id);

-- Who holds which role in which tenant: the RBAC grouping policy that Casbin enforces.
CREATE TABLE memberships (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'operator', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Personal API tokens. Only a SHA-256 of the random secret is kept.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL,
    secret_sha256 bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Every change, who made it and when. Append-only.
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    tenant_id       uuid,
    actor_user_id   uuid,
    action          text NOT NULL,   -- e.g. 'member.grant'
    object          text NOT NULL,   -- e.g. 'member:<user id>'
    detail          jsonb NOT NULL DEFAULT '{}',
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at DESC);

-- ---------------------------------------------------------------- shard

-- Every tenant-owned row is keyed (tenant_id, id); a query always names the tenant.
CREATE TABLE projects (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    slug         text NOT NULL,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, slug)
);
