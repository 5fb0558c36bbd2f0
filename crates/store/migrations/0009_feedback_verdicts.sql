-- Analysts' verdicts (the feedback service): the true label each gives, which verdict replaced
-- which, whether its FEEDBACK_RECEIVED event went out; and the training runs the verdicts asked
-- the trainer for.

ALTER TABLE feedback
    -- The signal's true label by this verdict: the analyst's, or for 'correct' vigil's own.
    ADD COLUMN label              text CHECK (label IN ('attack', 'benign')),
    -- vigil's own verdict on the workflow when it was judged (attack from risk level high).
    ADD COLUMN system_label       text CHECK (system_label IN ('attack', 'benign')),
    ADD COLUMN attack_type        text CHECK (attack_type <> ''),
    -- The later verdict of the same analyst on the same workflow and action that replaced this
    -- one; both stay, so the history is kept.
    ADD COLUMN superseded_by      uuid REFERENCES feedback (id),
    ADD COLUMN superseded_at      timestamptz,
    -- When FEEDBACK_RECEIVED was stored in the events stream; NULL: publish it (again).
    ADD COLUMN event_published_at timestamptz,
    ADD CONSTRAINT feedback_attack_type_needs_attack CHECK (attack_type IS NULL OR label = 'attack'),
    ADD CONSTRAINT feedback_superseded_together
        CHECK ((superseded_by IS NULL) = (superseded_at IS NULL));

-- The current verdict of one analyst on one workflow and action. Writers serialise on the
-- workflow row (SELECT ... FOR UPDATE), which keeps one current verdict per key.
CREATE INDEX feedback_current ON feedback (workflow_id, action_id, analyst)
    WHERE superseded_by IS NULL;

-- Training runs asked for by the feedback service's retraining trigger. A row is written when a
-- trigger fires (one transaction under an advisory lock, so replicas fire once between them)
-- and is delivered when a trainer took the request; an undelivered row is sent again later and
-- keeps new ones from being made.
CREATE TABLE retrain_requests (
    id           uuid PRIMARY KEY,
    trigger      text             NOT NULL CHECK (trigger IN ('labels', 'accuracy')),
    reason       text             NOT NULL CHECK (reason <> ''),
    -- Labelled verdicts counted, and the accuracy measured, when it fired.
    labels       bigint           NOT NULL CHECK (labels >= 0),
    accuracy     double precision CHECK (accuracy >= 0 AND accuracy <= 1),
    requested_at timestamptz      NOT NULL DEFAULT now(),
    attempts     integer          NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A replica sending it holds it until this lease passes.
    attempted_at timestamptz,
    delivered_at timestamptz,
    last_error   text,
    -- The trainer's run report, once it answered.
    run_id       text,
    run_outcome  text,
    run_report   jsonb,
    reported_at  timestamptz
);

CREATE INDEX retrain_requests_undelivered ON retrain_requests (requested_at)
    WHERE delivered_at IS NULL;
CREATE INDEX retrain_requests_by_time ON retrain_requests (requested_at DESC);
