//! NATS JetStream topology, typed publish/consume, dead letters and the live config bucket.
