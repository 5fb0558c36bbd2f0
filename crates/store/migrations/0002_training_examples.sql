-- Labelled examples the trainer learns from.

CREATE TABLE training_examples (
    id         uuid PRIMARY KEY,
    -- The threat signal as JSON, or ready-made features, or both.
    signal     jsonb,
    features   jsonb,
    -- true: a threat; false: benign.
    label      boolean          NOT NULL,
    source     text             NOT NULL CHECK (source IN ('assessment', 'feedback', 'dataset')),
    -- 'NaN' compares greater than every number in PostgreSQL, so the upper bound refuses it too.
    weight     double precision NOT NULL DEFAULT 1.0 CHECK (weight >= 0 AND weight < 'Infinity'),
    -- Which item it came from (event id, feedback id, file:line), so nothing is collected twice.
    source_ref text             NOT NULL CHECK (source_ref <> ''),
    created_at timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT training_examples_has_input CHECK (signal IS NOT NULL OR features IS NOT NULL),
    CONSTRAINT training_examples_source_ref_key UNIQUE (source, source_ref)
);

CREATE INDEX training_examples_by_time ON training_examples (created_at);
