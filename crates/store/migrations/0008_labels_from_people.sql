-- Labels come from people or data sets, never from vigil's own verdicts.
--
-- Until now every workflow wrote its signal to training_examples labelled with its own verdict
-- (source 'assessment'), so the trainer learned the system's mistakes, and anyone who could
-- publish a signal could choose its label. The signal a workflow processed is kept, beside the
-- workflow, as unlabelled observed traffic: the feedback service turns it into a labelled
-- example when an analyst gives a verdict, and drift statistics may read it; the trainer never
-- does. training_examples holds only analyst-labelled ('feedback') and imported ('dataset') rows.

CREATE TABLE workflow_signals (
    -- One signal per workflow, written in the same transaction as the workflow row.
    event_id    text        PRIMARY KEY REFERENCES workflows (event_id) ON DELETE CASCADE,
    signal      jsonb       NOT NULL CHECK (jsonb_typeof(signal) = 'object'),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX workflow_signals_by_time ON workflow_signals (recorded_at);

-- The signals of workflows already recorded stay available for feedback.
INSERT INTO workflow_signals (event_id, signal, recorded_at)
SELECT DISTINCT ON (t.source_ref) t.source_ref, t.signal, t.created_at
FROM training_examples t
JOIN workflows w ON w.event_id = t.source_ref
WHERE t.source = 'assessment' AND t.signal IS NOT NULL AND jsonb_typeof(t.signal) = 'object'
ORDER BY t.source_ref, t.created_at DESC
ON CONFLICT (event_id) DO NOTHING;

DELETE FROM training_examples WHERE source = 'assessment';

ALTER TABLE training_examples DROP CONSTRAINT training_examples_source_check;
ALTER TABLE training_examples
    ADD CONSTRAINT training_examples_source_check CHECK (source IN ('feedback', 'dataset'));
