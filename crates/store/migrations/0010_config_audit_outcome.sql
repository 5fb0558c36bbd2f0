-- Every attempt to change the live configuration is audited, the refused ones too: what was
-- asked, whether it was applied, why not, and the bucket revision it produced.

ALTER TABLE config_audit
    ADD COLUMN accepted boolean NOT NULL DEFAULT true,
    ADD COLUMN reason   text,
    ADD COLUMN revision bigint CHECK (revision IS NULL OR revision > 0);

CREATE INDEX config_audit_by_time ON config_audit (at DESC, id DESC);
