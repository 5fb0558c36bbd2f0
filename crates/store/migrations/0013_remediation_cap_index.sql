-- The shared per-minute cap counts the actions of the last minute that reached an executor.
-- Refused actions (most of them once the cap is reached) are left out of the index, so the
-- count reads at most the cap's worth of rows however many were refused.
CREATE INDEX remediations_acting_by_time ON remediations (created_at) WHERE status <> 'refused';
