//! `vigil insights`: what the analysts' verdicts say about vigil's verdicts, from the feedback
//! service: accuracy, error rates, the most frequent mistakes, and threshold advice.

use vigil_bus::Bus;
use vigil_feedback::Insights;
use vigil_feedback::insights::Tally;
use vigil_runtime::ConfigArgs;

/// Arguments of `vigil insights`.
#[derive(Debug, clap::Args)]
pub struct InsightsArgs {
    /// Print the service's insights as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `vigil insights`.
pub fn run(args: InsightsArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let insights = runtime.block_on(async {
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(&config)).await?;
        anyhow::Ok(vigil_feedback::insights(&bus).await?)
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&insights)?);
    } else {
        print!("{}", report(&insights));
    }
    Ok(())
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

fn tally_line(key: &str, t: &Tally) -> String {
    format!(
        "  {key:<20} {:>6} {:>8}   {:>9} {:>9}   {:>4} {:>4} {:>4} {:>4}\n",
        t.judged,
        percent(t.accuracy),
        percent(t.false_positive_rate),
        percent(t.false_negative_rate),
        t.true_positives,
        t.false_positives,
        t.true_negatives,
        t.false_negatives
    )
}

/// The insights as text.
fn report(insights: &Insights) -> String {
    if insights.overall.judged == 0 {
        return "no verdicts yet: judge workflows with `vigil feedback submit` (see `vigil \
                review`)\n"
            .to_owned();
    }
    let header = format!(
        "  {:<20} {:>6} {:>8}   {:>9} {:>9}   {:>4} {:>4} {:>4} {:>4}\n",
        "", "judged", "accuracy", "FP rate", "FN rate", "TP", "FP", "TN", "FN"
    );
    let mut out =
        String::from("vigil's verdicts against the analysts' (attack = level high or critical)\n");
    out.push_str(&header);
    out.push_str(&tally_line("overall", &insights.overall));
    out.push_str("\nby threat type\n");
    for g in &insights.by_threat_type {
        out.push_str(&tally_line(&g.key, &g.tally));
    }
    out.push_str("\nby risk level\n");
    for g in &insights.by_risk_level {
        out.push_str(&tally_line(&g.key, &g.tally));
    }
    if !insights.error_patterns.is_empty() {
        out.push_str("\nmost frequent mistakes\n");
        for e in &insights.error_patterns {
            out.push_str(&format!(
                "  {:>4} x  {} rated {}: vigil said {}, the analysts {}\n",
                e.count, e.threat_type, e.risk_level, e.system_label, e.label
            ));
        }
    }
    if !insights.threshold_sweep.is_empty() {
        out.push_str("\nthe recorded scores replayed against other high thresholds\n");
        out.push_str(&format!(
            "  {:>5} {:>8} {:>9}   {:>11} {:>14}\n",
            "high", "accuracy", "balanced", "FP avoided", "threats missed"
        ));
        for o in &insights.threshold_sweep {
            out.push_str(&format!(
                "  {:>5.2} {:>8} {:>9}   {:>11} {:>14}\n",
                o.high,
                percent(o.tally.accuracy),
                percent(o.balanced_accuracy),
                o.false_positives_avoided,
                o.threats_missed
            ));
        }
    }
    if !insights.recommendations.is_empty() {
        out.push_str("\nrecommendations\n");
        for r in &insights.recommendations {
            out.push_str(&format!("  - {} ({})\n", r.message, r.setting));
        }
    }
    out
}
