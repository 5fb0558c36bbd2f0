//! Data pipeline, feature engineering, models, ensemble and evaluation (no I/O).
