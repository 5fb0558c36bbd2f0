//! The `training_examples` repository against the real PostgreSQL.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use vigil_domain::ThreatSignal;
use vigil_store::{ExampleSource, InsertOutcome, NewExample};
use vigil_testkit::TestDatabase;

fn signal(id: &str, port: u16) -> ThreatSignal {
    let mut signal = ThreatSignal::new("port_scan", 0.8, Utc::now());
    signal.id = id.to_string();
    signal.destination_port = Some(port);
    signal.numeric.insert("count".into(), f64::from(port));
    signal
}

fn example<'a>(
    signal: &'a ThreatSignal,
    label: bool,
    source: ExampleSource,
    source_ref: &'a str,
) -> NewExample<'a> {
    NewExample {
        signal,
        label,
        source,
        source_ref,
        weight: 1.0,
    }
}

#[tokio::test]
async fn recording_the_same_item_twice_stores_it_once() {
    let db = TestDatabase::new().await.unwrap();
    let training = db.store().training();
    let s = signal("evt-1", 22);
    let first = training
        .record(&example(&s, true, ExampleSource::Dataset, "evt-1"))
        .await
        .unwrap();
    assert_eq!(first, InsertOutcome::Inserted);
    // A re-imported row, even with another label, changes nothing.
    let again = training
        .record(&example(&s, false, ExampleSource::Dataset, "evt-1"))
        .await
        .unwrap();
    assert_eq!(again, InsertOutcome::AlreadyPresent);
    let loaded = training.load(100).await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert!(loaded[0].label);
    assert_eq!(loaded[0].signal, s, "the signal round-trips through jsonb");

    // Batches are idempotent too, and count only what they wrote.
    let others: Vec<ThreatSignal> = (0..10).map(|i| signal(&format!("row-{i}"), i)).collect();
    let batch: Vec<NewExample<'_>> = others
        .iter()
        .map(|s| {
            example(
                s,
                s.destination_port.unwrap() % 2 == 0,
                ExampleSource::Dataset,
                &s.id,
            )
        })
        .collect();
    assert_eq!(training.record_batch(&batch).await.unwrap(), 10);
    assert_eq!(training.record_batch(&batch).await.unwrap(), 0);
    assert_eq!(training.load(100).await.unwrap().len(), 11);
    let counts = training.count_by_source().await.unwrap();
    assert_eq!(counts, vec![(ExampleSource::Dataset, 11)]);
}

#[tokio::test]
async fn analyst_feedback_overrides_the_data_set_label_of_the_same_event() {
    let db = TestDatabase::new().await.unwrap();
    let training = db.store().training();
    let wrong = signal("evt-7", 443);
    let right = signal("evt-8", 80);
    for (s, label) in [(&wrong, true), (&right, false)] {
        training
            .record(&example(s, label, ExampleSource::Dataset, &s.id))
            .await
            .unwrap();
    }
    // The analyst says evt-7 was benign, with more weight.
    let feedback = NewExample {
        weight: 2.0,
        ..example(&wrong, false, ExampleSource::Feedback, "evt-7")
    };
    assert!(training.record(&feedback).await.unwrap().is_new());

    let loaded = training.load(100).await.unwrap();
    assert_eq!(loaded.len(), 2, "one example per event: {loaded:?}");
    let evt7 = loaded.iter().find(|e| e.source_ref == "evt-7").unwrap();
    assert!(!evt7.label, "feedback label wins");
    assert_eq!(evt7.source, ExampleSource::Feedback);
    assert!((evt7.weight - 2.0).abs() < f64::EPSILON);
    let evt8 = loaded.iter().find(|e| e.source_ref == "evt-8").unwrap();
    assert_eq!(evt8.source, ExampleSource::Dataset);
    assert!(!evt8.label);

    // Importing the data set again does not bring its label back over the analyst's.
    training
        .record(&example(&wrong, true, ExampleSource::Dataset, "evt-7"))
        .await
        .unwrap();
    let loaded = training.load(100).await.unwrap();
    let label_of = |r: &str| loaded.iter().find(|e| e.source_ref == r).unwrap().label;
    assert!(!label_of("evt-7"), "feedback beats data set");
}

#[tokio::test]
async fn new_examples_are_counted_since_a_time_and_loads_keep_the_newest() {
    let db = TestDatabase::new().await.unwrap();
    let training = db.store().training();
    let s1 = signal("a", 1);
    training
        .record(&example(&s1, true, ExampleSource::Dataset, "a"))
        .await
        .unwrap();
    let between: chrono::DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(db.store().pool())
        .await
        .unwrap();
    let s2 = signal("b", 2);
    let s3 = signal("c", 3);
    for s in [&s2, &s3] {
        training
            .record(&example(s, false, ExampleSource::Dataset, &s.id))
            .await
            .unwrap();
    }
    assert_eq!(training.count_since(between).await.unwrap(), 2);
    assert_eq!(
        training
            .count_since(chrono::DateTime::<Utc>::UNIX_EPOCH)
            .await
            .unwrap(),
        3
    );
    let newest: Vec<String> = training
        .load(2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.source_ref)
        .collect();
    assert_eq!(newest, vec!["b".to_string(), "c".to_string()]);
}

#[tokio::test]
async fn unusable_examples_are_refused_with_the_field_named() {
    let db = TestDatabase::new().await.unwrap();
    let training = db.store().training();
    let s = signal("x", 1);
    let empty_ref = example(&s, true, ExampleSource::Feedback, " ");
    let error = training.record(&empty_ref).await.unwrap_err();
    assert!(error.to_string().contains("source_ref"), "{error}");
    let bad_weight = NewExample {
        weight: f64::NAN,
        ..example(&s, true, ExampleSource::Feedback, "x")
    };
    let error = training.record_batch(&[bad_weight]).await.unwrap_err();
    assert!(error.to_string().contains("weight"), "{error}");
    assert!(training.load(10).await.unwrap().is_empty());
}
