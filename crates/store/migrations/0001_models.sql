-- Model registry: every trained version, and the history of what happened to each.

CREATE TABLE model_versions (
    id               uuid PRIMARY KEY,
    model_type       text             NOT NULL CHECK (model_type ~ '^[a-z][a-z0-9_]*$'),
    version          integer          NOT NULL CHECK (version > 0),
    trained_at       timestamptz      NOT NULL,
    metrics          jsonb            NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
    hyperparameters  jsonb            NOT NULL DEFAULT '{}',
    training_samples bigint           NOT NULL CHECK (training_samples >= 0),
    features_used    text[]           NOT NULL DEFAULT '{}',
    feature_spec     jsonb            NOT NULL DEFAULT '{}',
    artifact         bytea            NOT NULL,
    -- Computed by PostgreSQL, so it always matches the bytes it describes.
    artifact_sha256  text             NOT NULL GENERATED ALWAYS AS (encode(sha256(artifact), 'hex')) STORED,
    is_active        boolean          NOT NULL DEFAULT false,
    is_production    boolean          NOT NULL DEFAULT false,
    created_at       timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT model_versions_type_version_key UNIQUE (model_type, version)
);

-- At most one production and one active (staging) version per model type.
CREATE UNIQUE INDEX model_versions_one_production_per_type
    ON model_versions (model_type) WHERE is_production;
CREATE UNIQUE INDEX model_versions_one_active_per_type
    ON model_versions (model_type) WHERE is_active;

CREATE TABLE model_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- History outlives nothing: a version with events cannot be deleted.
    model_version_id uuid        NOT NULL REFERENCES model_versions (id) ON DELETE RESTRICT,
    model_type       text        NOT NULL,
    event            text        NOT NULL CHECK (event IN (
                         'registered', 'promoted_active', 'promoted_production',
                         'demoted', 'rolled_back', 'retired')),
    reason           text        NOT NULL DEFAULT '',
    actor            text        NOT NULL CHECK (actor <> ''),
    at               timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX model_events_by_type_and_time ON model_events (model_type, at DESC);
CREATE INDEX model_events_by_version ON model_events (model_version_id);
