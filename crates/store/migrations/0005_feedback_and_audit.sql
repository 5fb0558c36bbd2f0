-- Analyst feedback and the audit trail of live configuration changes.

CREATE TABLE feedback (
    id            uuid PRIMARY KEY,
    workflow_id   uuid             NOT NULL REFERENCES workflows (id) ON DELETE RESTRICT,
    -- The alert or remediation judged; empty when the verdict is on the whole workflow.
    action_id     text             NOT NULL DEFAULT '',
    feedback_type text             NOT NULL CHECK (feedback_type IN ('correct', 'incorrect', 'partial')),
    -- 'NaN' compares greater than 1, so it is refused as well.
    confidence    double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    correction    text,
    analyst       text             NOT NULL CHECK (analyst <> ''),
    created_at    timestamptz      NOT NULL DEFAULT now()
);

CREATE INDEX feedback_by_workflow ON feedback (workflow_id);
CREATE INDEX feedback_by_time ON feedback (created_at);

CREATE TABLE config_audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key       text        NOT NULL CHECK (key <> ''),
    -- NULL when the key was created (old) or deleted (new).
    old_value jsonb,
    new_value jsonb,
    actor     text        NOT NULL CHECK (actor <> ''),
    at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX config_audit_by_key ON config_audit (key, at DESC);
