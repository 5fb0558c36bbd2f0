//! The vigil trainer service.
