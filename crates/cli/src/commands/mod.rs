//! One module per subcommand.

pub mod config;
pub mod demo;
pub mod evaluate;
pub mod feedback;
pub mod insights;
pub mod models;
pub mod predict;
pub mod probe;
pub mod publish;
pub mod remediation;
pub mod replay;
pub mod review;
pub mod status;
pub mod train;
pub mod up;
