//! Layered settings for every vigil service: defaults, then a TOML file, then `VIGIL_*`
//! environment variables (`__` separates nesting levels), then command-line flags; the result is
//! validated before any service starts.

mod feedback;
mod health;
mod loader;
mod secret;
mod settings;
mod soar;

pub use feedback::FeedbackSettings;
pub use health::HealthSettings;
pub use loader::{Config, Error, Result, Sources};
pub use secret::{Secret, redact_url_password};
pub use settings::*;
pub use soar::*;
