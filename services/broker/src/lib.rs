//! The vigil broker service.
