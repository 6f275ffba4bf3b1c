-- API keys for internal tools: each acts as the user who created it, within
-- its scopes. Only a SHA-256 of the secret is kept (the secret is random,
-- 256 bits: a slow hash would add nothing). Revocation is a timestamp, so
-- the audit trail can still name a revoked key.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    owner_id uuid NOT NULL REFERENCES users (id),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scopes text[] NOT NULL CHECK (cardinality(scopes) > 0),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    expire_time timestamptz,
    revoke_time timestamptz,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_owner ON api_keys (owner_id, create_time DESC);

-- Which key made a change (NULL: the user with a password token).
ALTER TABLE audit_log ADD COLUMN api_key_id uuid REFERENCES api_keys (id);
