//! How alike two signals are, for the exploration lane: a distance between signals by their
//! features, and each unusual candidate's nearest neighbours among the others.
//!
//! Every numeric feature of a signal (its `numeric` map, plus `bytes`, `packets` and
//! `duration_seconds`) is replaced by its mid-rank among the fitted signals, 0-1, so a feature
//! with a heavy tail (bytes) weighs no more than a rate; every categorical one (its
//! `categorical` map, plus protocol, destination port and threat type) is equal or not. The
//! distance is the mean over all features of `|rank a - rank b|` (numeric) or `0`/`1`
//! (categorical), 0-1. A feature a signal lacks is 0 (numeric) or empty (categorical).

use std::collections::{BTreeSet, HashMap};

use vigil_domain::ThreatSignal;

/// A signal's place among the fitted ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    ranks: Vec<f64>,
    /// Each categorical feature's value, as its index among the fitted values
    /// ([`UNFITTED`] for a value none of them had).
    categories: Vec<u32>,
}

/// The index of a categorical value none of the fitted signals had: equal to no fitted value.
const UNFITTED: u32 = u32::MAX;

/// The features and the fitted values the ranks are taken among.
#[derive(Debug, Clone, Default)]
pub struct Space {
    numeric: Vec<String>,
    /// Per numeric feature, the fitted signals' values, ascending.
    sorted: Vec<Vec<f64>>,
    categorical: Vec<String>,
    /// Per categorical feature, the index of each value the fitted signals had.
    values: Vec<HashMap<String, u32>>,
}

const BYTES: &str = "bytes";
const PACKETS: &str = "packets";
const DURATION: &str = "duration_seconds";
const PROTOCOL: &str = "protocol";
const PORT: &str = "destination_port";
const THREAT_TYPE: &str = "threat_type";

fn numeric_value(signal: &ThreatSignal, feature: &str) -> f64 {
    let value = match feature {
        BYTES => signal.bytes as f64,
        PACKETS => signal.packets as f64,
        DURATION => signal.duration_seconds,
        _ => signal.numeric.get(feature).copied().unwrap_or(0.0),
    };
    if value.is_finite() { value } else { 0.0 }
}

fn categorical_value(signal: &ThreatSignal, feature: &str) -> String {
    match feature {
        PROTOCOL => signal.protocol.clone().unwrap_or_default(),
        PORT => signal
            .destination_port
            .map(|p| p.to_string())
            .unwrap_or_default(),
        THREAT_TYPE => signal.threat_type.clone(),
        _ => signal.categorical.get(feature).cloned().unwrap_or_default(),
    }
}

impl Space {
    /// The space of `signals`: their features, and their values to rank among.
    pub fn fit(signals: &[&ThreatSignal]) -> Self {
        // The built-in fields come first; a map key with the same name is the same feature.
        let mut numeric: BTreeSet<&str> = [BYTES, PACKETS, DURATION].into();
        let mut categorical: BTreeSet<&str> = [PROTOCOL, PORT, THREAT_TYPE].into();
        for signal in signals {
            numeric.extend(signal.numeric.keys().map(String::as_str));
            categorical.extend(signal.categorical.keys().map(String::as_str));
        }
        let numeric: Vec<String> = numeric.into_iter().map(str::to_owned).collect();
        let sorted = numeric
            .iter()
            .map(|feature| {
                let mut values: Vec<f64> =
                    signals.iter().map(|s| numeric_value(s, feature)).collect();
                values.sort_by(f64::total_cmp);
                values
            })
            .collect();
        let categorical: Vec<String> = categorical.into_iter().map(str::to_owned).collect();
        let values = categorical
            .iter()
            .map(|feature| {
                let mut index = HashMap::new();
                for signal in signals {
                    let next = u32::try_from(index.len()).unwrap_or(UNFITTED - 1);
                    index
                        .entry(categorical_value(signal, feature))
                        .or_insert(next);
                }
                index
            })
            .collect();
        Self {
            numeric,
            sorted,
            categorical,
            values,
        }
    }

    /// Where `signal` lies: each numeric feature's mid-rank among the fitted values (the share
    /// below it plus half the share equal to it), each categorical feature's value.
    pub fn point(&self, signal: &ThreatSignal) -> Point {
        let ranks = self
            .numeric
            .iter()
            .zip(&self.sorted)
            .map(|(feature, sorted)| {
                let value = numeric_value(signal, feature);
                let below = sorted.partition_point(|v| *v < value);
                let up_to = sorted.partition_point(|v| *v <= value);
                (below + up_to) as f64 / 2.0 / sorted.len().max(1) as f64
            })
            .collect();
        let categories = self
            .categorical
            .iter()
            .zip(&self.values)
            .map(|(feature, values)| {
                values
                    .get(&categorical_value(signal, feature))
                    .copied()
                    .unwrap_or(UNFITTED)
            })
            .collect();
        Point { ranks, categories }
    }

    /// The distance between two points of this space, 0 (alike in every feature) to 1.
    pub fn distance(&self, a: &Point, b: &Point) -> f64 {
        let numeric: f64 = a
            .ranks
            .iter()
            .zip(&b.ranks)
            .map(|(x, y)| (x - y).abs())
            .sum();
        let categorical = a
            .categories
            .iter()
            .zip(&b.categories)
            .filter(|(x, y)| x != y)
            .count() as f64;
        let features = (a.ranks.len() + a.categories.len()).max(1) as f64;
        (numeric + categorical) / features
    }
}

/// One point's nearest neighbours among the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbourhood {
    /// The `k` nearest other points (indices into the points given), nearest first.
    pub nearest: Vec<usize>,
    /// 1 minus the mean distance to them, 0-1: how typical the point is of the points around
    /// it (0 without neighbours).
    pub closeness: f64,
}

/// Each point's `k` nearest others (fewer when there are fewer), by [`Space::distance`].
/// Ties go to the lower index. Quadratic in the number of points.
pub fn neighbourhoods(space: &Space, points: &[Point], k: usize) -> Vec<Neighbourhood> {
    let n = points.len();
    let mut distances = vec![0.0_f64; n * n];
    for i in 0..n {
        for j in (i + 1)..n {
            let d = space.distance(&points[i], &points[j]);
            distances[i * n + j] = d;
            distances[j * n + i] = d;
        }
    }
    (0..n)
        .map(|i| {
            let row = &distances[i * n..(i + 1) * n];
            let mut others: Vec<usize> = (0..n).filter(|j| *j != i).collect();
            let k = k.min(others.len());
            if k == 0 {
                return Neighbourhood {
                    nearest: Vec::new(),
                    closeness: 0.0,
                };
            }
            let by_distance = |a: &usize, b: &usize| row[*a].total_cmp(&row[*b]).then(a.cmp(b));
            others.select_nth_unstable_by(k - 1, by_distance);
            others.truncate(k);
            others.sort_by(by_distance);
            let mean = others.iter().map(|j| row[*j]).sum::<f64>() / k as f64;
            Neighbourhood {
                closeness: 1.0 - mean,
                nearest: others,
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn signal(bytes: u64, rate: f64, service: &str) -> ThreatSignal {
        let mut s = ThreatSignal::new("network_connection", 0.5, DateTime::<Utc>::UNIX_EPOCH);
        s.bytes = bytes;
        s.numeric.insert("rate".into(), rate);
        s.categorical.insert("service".into(), service.into());
        s
    }

    #[test]
    fn distance_is_the_mean_of_rank_gaps_and_category_mismatches() {
        let signals = [
            signal(10, 0.1, "ftp"),
            signal(20, 0.2, "ftp"),
            signal(1_000_000, 0.3, "http"),
            signal(40, 0.4, "http"),
        ];
        let refs: Vec<&ThreatSignal> = signals.iter().collect();
        let space = Space::fit(&refs);
        let points: Vec<Point> = signals.iter().map(|s| space.point(s)).collect();
        // Features: bytes, duration_seconds, packets, rate (numeric); destination_port,
        // protocol, service, threat_type (categorical): 8 in all.
        // bytes ranks: 10 -> 0.125, 20 -> 0.375, 40 -> 0.625, 1e6 -> 0.875; rate likewise.
        // Between the first two: bytes 0.25 + rate 0.25, same service: 0.5 / 8.
        assert!((space.distance(&points[0], &points[1]) - 0.5 / 8.0).abs() < 1e-12);
        // A million bytes is one rank above 40 bytes, no farther: 0.25 + 0.25 (rate) + 0.
        assert!((space.distance(&points[3], &points[2]) - 0.5 / 8.0).abs() < 1e-12);
        // Across services: bytes 0.5, rate 0.75 (0.1 is first, 0.4 last), 1 mismatch.
        assert!((space.distance(&points[0], &points[3]) - 2.25 / 8.0).abs() < 1e-12);
        assert_eq!(space.distance(&points[2], &points[2]), 0.0);
    }

    #[test]
    fn a_tight_group_is_closer_than_a_lone_point_and_knows_its_own() {
        let mut signals: Vec<ThreatSignal> = (0..5).map(|i| signal(100 + i, 0.5, "ftp")).collect();
        signals.push(signal(9_999, 0.99, "telnet"));
        let refs: Vec<&ThreatSignal> = signals.iter().collect();
        let space = Space::fit(&refs);
        let points: Vec<Point> = signals.iter().map(|s| space.point(s)).collect();
        let hoods = neighbourhoods(&space, &points, 3);
        assert_eq!(hoods[0].nearest, [1, 2, 3]);
        // From the middle: one step either way, then two (either, as rounding falls).
        assert_eq!(hoods[2].nearest[..2], [1, 3]);
        assert!([0, 4].contains(&hoods[2].nearest[2]));
        assert!(hoods[2].closeness > hoods[5].closeness);
        assert!(!hoods[0].nearest.contains(&0));
        // Fewer points than k: every other point.
        let two = neighbourhoods(&space, &points[..2], 3);
        assert_eq!(two[0].nearest, [1]);
        assert_eq!(neighbourhoods(&space, &points[..1], 3)[0].closeness, 0.0);
    }
}
