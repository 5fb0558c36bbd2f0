//! The vigil predictor service.
