//! One module per subcommand.

pub mod evaluate;
pub mod train;
