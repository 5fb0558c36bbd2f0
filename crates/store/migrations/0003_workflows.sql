-- One workflow per threat event: the record of processing it end to end.

CREATE TABLE workflows (
    id               uuid PRIMARY KEY,
    event_id         text             NOT NULL CHECK (event_id <> ''),
    workflow_type    text             NOT NULL,
    status           text             NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'SUCCESS', 'FAILED')),
    started_at       timestamptz      NOT NULL,
    completed_at     timestamptz,
    steps            jsonb            NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(steps) = 'array'),
    results          jsonb            NOT NULL DEFAULT '{}',
    error_message    text,
    duration_seconds double precision NOT NULL DEFAULT 0
                         CHECK (duration_seconds >= 0 AND duration_seconds < 'Infinity'),
    created_at       timestamptz      NOT NULL DEFAULT now(),
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    -- A redelivered event never yields a second workflow.
    CONSTRAINT workflows_event_id_key UNIQUE (event_id),
    CONSTRAINT workflows_completed_after_start CHECK (completed_at IS NULL OR completed_at >= started_at),
    CONSTRAINT workflows_failure_has_reason CHECK (status <> 'FAILED' OR error_message IS NOT NULL)
);

CREATE INDEX workflows_by_start ON workflows (started_at DESC);
CREATE INDEX workflows_by_status ON workflows (status);
