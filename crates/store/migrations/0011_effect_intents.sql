-- An effect's intent is recorded before its executor is called ('pending'), its outcome after:
-- a later attempt finds the intent and calls again with the same key, or finds the outcome and
-- does not call at all.
ALTER TABLE remediations DROP CONSTRAINT remediations_status_check;
ALTER TABLE remediations ADD CONSTRAINT remediations_status_check
    CHECK (status IN ('pending', 'simulated', 'applied', 'refused', 'failed', 'undone', 'expired'));

-- The sweeper looks only at intents and alerts still waiting for an outcome.
CREATE INDEX remediations_pending ON remediations (created_at) WHERE status = 'pending';
CREATE INDEX alerts_pending ON alerts (created_at) WHERE status = 'pending';

-- The shared per-minute cap counts the actions that reached an executor, across replicas.
CREATE INDEX remediations_by_time ON remediations (created_at);
