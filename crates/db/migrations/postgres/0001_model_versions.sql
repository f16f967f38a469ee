-- Model versions registered at run time (admin API), and where each stands.
CREATE TABLE model_versions (
    id         TEXT PRIMARY KEY,   -- name:version, as clients address it
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    spec       TEXT NOT NULL,      -- the registration, as JSON
    state      TEXT NOT NULL,      -- last lifecycle state
    failure    TEXT,
    created_at BIGINT NOT NULL,    -- unix seconds
    updated_at BIGINT NOT NULL
);
CREATE INDEX model_versions_name ON model_versions (name);
