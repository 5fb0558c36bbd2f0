//! NSL-KDD fixtures: where the files are, a cached read of the 20 % training file, and small
//! subsets written to files of their own for code that reads a path.
//!
//! The directory is `VIGIL_DATA_DIR` when set, else `../shared/data/nsl-kdd` beside the
//! workspace root (the dev tree and CI's clone both have it there).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vigil_ml::{LabeledExample, read_nsl_kdd};

/// The full training file: 125,973 labelled connection records.
pub const TRAIN_FULL: &str = "KDDTrain+.txt";
/// The 25,192-row subset of [`TRAIN_FULL`] the tests use.
pub const TRAIN_20_PERCENT: &str = "KDDTrain+_20Percent.txt";

/// The directory holding the NSL-KDD files (it is not checked; [`file`] is).
pub fn data_dir() -> PathBuf {
    match std::env::var_os("VIGIL_DATA_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        // crates/testkit -> the workspace root -> its sibling shared/.
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nsl-kdd"),
    }
}

/// The path of one NSL-KDD file; panics, saying where to get it, when it is not there.
pub fn file(name: &str) -> PathBuf {
    let dir = data_dir();
    let path = dir.join(name);
    if !path.is_file() {
        panic!(
            "NSL-KDD file {name} not found at {}. The tests read {TRAIN_20_PERCENT} (and \
             {TRAIN_FULL}) from VIGIL_DATA_DIR, else from ../shared/data/nsl-kdd beside the \
             workspace root. NSL-KDD is published by the Canadian Institute for Cybersecurity \
             (University of New Brunswick): https://www.unb.ca/cic/datasets/nsl.html; put \
             {TRAIN_20_PERCENT} there or set VIGIL_DATA_DIR to the directory holding it.",
            path.display()
        );
    }
    path
}

/// The path of `KDDTrain+_20Percent.txt`.
pub fn train_20_percent() -> PathBuf {
    file(TRAIN_20_PERCENT)
}

/// Every row of `KDDTrain+_20Percent.txt` as labelled examples, read once per test process.
pub fn examples() -> &'static [LabeledExample] {
    static EXAMPLES: OnceLock<Vec<LabeledExample>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let path = train_20_percent();
        let reader = File::open(&path)
            .map(BufReader::new)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let outcome = read_nsl_kdd(reader);
        assert!(
            outcome.errors.is_empty(),
            "{} has malformed rows, e.g. {:?}",
            path.display(),
            outcome.errors.first()
        );
        outcome.examples
    })
}

/// The first `rows` lines of `KDDTrain+_20Percent.txt`, as they are in the file.
pub fn lines(rows: usize) -> Vec<String> {
    let path = train_20_percent();
    let reader = File::open(&path)
        .map(BufReader::new)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<String> = reader
        .lines()
        .take(rows)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(
        lines.len(),
        rows,
        "{} is shorter than {rows} rows",
        path.display()
    );
    lines
}

/// Writes the first `rows` rows of `KDDTrain+_20Percent.txt` to `subset.txt` in `dir` and
/// returns its path: a small training file for code that reads one.
pub fn subset(dir: &Path, rows: usize) -> PathBuf {
    write_lines(&dir.join("subset.txt"), &lines(rows))
}

/// Writes `lines` to `path`, one per line, and returns the path.
pub fn write_lines(path: &Path, lines: &[String]) -> PathBuf {
    let mut out =
        File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    for line in lines {
        writeln!(out, "{line}").unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    path.to_owned()
}
