//! Data set imports: labelled files recorded as `dataset` training examples.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use vigil_ml::{LabeledExample, ReadOutcome, read_csv, read_nsl_kdd};
use vigil_store::{ExampleSource, NewExample, Store};

use crate::{Error, Result};

/// File formats a data set can be imported from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetFormat {
    /// Headerless NSL-KDD rows (41 features, label, difficulty).
    NslKdd,
    /// A CSV file with a header row and the named label column.
    Csv { label_column: String },
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Examples read from the file.
    pub read: usize,
    /// Examples stored now; the others were already there.
    pub inserted: u64,
    /// Malformed rows that were skipped.
    pub skipped_rows: usize,
}

/// Reads a labelled file; malformed rows are returned as errors beside the examples.
pub fn read_dataset(path: &Path, format: DatasetFormat) -> Result<ReadOutcome> {
    let unreadable = |reason: String| Error::Dataset {
        path: path.display().to_string(),
        reason,
    };
    let file = File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let reader = BufReader::new(file);
    match format {
        DatasetFormat::NslKdd => Ok(read_nsl_kdd(reader)),
        DatasetFormat::Csv { label_column } => {
            let source = path
                .file_name()
                .map_or_else(|| "csv".to_string(), |n| n.to_string_lossy().into_owned());
            read_csv(reader, &label_column, &source).map_err(|e| unreadable(e.to_string()))
        }
    }
}

/// Records examples as `dataset` training examples keyed by their signal id (a hash of the
/// row), so importing a file twice stores each row once.
pub async fn import_examples(store: &Store, examples: &[LabeledExample]) -> Result<ImportReport> {
    let batch: Vec<NewExample<'_>> = examples
        .iter()
        .filter(|e| !e.signal.id.is_empty())
        .map(|e| NewExample {
            signal: &e.signal,
            label: e.label,
            source: ExampleSource::Dataset,
            source_ref: &e.signal.id,
            weight: e.weight,
        })
        .collect();
    let inserted = store.training().record_batch(&batch).await?;
    Ok(ImportReport {
        read: examples.len(),
        inserted,
        skipped_rows: 0,
    })
}
