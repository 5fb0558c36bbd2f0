//! Threat assessment, alert routing, remediation and incidents.
