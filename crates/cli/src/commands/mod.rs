//! One module per subcommand.

pub mod config;
pub mod demo;
pub mod evaluate;
pub mod feedback;
pub mod models;
pub mod predict;
pub mod publish;
pub mod remediation;
pub mod replay;
pub mod train;
pub mod up;
