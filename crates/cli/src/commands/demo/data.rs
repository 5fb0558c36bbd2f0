//! Where the NSL-KDD files are, and which of their rows the demo trains on, replays and holds
//! out: never a row vigil has already seen.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use vigil_ml::LabeledExample;
use vigil_store::Store;

use super::DemoArgs;

/// Where NSL-KDD is published.
pub const NSL_KDD_URL: &str = "https://www.unb.ca/cic/datasets/nsl.html";
/// The full training file.
pub const TRAIN_FULL: &str = "KDDTrain+.txt";
/// The 20 % subset of [`TRAIN_FULL`].
pub const TRAIN_20_PERCENT: &str = "KDDTrain+_20Percent.txt";
/// The official test file (records of attack families the training files lack).
pub const TEST: &str = "KDDTest+.txt";

/// The file the first model is trained on: the first of these that exists.
const TRAINING_PREFERENCE: [&str; 3] = [TRAIN_20_PERCENT, TRAIN_FULL, TEST];
/// The file records are replayed and held out from: the first of these that exists. When it is
/// the training file too, the demo replays rows after the ones it trained on.
const REPLAY_PREFERENCE: [&str; 3] = [TEST, TRAIN_FULL, TRAIN_20_PERCENT];

/// Rows parsed and checked against the database at a time while choosing what to replay.
const CANDIDATE_CHUNK: usize = 5_000;

/// The NSL-KDD files the demo uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFiles {
    pub dir: PathBuf,
    /// Where the training rows come from.
    pub training: PathBuf,
    /// Where replayed and held-out rows come from.
    pub replay: PathBuf,
}

impl DataFiles {
    /// Finds the data: `flag` when given, else `VIGIL_DATA_DIR` when set, else
    /// `../shared/data/nsl-kdd` from the current directory, then beside the workspace root.
    /// One error, saying where NSL-KDD is published and which files are expected, when none
    /// of those directories holds an NSL-KDD file.
    pub fn locate(flag: Option<&Path>) -> anyhow::Result<Self> {
        let env = std::env::var_os("VIGIL_DATA_DIR").filter(|dir| !dir.is_empty());
        Self::locate_in(&candidate_dirs(flag, env.map(PathBuf::from)))
    }

    fn locate_in(candidates: &[(PathBuf, &'static str)]) -> anyhow::Result<Self> {
        for (dir, _) in candidates {
            let present = |name: &&str| dir.join(name).is_file();
            let training = TRAINING_PREFERENCE.into_iter().find(present);
            let replay = REPLAY_PREFERENCE.into_iter().find(present);
            if let (Some(training), Some(replay)) = (training, replay) {
                return Ok(Self {
                    dir: dir.clone(),
                    training: dir.join(training),
                    replay: dir.join(replay),
                });
            }
        }
        let looked: Vec<String> = candidates
            .iter()
            .map(|(dir, why)| format!("{} ({why})", dir.display()))
            .collect();
        bail!(
            "no NSL-KDD data in {}.\nvigil demo replays the NSL-KDD intrusion-detection data set, \
             published by the Canadian Institute for Cybersecurity at {NSL_KDD_URL}: put \
             {TRAIN_FULL} and {TRAIN_20_PERCENT} (and {TEST}, when you have it) in one directory \
             and pass it with --data DIR or VIGIL_DATA_DIR=DIR.",
            looked.join(" or ")
        )
    }
}

/// The directories to look in, each with where it came from.
fn candidate_dirs(flag: Option<&Path>, env: Option<PathBuf>) -> Vec<(PathBuf, &'static str)> {
    if let Some(dir) = flag {
        return vec![(dir.to_path_buf(), "from --data")];
    }
    if let Some(dir) = env {
        return vec![(dir, "from VIGIL_DATA_DIR")];
    }
    let relative = Path::new("..").join("shared").join("data").join("nsl-kdd");
    let mut dirs = vec![(relative, "from the current directory")];
    // crates/cli -> the workspace root -> its sibling shared/ (`make demo`, `cargo run`).
    if let Some(beside) = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(3) {
        dirs.push((
            beside.join("shared").join("data").join("nsl-kdd"),
            "beside the workspace root",
        ));
    }
    dirs
}

/// The rows the demo works with, chosen so that none is used twice: training rows are
/// imported; replayed and held-out rows are ones vigil has never seen (no workflow, no
/// training example with their id).
#[derive(Debug, Default)]
pub(super) struct DemoRows {
    pub(super) training: Vec<LabeledExample>,
    pub(super) replay: Vec<LabeledExample>,
    pub(super) holdout: Vec<LabeledExample>,
    /// Rows skipped because vigil had seen them (an earlier demo, an import).
    pub(super) already_known: usize,
    pub(super) malformed: usize,
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    std::io::BufReader::new(file)
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Parses `lines`, counting the malformed ones.
fn parse_rows(lines: &[String], malformed: &mut usize) -> Vec<LabeledExample> {
    let mut rows = Vec::with_capacity(lines.len());
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        match vigil_ml::parse_nsl_kdd_line(line) {
            Ok(example) => rows.push(example),
            Err(_) => *malformed += 1,
        }
    }
    rows
}

pub(super) async fn choose_rows(
    store: &Store,
    files: &DataFiles,
    args: &DemoArgs,
) -> anyhow::Result<DemoRows> {
    let same_file = files.training == files.replay;
    let (training_path, replay_path) = (files.training.clone(), files.replay.clone());
    let train_rows = args.train_rows;
    // Parsing is CPU work: off the async threads, which also run the services.
    let (mut rows, training_ids, replay_lines) = tokio::task::spawn_blocking(move || {
        let mut rows = DemoRows::default();
        let training_lines = read_lines(&training_path)?;
        let mut all_training = parse_rows(&training_lines, &mut rows.malformed);
        let mut seen = HashSet::new();
        all_training.retain(|e| seen.insert(e.signal.id.clone()));
        let replay_lines = if same_file {
            // Train on the first rows, replay from the ones after them.
            let taken = all_training.len().min(train_rows);
            all_training.truncate(taken);
            seen = all_training.iter().map(|e| e.signal.id.clone()).collect();
            training_lines
        } else {
            all_training.truncate(train_rows);
            read_lines(&replay_path)?
        };
        rows.training = all_training;
        anyhow::Ok((rows, seen, replay_lines))
    })
    .await??;

    let wanted = args.rows + args.holdout;
    let mut chosen = training_ids;
    for chunk in replay_lines.chunks(CANDIDATE_CHUNK) {
        if rows.replay.len() + rows.holdout.len() >= wanted {
            break;
        }
        let chunk = chunk.to_vec();
        let (parsed, malformed) = tokio::task::spawn_blocking(move || {
            let mut malformed = 0;
            (parse_rows(&chunk, &mut malformed), malformed)
        })
        .await?;
        if !same_file {
            rows.malformed += malformed;
        }
        let fresh: Vec<LabeledExample> = parsed
            .into_iter()
            .filter(|e| chosen.insert(e.signal.id.clone()))
            .collect();
        let ids: Vec<&str> = fresh.iter().map(|e| e.signal.id.as_str()).collect();
        let known = known_ids(store, &ids).await?;
        for example in fresh {
            if known.contains(&example.signal.id) {
                rows.already_known += 1;
            } else if rows.replay.len() < args.rows {
                rows.replay.push(example);
            } else if rows.holdout.len() < args.holdout {
                rows.holdout.push(example);
            }
        }
    }
    Ok(rows)
}

/// The ids among `ids` that vigil has seen: a workflow processed them, or a training example
/// (imported row, analyst verdict) carries them. Read-only; the demo's own bookkeeping.
async fn known_ids(store: &Store, ids: &[&str]) -> anyhow::Result<HashSet<String>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let known: Vec<String> = sqlx::query_scalar(
        "SELECT c.ref FROM unnest($1::text[]) AS c(ref) \
         WHERE EXISTS (SELECT 1 FROM workflows w WHERE w.event_id = c.ref) \
            OR EXISTS (SELECT 1 FROM training_examples t WHERE t.source_ref = c.ref)",
    )
    .persistent(false)
    .bind(ids)
    .fetch_all(store.pool())
    .await
    .context("cannot check which records vigil has already seen")?;
    Ok(known.into_iter().collect())
}

/// The file name of `path`, for messages.
pub(super) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_environment_and_the_defaults() {
        let flag = Path::new("/from/flag");
        let dirs = candidate_dirs(Some(flag), Some(PathBuf::from("/from/env")));
        assert_eq!(dirs, vec![(PathBuf::from("/from/flag"), "from --data")]);
        let dirs = candidate_dirs(None, Some(PathBuf::from("/from/env")));
        assert_eq!(
            dirs,
            vec![(PathBuf::from("/from/env"), "from VIGIL_DATA_DIR")]
        );
        let dirs = candidate_dirs(None, None);
        assert_eq!(dirs[0].0, Path::new("../shared/data/nsl-kdd"));
        assert!(dirs.len() == 2 && dirs[1].0.ends_with("shared/data/nsl-kdd"));
    }

    #[test]
    fn missing_data_names_the_source_and_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let error = DataFiles::locate_in(&[(dir.path().to_path_buf(), "from --data")])
            .unwrap_err()
            .to_string();
        for expected in [NSL_KDD_URL, TRAIN_FULL, TRAIN_20_PERCENT, TEST, "--data"] {
            assert!(error.contains(expected), "{expected} missing from: {error}");
        }
    }

    #[test]
    fn the_test_file_is_replayed_when_present_else_the_training_files_split() {
        let dir = tempfile::tempdir().unwrap();
        let candidates = [(dir.path().to_path_buf(), "from --data")];
        std::fs::write(dir.path().join(TRAIN_FULL), "").unwrap();
        let files = DataFiles::locate_in(&candidates).unwrap();
        assert_eq!(files.training, files.replay);
        std::fs::write(dir.path().join(TRAIN_20_PERCENT), "").unwrap();
        let files = DataFiles::locate_in(&candidates).unwrap();
        assert_eq!(
            (file_name(&files.training), file_name(&files.replay)),
            (TRAIN_20_PERCENT.to_owned(), TRAIN_FULL.to_owned())
        );
        std::fs::write(dir.path().join(TEST), "").unwrap();
        let files = DataFiles::locate_in(&candidates).unwrap();
        assert_eq!(file_name(&files.replay), TEST);
    }
}
