//! Property tests of the data readers (NSL-KDD and labelled CSV), which read files people
//! hand to `vigil train` and the trainer: whatever the bytes, a read never panics, and every
//! example it yields is a valid signal (finite numbers, no NaN or infinities); everything else
//! is a row error with its line number.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, Cursor, Read};

use proptest::prelude::*;
use vigil_ml::{MAX_NSL_KDD_LINE_BYTES, NSL_KDD_COLUMNS, ReadOutcome, read_csv, read_nsl_kdd};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

const ROW: &str = "0,tcp,ftp_data,SF,491,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,2,0.00,0.00,0.00,0.00,1.00,0.00,0.00,150,25,0.17,0.03,0.17,0.00,0.00,0.00,0.05,0.00,normal,20";

fn holds(outcome: &ReadOutcome) {
    for example in &outcome.examples {
        example.signal.validate().unwrap();
        assert!(example.signal.numeric.values().all(|v| v.is_finite()));
        assert!(example.signal.duration_seconds.is_finite());
    }
    for error in &outcome.errors {
        assert!(!error.message.is_empty());
    }
}

/// A field as a file might hold it: numbers, words, non-finite spellings, junk.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "NaN",
            "nan",
            "inf",
            "-inf",
            "Infinity",
            "1e999",
            "-1",
            "",
            "tcp",
            "http",
            "SF",
            "normal",
            "neptune",
            "\"quoted, comma\"",
            "\"",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// A row of NSL-KDD's shape (42 fields) with one field replaced.
fn mutated_row() -> impl Strategy<Value = String> {
    (0..43usize, field()).prop_map(|(i, value)| {
        let mut fields: Vec<String> = ROW.split(',').map(str::to_owned).collect();
        if i < fields.len() {
            fields[i] = value;
        }
        fields.join(",")
    })
}

/// A header (with a `label` column) and rows mostly of its width.
fn csv_table() -> impl Strategy<Value = (Vec<String>, Vec<Vec<String>>)> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "bytes", "duration", "src_ip", "dst_port", "protocol", "count", "id", "",
            ])
            .prop_map(str::to_owned),
            "[a-z]{1,6}",
        ],
        1..6,
    )
    .prop_flat_map(|mut header| {
        header.push("label".to_owned());
        let width = header.len();
        let rows = prop::collection::vec(
            prop_oneof![
                4 => prop::collection::vec(field(), width),
                1 => prop::collection::vec(field(), 0..width + 2),
            ],
            0..8,
        );
        (Just(header), rows)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nsl_kdd_reads_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        holds(&read_nsl_kdd(Cursor::new(bytes)));
    }

    #[test]
    fn nsl_kdd_refuses_bad_fields_by_line(rows in prop::collection::vec(mutated_row(), 1..6)) {
        let text = rows.join("\n");
        let outcome = read_nsl_kdd(Cursor::new(text.into_bytes()));
        holds(&outcome);
        for row in &rows {
            // Every column but protocol_type, service and flag is a number.
            let non_finite = row.split(',').enumerate().any(|(i, f)| {
                i < NSL_KDD_COLUMNS.len()
                    && !(1..=3).contains(&i)
                    && f.trim().parse::<f64>().is_ok_and(|v| !v.is_finite())
            });
            if non_finite {
                prop_assert!(vigil_ml::parse_nsl_kdd_line(row).is_err(), "{}", row);
            }
        }
    }

    #[test]
    fn csv_reads_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        match read_csv(Cursor::new(bytes), "label", "props") {
            Ok(outcome) => holds(&outcome),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    #[test]
    fn csv_refuses_non_finite_and_bad_values_by_row((header, rows) in csv_table()) {
        let mut text = header.join(",");
        text.push('\n');
        for row in &rows {
            text.push_str(&row.join(","));
            text.push('\n');
        }
        match read_csv(Cursor::new(text.into_bytes()), "label", "props") {
            Ok(outcome) => holds(&outcome),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

#[test]
fn invalid_utf8_is_a_row_error_and_the_read_goes_on() {
    let mut bytes = ROW.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n\xff\xfe,tcp\n");
    bytes.extend_from_slice(ROW.as_bytes());
    let outcome = read_nsl_kdd(Cursor::new(bytes.clone()));
    assert_eq!(outcome.examples.len(), 2);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.errors[0].line, 2);
    assert!(
        outcome.errors[0].message.contains("UTF-8"),
        "{:?}",
        outcome.errors
    );

    let csv = [b"a,label\n1,normal\n\xff,attack\n2,normal\n".as_slice()].concat();
    let outcome = read_csv(Cursor::new(csv), "label", "props").unwrap();
    assert_eq!(outcome.examples.len(), 2);
    assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
}

/// A reader whose every read fails (a directory opened as a file does this).
struct Broken;

impl Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("Is a directory"))
    }
}

impl BufRead for Broken {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        Err(std::io::Error::other("Is a directory"))
    }
    fn consume(&mut self, _: usize) {}
}

#[test]
fn a_reader_that_always_fails_ends_the_read_with_one_error() {
    // It used to loop forever, one row error per attempt, until memory ran out.
    let outcome = read_nsl_kdd(Broken);
    assert!(outcome.examples.is_empty());
    assert_eq!(outcome.errors.len(), 1);
    assert!(outcome.errors[0].message.contains("Is a directory"));
    assert!(read_csv(Broken, "label", "props").is_err());
}

#[test]
fn an_endless_line_is_skipped_without_holding_it() {
    // 8 MB without a line end, then a good row: the long line is one error, the row is read.
    let long = std::io::repeat(b'7').take(8 * 1024 * 1024);
    let rest = Cursor::new(format!("\n{ROW}\n").into_bytes());
    let reader = std::io::BufReader::new(long.chain(rest));
    let outcome = read_nsl_kdd(reader);
    assert_eq!(outcome.examples.len(), 1);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.errors[0].line, 1);
    assert!(
        outcome.errors[0]
            .message
            .contains(&MAX_NSL_KDD_LINE_BYTES.to_string()),
        "{:?}",
        outcome.errors
    );
}

#[test]
fn a_column_without_a_name_is_dropped_with_the_reason() {
    // Found by `csv_refuses_non_finite_and_bad_values_by_row`: it became an attribute named "",
    // and so an example whose signal is invalid.
    let outcome = read_csv(
        Cursor::new(b",bytes,label\n0,5,normal\n".to_vec()),
        "label",
        "props",
    )
    .unwrap();
    assert_eq!(outcome.examples.len(), 1);
    holds(&outcome);
    assert!(
        outcome
            .dropped_columns
            .iter()
            .any(|(name, reason)| name.is_empty() && reason.contains("no name")),
        "{:?}",
        outcome.dropped_columns
    );
}
