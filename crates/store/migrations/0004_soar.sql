-- Components 2-4: alerts, remediations, incidents. Each is idempotent by event id.

CREATE TABLE alerts (
    id           uuid PRIMARY KEY,
    event_id     text        NOT NULL CHECK (event_id <> ''),
    -- Threat type + source: repeats of one threat share it.
    threat_key   text        NOT NULL,
    channel      text        NOT NULL CHECK (channel <> ''),
    severity     text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    title        text        NOT NULL DEFAULT '',
    body         text        NOT NULL DEFAULT '',
    status       text        NOT NULL CHECK (status IN ('pending', 'delivered', 'grouped', 'rate_limited', 'failed')),
    attempts     integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   text,
    -- What was sent to the channel.
    payload      jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    -- A redelivered event never sends (or records) a second alert per channel.
    CONSTRAINT alerts_event_channel_key UNIQUE (event_id, channel)
);

CREATE INDEX alerts_by_threat_key ON alerts (threat_key, created_at DESC);

CREATE TABLE remediations (
    id          uuid PRIMARY KEY,
    event_id    text        NOT NULL CHECK (event_id <> ''),
    action_kind text        NOT NULL CHECK (action_kind IN ('block_address', 'isolate_host', 'disable_account', 'rate_limit')),
    target      text        NOT NULL CHECK (target <> ''),
    executor    text        NOT NULL CHECK (executor <> ''),
    status      text        NOT NULL CHECK (status IN ('simulated', 'applied', 'refused', 'failed', 'undone', 'expired')),
    -- What was (or would be) applied, and the rule that chose it.
    details     jsonb       NOT NULL DEFAULT '{}',
    -- What reverses it.
    undo        jsonb       NOT NULL DEFAULT '{}',
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    undone_at   timestamptz,
    CONSTRAINT remediations_event_kind_target_key UNIQUE (event_id, action_kind, target)
);

-- The expiry sweeper looks only at live actions with a deadline.
CREATE INDEX remediations_expiring ON remediations (expires_at)
    WHERE undone_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX remediations_by_target ON remediations (target, created_at DESC);

CREATE TABLE incidents (
    id          uuid PRIMARY KEY,
    threat_key  text        NOT NULL CHECK (threat_key <> ''),
    title       text        NOT NULL,
    severity    text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    status      text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CONSTRAINT incidents_resolved_at_iff_resolved CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);

-- One unresolved incident per threat key; once resolved, a recurrence opens a new one.
CREATE UNIQUE INDEX incidents_one_unresolved_per_threat_key
    ON incidents (threat_key) WHERE status <> 'resolved';

CREATE TABLE incident_timeline (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id uuid        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL CHECK (kind IN ('event', 'action', 'status')),
    -- Event id, remediation/alert id, or status name.
    ref_id      text        NOT NULL CHECK (ref_id <> ''),
    details     jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT incident_timeline_entry_key UNIQUE (incident_id, kind, ref_id)
);

CREATE INDEX incident_timeline_by_time ON incident_timeline (incident_id, at);
