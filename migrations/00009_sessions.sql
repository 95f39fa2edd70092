-- Sessions of the auditor UI. The login form opens one; the cookie holds a
-- random id of 32 bytes, and only its SHA-256 is kept here, so reading this
-- table does not let anyone sign in. The server ends a session after 8 h
-- unused or 24 h in all (it compares last_seen_at and created_at with its
-- clock), when the user signs out (revoked_at), and when the token it was
-- opened with is removed or replaced (token_fingerprint no longer matches a
-- configured token). Rows are not part of the evidence: expired ones are
-- deleted.

-- +goose Up
CREATE TABLE ui_sessions (
    id_sha256         BYTEA       NOT NULL,
    token_name        TEXT        NOT NULL,
    token_fingerprint BYTEA       NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    last_seen_at      TIMESTAMPTZ NOT NULL,
    revoked_at        TIMESTAMPTZ,
    remote_addr       TEXT        NOT NULL DEFAULT '',
    user_agent        TEXT        NOT NULL DEFAULT '',
    CONSTRAINT ui_sessions_pkey PRIMARY KEY (id_sha256),
    CONSTRAINT ui_sessions_id_sha256_check CHECK (octet_length(id_sha256) = 32)
);

-- The purge of old sessions reads by age.
CREATE INDEX ui_sessions_created_at_idx ON ui_sessions (created_at);

-- +goose Down
DROP TABLE ui_sessions;
