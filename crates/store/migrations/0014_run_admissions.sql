-- Training runs requested on vigil.trainer.run and admitted by the rate limit
-- (trainer.max_requested_runs_per_hour), counted here so that every trainer replica shares one
-- limit. Rows older than the hour the limit counts over are deleted as new requests come in.
CREATE TABLE run_admissions (
    id           BIGSERIAL PRIMARY KEY,
    requested_by TEXT NOT NULL,
    admitted_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX run_admissions_by_time ON run_admissions (admitted_at);
