use thiserror::Error;

/// A value that breaks a domain rule; the message says which field and why.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ValidationError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} must be within {min}..={max}, got {value}")]
    OutOfRange {
        field: &'static str,
        min: f64,
        max: f64,
        value: f64,
    },
    #[error("{field} must be a finite number, got {value}")]
    NotFinite { field: &'static str, value: f64 },
    #[error("{field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Result of a domain validation.
pub type Result<T, E = ValidationError> = std::result::Result<T, E>;

/// Refuses an empty (or whitespace-only) string.
pub fn require_non_empty(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(ValidationError::Empty { field });
    }
    Ok(())
}

/// Refuses NaN, infinity and values outside `min..=max`.
pub fn require_in_range(field: &'static str, value: f64, min: f64, max: f64) -> Result<()> {
    if !value.is_finite() {
        return Err(ValidationError::NotFinite { field, value });
    }
    if value < min || value > max {
        return Err(ValidationError::OutOfRange {
            field,
            min,
            max,
            value,
        });
    }
    Ok(())
}
