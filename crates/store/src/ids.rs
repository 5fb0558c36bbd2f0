//! Domain ids are strings; the schema keeps them as `uuid`.

use uuid::Uuid;
use vigil_domain::ValidationError;

use crate::Result;

/// Parses a domain id into the UUID the schema stores, naming the field when it is not one.
pub(crate) fn parse_uuid(field: &'static str, id: &str) -> Result<Uuid> {
    Uuid::parse_str(id.trim()).map_err(|e| {
        ValidationError::Invalid {
            field,
            reason: format!("{id:?} is not a UUID: {e}"),
        }
        .into()
    })
}
