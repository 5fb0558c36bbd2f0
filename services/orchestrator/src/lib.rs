//! The vigil orchestrator service.
