//! Readers that turn NSL-KDD rows and generic labelled CSV into [`LabeledExample`]s.
//!
//! Readers take `impl BufRead` / `impl Read`; opening files is the caller's business. A malformed
//! row never aborts the read: it is reported with its 1-based line number in
//! [`ReadOutcome::errors`] and skipped, and the caller decides whether any error is fatal.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use vigil_domain::ThreatSignal;

use crate::error::{Error, Result};
use crate::pipeline::LabeledExample;

/// The 41 NSL-KDD feature names, in file order.
pub const NSL_KDD_COLUMNS: [&str; 41] = [
    "duration",
    "protocol_type",
    "service",
    "flag",
    "src_bytes",
    "dst_bytes",
    "land",
    "wrong_fragment",
    "urgent",
    "hot",
    "num_failed_logins",
    "logged_in",
    "num_compromised",
    "root_shell",
    "su_attempted",
    "num_root",
    "num_file_creations",
    "num_shells",
    "num_access_files",
    "num_outbound_cmds",
    "is_host_login",
    "is_guest_login",
    "count",
    "srv_count",
    "serror_rate",
    "srv_serror_rate",
    "rerror_rate",
    "srv_rerror_rate",
    "same_srv_rate",
    "diff_srv_rate",
    "srv_diff_host_rate",
    "dst_host_count",
    "dst_host_srv_count",
    "dst_host_same_srv_rate",
    "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate",
    "dst_host_srv_diff_host_rate",
    "dst_host_serror_rate",
    "dst_host_srv_serror_rate",
    "dst_host_rerror_rate",
    "dst_host_srv_rerror_rate",
];

/// The sensor name given to signals read from NSL-KDD.
pub const NSL_KDD_SENSOR: &str = "nsl-kdd";

/// A row that was skipped, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

impl RowError {
    /// The row error as the crate's [`Error`].
    pub fn to_error(&self) -> Error {
        Error::MalformedRow {
            line: self.line,
            message: self.message.clone(),
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Examples read, and the rows that were skipped.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    pub examples: Vec<LabeledExample>,
    pub errors: Vec<RowError>,
    /// Columns of a CSV that were not read as inputs, each with the reason.
    pub dropped_columns: Vec<(String, String)>,
}

impl ReadOutcome {
    /// Fails with the first row error, for callers that refuse any malformed row.
    pub fn strict(self) -> Result<Vec<LabeledExample>> {
        match self.errors.first() {
            Some(err) => Err(err.to_error()),
            None => Ok(self.examples),
        }
    }
}

/// Labels that mean "not a threat"; everything else is a threat.
pub fn is_benign_label(label: &str) -> bool {
    let label = label.trim().trim_end_matches('.').to_ascii_lowercase();
    matches!(label.as_str(), "normal" | "benign" | "0" | "false")
}

/// A stable id for a row: a hash of its content, so replays and re-reads agree.
pub fn row_id(prefix: &str, line: &str) -> String {
    let digest = Sha256::digest(line.trim_end().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// Longest NSL-KDD line read, in bytes: real rows are about 150. A longer one (a binary file,
/// a line without an end) is reported and skipped instead of being held in memory whole.
pub const MAX_NSL_KDD_LINE_BYTES: usize = 64 * 1024;

/// Reads NSL-KDD rows (headerless CSV: 41 features, the label, optionally the difficulty).
/// The difficulty column is ignored: it was derived from how many classifiers got the row
/// right, so using it would leak the answer.
///
/// A line that is not UTF-8 or longer than [`MAX_NSL_KDD_LINE_BYTES`] is a row error; a read
/// error of the reader itself ends the read with a row error (it would repeat forever).
pub fn read_nsl_kdd(mut reader: impl BufRead) -> ReadOutcome {
    let mut outcome = ReadOutcome::default();
    let mut buffer = Vec::new();
    let mut line_no = 0u64;
    loop {
        line_no += 1;
        let line = match read_bounded_line(&mut reader, &mut buffer, MAX_NSL_KDD_LINE_BYTES) {
            Ok(Line::End) => break,
            Ok(Line::Complete) => match std::str::from_utf8(&buffer) {
                Ok(line) => line,
                Err(err) => {
                    outcome.errors.push(RowError {
                        line: line_no,
                        message: format!("unreadable line: not UTF-8 ({err})"),
                    });
                    continue;
                }
            },
            Ok(Line::TooLong) => {
                outcome.errors.push(RowError {
                    line: line_no,
                    message: format!(
                        "line longer than {MAX_NSL_KDD_LINE_BYTES} bytes (NSL-KDD rows are about \
                         150): not an NSL-KDD file?"
                    ),
                });
                continue;
            }
            Err(err) => {
                outcome.errors.push(RowError {
                    line: line_no,
                    message: format!("cannot read on: {err}"),
                });
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_nsl_kdd_line(line) {
            Ok(example) => outcome.examples.push(example),
            Err(message) => outcome.errors.push(RowError {
                line: line_no,
                message,
            }),
        }
    }
    outcome
}

/// What [`read_bounded_line`] read.
enum Line {
    /// A line (without its end) is in the buffer.
    Complete,
    /// The line was longer than the limit; it was skipped up to its end.
    TooLong,
    /// Nothing is left.
    End,
}

/// Reads one line into `buffer` (cleared first, line end removed), holding at most `max` bytes
/// of it: the rest of a longer line is read and dropped.
fn read_bounded_line(
    reader: &mut impl BufRead,
    buffer: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buffer.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, found_end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        if !too_long {
            if buffer.len() + chunk.len() > max {
                too_long = true;
                buffer.clear();
            } else {
                buffer.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(found_end);
        reader.consume(used);
        if found_end {
            break;
        }
    }
    if !read_any {
        return Ok(Line::End);
    }
    if too_long {
        return Ok(Line::TooLong);
    }
    if buffer.last() == Some(&b'\r') {
        buffer.pop();
    }
    Ok(Line::Complete)
}

/// Parses one NSL-KDD line into an example.
pub fn parse_nsl_kdd_line(line: &str) -> std::result::Result<LabeledExample, String> {
    let fields: Vec<&str> = line.trim_end().split(',').map(str::trim).collect();
    if fields.len() != 42 && fields.len() != 43 {
        return Err(format!(
            "expected 42 or 43 comma-separated fields (41 features, label, difficulty), got {}",
            fields.len()
        ));
    }
    let label = fields[41].trim_end_matches('.');
    if label.is_empty() {
        return Err("empty label".to_string());
    }
    let mut signal = ThreatSignal::new("network_connection", 0.5, DateTime::<Utc>::UNIX_EPOCH);
    signal.id = row_id("nslkdd", line);
    signal.sensor = NSL_KDD_SENSOR.to_string();
    let mut src_bytes = 0.0;
    let mut dst_bytes = 0.0;
    for (column, (name, raw)) in NSL_KDD_COLUMNS.iter().zip(&fields).enumerate() {
        match *name {
            "protocol_type" => {
                if raw.is_empty() {
                    return Err("empty protocol_type".to_string());
                }
                signal.protocol = Some(raw.to_ascii_lowercase());
            }
            "service" | "flag" => {
                if raw.is_empty() {
                    return Err(format!("empty {name}"));
                }
                signal
                    .categorical
                    .insert((*name).to_string(), (*raw).to_string());
            }
            _ => {
                let value: f64 = raw.parse().map_err(|_| {
                    format!("column {} ({name}): {raw:?} is not a number", column + 1)
                })?;
                if !value.is_finite() || value < 0.0 {
                    return Err(format!(
                        "column {} ({name}): {raw:?} must be a finite, non-negative number",
                        column + 1
                    ));
                }
                match *name {
                    "duration" => signal.duration_seconds = value,
                    "src_bytes" => src_bytes = value,
                    "dst_bytes" => dst_bytes = value,
                    _ => {}
                }
                if *name != "duration" {
                    signal.numeric.insert((*name).to_string(), value);
                }
            }
        }
    }
    signal.bytes = (src_bytes + dst_bytes).min(u64::MAX as f64) as u64;
    let mut example = LabeledExample::new(signal, !is_benign_label(label), NSL_KDD_SENSOR);
    example.class_name = Some(label.to_string());
    Ok(example)
}

/// How a generic CSV is read ([`read_csv_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// The column holding each row's class (matched case-insensitively).
    pub label_column: String,
    /// Class values that are threats; every other value is benign. Empty: `normal`, `benign`,
    /// `0` and `false` (any case, trailing dot allowed) are benign and anything else a threat.
    pub positive: Vec<String>,
    /// Columns never read as inputs, whatever the rule below says.
    pub drop: Vec<String>,
    /// Columns read as inputs even when the rule below would drop them.
    pub keep: Vec<String>,
}

impl CsvOptions {
    /// Options for a CSV whose class is in `label_column`, with every default.
    pub fn new(label_column: &str) -> Self {
        Self {
            label_column: label_column.to_string(),
            positive: Vec::new(),
            drop: Vec::new(),
            keep: Vec::new(),
        }
    }

    fn is_threat(&self, label: &str) -> bool {
        if self.positive.is_empty() {
            !is_benign_label(label)
        } else {
            let label = label.trim();
            self.positive
                .iter()
                .any(|p| p.trim().eq_ignore_ascii_case(label))
        }
    }
}

/// Column names that identify a row, a moment or a host rather than describe the traffic
/// (compared with case, `_`, `-`, `.` and spaces ignored): a model that learns them learns
/// which capture a row came from, not what an attack looks like.
const IDENTIFIER_NAMES: [&str; 26] = [
    "id",
    "rowid",
    "flowid",
    "index",
    "idx",
    "uid",
    "uuid",
    "no",
    "number",
    "timestamp",
    "time",
    "date",
    "datetime",
    "stime",
    "ltime",
    "starttime",
    "endtime",
    "srcip",
    "dstip",
    "sourceip",
    "destinationip",
    "srcaddr",
    "dstaddr",
    "ip",
    "mac",
    "host",
];

/// A text column with at least this many distinct values, and distinct in at least half of
/// the rows, names rows (ids, timestamps, addresses) rather than kinds of traffic.
const MAX_CATEGORY_LEVELS: usize = 100;

fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Why column `c` is not an input, or `None` when it is (the rule in [`read_csv_with`]).
fn identifier_reason(
    header: &str,
    numeric: bool,
    rows: &[(u64, csv::StringRecord)],
    c: usize,
) -> Option<String> {
    if IDENTIFIER_NAMES.contains(&squash(header).as_str()) {
        return Some("its name marks an identifier, a time or an address".to_string());
    }
    let values = || rows.iter().map(|(_, r)| &r[c]).filter(|v| !v.is_empty());
    if numeric {
        // A counter: whole numbers rising by one from row to row.
        let numbers: Vec<f64> = values().filter_map(|v| v.parse::<f64>().ok()).collect();
        let counter = numbers.len() >= 3
            && numbers.windows(2).all(|w| w[1] - w[0] == 1.0)
            && numbers[0].fract() == 0.0;
        return counter.then(|| "its values count the rows".to_string());
    }
    let filled = values().count();
    let distinct = values().collect::<std::collections::HashSet<_>>().len();
    (distinct >= MAX_CATEGORY_LEVELS && distinct * 2 >= filled).then(|| {
        format!("text with {distinct} distinct values in {filled} rows names rows, not kinds")
    })
}

/// Reads a CSV file with a header row ([`read_csv_with`] with the defaults of
/// [`CsvOptions::new`]).
pub fn read_csv(reader: impl Read, label_column: &str, source: &str) -> Result<ReadOutcome> {
    read_csv_with(reader, &CsvOptions::new(label_column), source)
}

/// Reads a CSV file with a header row. Columns whose values are mostly numbers become numeric
/// attributes, the others categorical; a few well-known names (`protocol`, `dst_port`,
/// `bytes`, `duration`, ...) fill the signal's well-known fields. `options.label_column` holds
/// the class, mapped to threat or benign by `options.positive`.
///
/// Identifier-like columns are dropped (listed in [`ReadOutcome::dropped_columns`] with the
/// reason) unless `options.keep` names them: a name that marks an identifier, a time or an
/// address ([`IDENTIFIER_NAMES`]: `id`, `flow_id`, `timestamp`, `src_ip`, ...), a numeric
/// column counting the rows (1, 2, 3, ...), and a text column with at least 100 distinct
/// values that are distinct in at least half of the rows. `options.drop` drops more.
pub fn read_csv_with(reader: impl Read, options: &CsvOptions, source: &str) -> Result<ReadOutcome> {
    let label_column = options.label_column.as_str();
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers: Vec<String> = csv.headers()?.iter().map(str::to_string).collect();
    if headers.is_empty() || headers.iter().all(|h| h.is_empty()) {
        return Err(Error::InvalidData("the CSV has no header row".to_string()));
    }
    let label_index = headers
        .iter()
        .position(|h| h.eq_ignore_ascii_case(label_column))
        .ok_or_else(|| {
            Error::InvalidData(format!(
                "label column {label_column:?} not found; columns are {}",
                headers.join(", ")
            ))
        })?;
    for name in options.drop.iter().chain(&options.keep) {
        if !headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(Error::InvalidData(format!(
                "column {name:?} (to drop or keep) not found; columns are {}",
                headers.join(", ")
            )));
        }
    }

    let mut outcome = ReadOutcome::default();
    let mut rows: Vec<(u64, csv::StringRecord)> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.len() != headers.len() {
                    outcome.errors.push(RowError {
                        line,
                        message: format!(
                            "expected {} fields as in the header, got {}",
                            headers.len(),
                            record.len()
                        ),
                    });
                    continue;
                }
                rows.push((line, record.clone()));
            }
            Ok(false) => break,
            Err(err) => {
                let line = err.position().map_or(0, |p| p.line());
                outcome.errors.push(RowError {
                    line,
                    message: format!("unreadable row: {err}"),
                });
                // A broken UTF-8 or quoting error affects one record; keep reading.
                if matches!(err.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }

    // A column is numeric when most non-empty values parse: a stray word in a numeric column
    // is a bad row, not a reason to treat the whole column as text.
    let numeric: Vec<bool> = (0..headers.len())
        .map(|c| {
            let mut filled = 0usize;
            let mut parsed = 0usize;
            for (_, row) in &rows {
                let value = &row[c];
                if value.is_empty() {
                    continue;
                }
                filled += 1;
                if value.parse::<f64>().is_ok() {
                    parsed += 1;
                }
            }
            filled > 0 && parsed * 2 > filled
        })
        .collect();

    let named = |list: &[String], h: &str| list.iter().any(|n| n.eq_ignore_ascii_case(h));
    let mut inputs = vec![true; headers.len()];
    for (c, header) in headers.iter().enumerate() {
        if c == label_index {
            continue;
        }
        let reason = if header.is_empty() {
            // An attribute needs a name (a signal with an unnamed one is invalid).
            Some("it has no name in the header row".to_string())
        } else if named(&options.drop, header) {
            Some("dropped on request".to_string())
        } else if named(&options.keep, header) {
            None
        } else {
            identifier_reason(header, numeric[c], &rows, c)
        };
        if let Some(reason) = reason {
            inputs[c] = false;
            outcome.dropped_columns.push((header.clone(), reason));
        }
    }

    for (line, row) in rows {
        match csv_row_to_example(
            &headers,
            &numeric,
            &inputs,
            label_index,
            &row,
            options,
            source,
        ) {
            Ok(example) => outcome.examples.push(example),
            Err(message) => outcome.errors.push(RowError { line, message }),
        }
    }
    outcome.errors.sort_by_key(|e| e.line);
    Ok(outcome)
}

fn csv_row_to_example(
    headers: &[String],
    numeric: &[bool],
    inputs: &[bool],
    label_index: usize,
    row: &csv::StringRecord,
    options: &CsvOptions,
    source: &str,
) -> std::result::Result<LabeledExample, String> {
    let label = &row[label_index];
    if label.is_empty() {
        return Err(format!("empty label in column {:?}", headers[label_index]));
    }
    let content: Vec<&str> = row.iter().collect();
    let mut signal = ThreatSignal::new("csv_row", 0.5, DateTime::<Utc>::UNIX_EPOCH);
    signal.id = row_id("csv", &content.join(","));
    signal.sensor = source.to_string();
    let mut numbers = BTreeMap::new();
    let mut categories = BTreeMap::new();
    for (c, header) in headers.iter().enumerate() {
        let value = &row[c];
        if c == label_index || value.is_empty() {
            continue;
        }
        let key = header.to_ascii_lowercase();
        // A row's own id names its signal (so a row read twice is one example), never an input.
        if key == "id" {
            signal.id = value.to_string();
            continue;
        }
        if !inputs[c] {
            continue;
        }
        match key.as_str() {
            "protocol" | "protocol_type" | "proto" => {
                signal.protocol = Some(value.to_ascii_lowercase());
                continue;
            }
            "src_ip" | "source_ip" | "dst_ip" | "destination_ip" => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| format!("column {header:?}: {value:?} is not an IP address"))?;
                if key.starts_with("src") || key.starts_with("source") {
                    signal.source_ip = Some(ip);
                } else {
                    signal.destination_ip = Some(ip);
                }
                continue;
            }
            "src_port" | "source_port" | "dst_port" | "destination_port" => {
                let port: u16 = value
                    .parse()
                    .map_err(|_| format!("column {header:?}: {value:?} is not a port (0-65535)"))?;
                if key.starts_with("src") || key.starts_with("source") {
                    signal.source_port = Some(port);
                } else {
                    signal.destination_port = Some(port);
                }
                continue;
            }
            _ => {}
        }
        if numeric[c] {
            let number: f64 = value
                .parse()
                .map_err(|_| format!("column {header:?}: {value:?} is not a number"))?;
            if !number.is_finite() {
                return Err(format!(
                    "column {header:?}: {value:?} is not a finite number"
                ));
            }
            match key.as_str() {
                "duration" | "duration_seconds" if number >= 0.0 => {
                    signal.duration_seconds = number;
                }
                "bytes" if number >= 0.0 => signal.bytes = number as u64,
                "packets" if number >= 0.0 => signal.packets = number as u64,
                _ => {
                    numbers.insert(header.clone(), number);
                }
            }
        } else {
            categories.insert(header.clone(), value.to_string());
        }
    }
    signal.numeric = numbers;
    signal.categorical = categories;
    let mut example = LabeledExample::new(signal, options.is_threat(label), source);
    example.class_name = Some(label.to_string());
    Ok(example)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = "0,tcp,ftp_data,SF,491,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,2,0.00,0.00,0.00,0.00,1.00,0.00,0.00,150,25,0.17,0.03,0.17,0.00,0.00,0.00,0.05,0.00,normal,20";
    const ATTACK: &str = "0,tcp,private,S0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,123,6,1.00,1.00,0.00,0.00,0.05,0.07,0.00,255,26,0.10,0.05,0.00,0.00,1.00,1.00,0.00,0.00,neptune,19";

    #[test]
    fn nsl_kdd_row_maps_onto_a_threat_signal() {
        let e = parse_nsl_kdd_line(ROW).unwrap();
        assert!(!e.label);
        assert_eq!(e.signal.protocol.as_deref(), Some("tcp"));
        assert_eq!(e.signal.categorical["service"], "ftp_data");
        assert_eq!(e.signal.categorical["flag"], "SF");
        assert_eq!(e.signal.bytes, 491);
        assert_eq!(e.signal.numeric["dst_host_count"], 150.0);
        assert!(!e.signal.numeric.contains_key("difficulty"));
        assert!(
            !e.signal.numeric.values().any(|v| *v == 20.0),
            "difficulty leaked"
        );
        assert_eq!(e.signal.numeric.len(), 37);
        assert!(e.signal.validate().is_ok());
        let a = parse_nsl_kdd_line(ATTACK).unwrap();
        assert!(a.label);
        assert_eq!(a.class_name.as_deref(), Some("neptune"));
        assert_ne!(a.signal.id, e.signal.id);
        assert_eq!(a.signal.id, parse_nsl_kdd_line(ATTACK).unwrap().signal.id);
    }

    #[test]
    fn bad_nsl_kdd_rows_are_reported_with_line_numbers() {
        let text = format!(
            "{ROW}\n0,tcp,http\n{}\n\n{ATTACK}\n{}\n",
            ROW.replacen("491", "abc", 1),
            ROW.replacen("491", "inf", 1)
        );
        let outcome = read_nsl_kdd(text.as_bytes());
        assert_eq!(outcome.examples.len(), 2);
        let lines: Vec<u64> = outcome.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 6]);
        assert!(
            outcome.errors[0].message.contains("fields"),
            "{}",
            outcome.errors[0]
        );
        assert!(
            outcome.errors[1].message.contains("src_bytes"),
            "{}",
            outcome.errors[1]
        );
        assert!(
            outcome.errors[2].message.contains("finite"),
            "{}",
            outcome.errors[2]
        );
        let err = outcome.strict().unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }

    #[test]
    fn csv_infers_column_kinds_and_labels() {
        let text = "dst_port,proto,bytes,rate,user,class\n\
                    443,TCP,1200,0.5,alice,benign\n\
                    22,tcp,40,0.9,root,brute_force\n\
                    80,udp,x,0.1,bob,normal\n\
                    53,udp,10,NaN,bob,0\n\
                    8080,tcp,5,0.3\n";
        let outcome = read_csv(text.as_bytes(), "class", "test.csv").unwrap();
        assert_eq!(outcome.examples.len(), 2, "{:?}", outcome.errors);
        let lines: Vec<u64> = outcome.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5, 6]);
        let first = &outcome.examples[0];
        assert!(!first.label);
        assert_eq!(first.signal.destination_port, Some(443));
        assert_eq!(first.signal.protocol.as_deref(), Some("tcp"));
        assert_eq!(first.signal.bytes, 1200);
        assert_eq!(first.signal.numeric["rate"], 0.5);
        assert_eq!(first.signal.categorical["user"], "alice");
        assert!(outcome.examples[1].label);
    }

    #[test]
    fn csv_drops_identifier_like_columns_by_a_rule_flags_override() {
        // 120 flows: a row counter, a flow id, a timestamp, addresses, and the columns that
        // describe the traffic; the class is multi-class and `--positive` picks the attacks.
        let mut text = String::from("Flow ID,seq,Timestamp,Src IP,pkts,proto,svc,Label\n");
        for i in 0..120 {
            let label = ["BENIGN", "DDoS", "PortScan"][i % 3];
            text.push_str(&format!(
                "f-{i},{},2017-07-07 10:{:02}:{:02},10.0.0.{},{},tcp,{},{label}\n",
                i + 1,
                i / 60,
                i % 60,
                i % 250,
                i % 7,
                ["http", "dns"][i % 2]
            ));
        }
        let options = CsvOptions {
            positive: vec!["ddos".to_string()],
            ..CsvOptions::new("label")
        };
        let outcome = read_csv_with(text.as_bytes(), &options, "flows.csv").unwrap();
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        let dropped: Vec<&str> = outcome
            .dropped_columns
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(dropped, ["Flow ID", "seq", "Timestamp", "Src IP"]);
        assert!(outcome.dropped_columns[1].1.contains("count the rows"));
        let e = &outcome.examples[1];
        assert!(e.label, "DDoS is the positive class");
        assert!(
            !outcome.examples[2].label,
            "PortScan is not named by --positive"
        );
        assert_eq!(e.signal.numeric.keys().collect::<Vec<_>>(), ["pkts"]);
        assert_eq!(e.signal.categorical.keys().collect::<Vec<_>>(), ["svc"]);
        assert_eq!(e.signal.source_ip, None);

        let options = CsvOptions {
            keep: vec!["seq".to_string()],
            drop: vec!["svc".to_string()],
            ..CsvOptions::new("Label")
        };
        let outcome = read_csv_with(text.as_bytes(), &options, "flows.csv").unwrap();
        let e = &outcome.examples[0];
        assert_eq!(e.signal.numeric.keys().collect::<Vec<_>>(), ["pkts", "seq"]);
        assert!(e.signal.categorical.is_empty());
        assert!(
            outcome.examples[2].label,
            "without --positive every non-benign class is a threat"
        );

        let error = read_csv_with(
            text.as_bytes(),
            &CsvOptions {
                keep: vec!["nope".to_string()],
                ..CsvOptions::new("Label")
            },
            "flows.csv",
        )
        .unwrap_err();
        assert!(error.to_string().contains("\"nope\""), "{error}");
    }

    #[test]
    fn csv_without_the_label_column_is_refused() {
        let err = read_csv("a,b\n1,2\n".as_bytes(), "label", "x").unwrap_err();
        assert!(err.to_string().contains("label column"), "{err}");
    }

    #[test]
    fn benign_labels() {
        for l in ["normal", "Normal.", "benign", "0", "false", " BENIGN "] {
            assert!(is_benign_label(l), "{l}");
        }
        for l in ["neptune", "1", "true", "attack"] {
            assert!(!is_benign_label(l), "{l}");
        }
    }
}
