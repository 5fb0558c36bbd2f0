//! `vigil review`: the unjudged workflows an analyst should judge next, from the feedback
//! service's review queue, each with why it was picked.

use vigil_bus::Bus;
use vigil_feedback::ReviewItem;
use vigil_feedback::review::{DEFAULT_LIMIT, MAX_LIMIT};
use vigil_runtime::ConfigArgs;

/// Arguments of `vigil review`.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// At most this many workflows (1-1000).
    #[arg(long, default_value_t = DEFAULT_LIMIT as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT as u64))]
    pub limit: u64,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `vigil review`.
pub fn run(args: ReviewArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let limit = usize::try_from(args.limit)?;
    let items = runtime.block_on(async {
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(&config)).await?;
        anyhow::Ok(vigil_feedback::review(&bus, limit).await?)
    })?;
    if args.json {
        for item in &items {
            println!("{}", serde_json::to_string(item)?);
        }
        return Ok(());
    }
    if items.is_empty() {
        println!("nothing to review: every recent workflow has a verdict");
        return Ok(());
    }
    print!("{}", table(&items));
    Ok(())
}

/// The items as a table, each followed by its reasons.
fn table(items: &[ReviewItem]) -> String {
    let mut out = format!(
        "{:>3}  {:>5}  {:<36}  {:<20}  {:<8}  {:>5}  {:>5}  pattern\n",
        "#", "score", "workflow", "threat type", "level", "risk", "p"
    );
    for (rank, item) in items.iter().enumerate() {
        let probability = item
            .probability
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.2}"));
        out.push_str(&format!(
            "{:>3}  {:>5.3}  {:<36}  {:<20}  {:<8}  {:>5.1}  {:>5}  {}\n",
            rank + 1,
            item.score,
            item.workflow_id,
            item.threat_type,
            item.risk_level.as_str(),
            item.risk_score,
            probability,
            item.pattern
        ));
        for reason in &item.reasons {
            out.push_str(&format!("{:>12}- {reason}\n", ""));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        review: ReviewArgs,
    }

    #[test]
    fn the_limit_defaults_and_is_bounded() {
        let cli = Cli::try_parse_from(["review"]).unwrap();
        assert_eq!(cli.review.limit, DEFAULT_LIMIT as u64);
        assert!(!cli.review.json);
        let cli = Cli::try_parse_from(["review", "--limit", "5", "--json"]).unwrap();
        assert_eq!(cli.review.limit, 5);
        assert!(cli.review.json);
        assert!(Cli::try_parse_from(["review", "--limit", "0"]).is_err());
        assert!(Cli::try_parse_from(["review", "--limit", "1001"]).is_err());
    }
}
