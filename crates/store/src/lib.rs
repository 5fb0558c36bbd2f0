//! PostgreSQL pool, migrations and repositories.
