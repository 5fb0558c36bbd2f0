-- Model registry rules that need more than 0001 gave.

-- The artifact checksum is now the one recorded when the version was registered, no longer a
-- generated column: a generated column follows every later change to the bytes, so it could never
-- reveal an artifact that changed after registration. The registry compares it with a freshly
-- computed SHA-256 whenever it loads or promotes an artifact.
ALTER TABLE model_versions ALTER COLUMN artifact_sha256 DROP EXPRESSION;
ALTER TABLE model_versions
    ADD CONSTRAINT model_versions_artifact_sha256_hex CHECK (artifact_sha256 ~ '^[0-9a-f]{64}$');

-- The bytes that arrive must be the bytes the writer hashed (a truncated or mangled upload is
-- refused). Only on INSERT: the load-time check covers whatever happens to the bytes afterwards.
CREATE FUNCTION model_versions_check_artifact_sha256() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.artifact_sha256 IS DISTINCT FROM encode(sha256(NEW.artifact), 'hex') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            CONSTRAINT = 'model_versions_artifact_sha256_matches',
            TABLE = 'model_versions',
            MESSAGE = format('artifact_sha256 %s does not match the %s artifact bytes received',
                             NEW.artifact_sha256, octet_length(NEW.artifact));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER model_versions_check_artifact_sha256
    BEFORE INSERT ON model_versions
    FOR EACH ROW EXECUTE FUNCTION model_versions_check_artifact_sha256();

-- 'demoted' now means "left production"; leaving the active (staging) slot gets its own name, so
-- the production history can be replayed from the events alone.
ALTER TABLE model_events DROP CONSTRAINT model_events_event_check;
ALTER TABLE model_events ADD CONSTRAINT model_events_event_check CHECK (event IN (
    'registered', 'promoted_active', 'deactivated', 'promoted_production',
    'demoted', 'rolled_back', 'retired'));

-- History is read in the order it was written (the identity), per model type.
CREATE INDEX model_events_by_type_and_id ON model_events (model_type, id);
