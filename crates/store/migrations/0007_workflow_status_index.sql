-- The index on workflows(status) held one entry per workflow, nearly all 'SUCCESS', and no query
-- read it; every workflow paid for it on insert. What an operator looks for is the workflows
-- that did not succeed, newest first: a partial index holds only those.
DROP INDEX IF EXISTS workflows_by_status;
CREATE INDEX workflows_not_succeeded ON workflows (started_at DESC) WHERE status <> 'SUCCESS';
