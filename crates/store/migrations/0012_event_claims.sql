-- Which signal an event id belongs to. The first attempt to run an event claims its id with the
-- signal's content digest before any effect; another signal reusing the id (at the same time,
-- on another replica, or later) finds the claim and is refused with the reason instead of
-- acting under the first one's effect keys or overwriting its workflow.
CREATE TABLE event_claims (
    event_id      TEXT PRIMARY KEY,
    signal_digest TEXT NOT NULL,
    claimed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
