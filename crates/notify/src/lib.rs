//! Alert channel senders: Slack, PagerDuty, Opsgenie, Teams, email, webhook.
