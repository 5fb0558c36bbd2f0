//! The limit on requested training runs, counted in PostgreSQL so that trainer replicas share
//! it: admitted up to the limit per hour across replicas (pools), refusals not counted, a
//! lowered limit waiting for enough admissions to age out, and a refund freeing its slot.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use vigil_store::{RUN_ADMISSION_WINDOW, RunAdmission, Store};
use vigil_testkit::TestDatabase;

fn admitted(admission: RunAdmission) -> i64 {
    match admission {
        RunAdmission::Admitted { id } => id,
        refused => panic!("expected an admission, got {refused:?}"),
    }
}

/// Makes every admission `minutes` older.
async fn age(store: &Store, minutes: i32) {
    sqlx::query("UPDATE run_admissions SET admitted_at = admitted_at - make_interval(mins => $1)")
        .bind(minutes)
        .execute(store.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn replicas_share_one_limit_and_refusals_say_when_one_more_fits() {
    let db = TestDatabase::new().await.unwrap();
    // A second pool on the same database stands in for another trainer replica.
    let other = Store::connect(&db.settings()).await.unwrap();
    admitted(db.store().run_admissions().admit(2, "a").await.unwrap());
    age(db.store(), 10).await;
    admitted(other.run_admissions().admit(2, "b").await.unwrap());

    let refused = db.store().run_admissions().admit(2, "c").await.unwrap();
    let RunAdmission::Refused {
        in_window: 2,
        retry_after: Some(wait),
    } = refused
    else {
        panic!("the third request within the hour is refused: {refused:?}");
    };
    // The oldest (10 minutes old) decides: about 50 minutes to go.
    let expected = RUN_ADMISSION_WINDOW - Duration::from_secs(600);
    assert!(
        wait <= expected && wait + Duration::from_secs(30) > expected,
        "{wait:?}"
    );
    assert!(matches!(
        other.run_admissions().admit(2, "d").await.unwrap(),
        RunAdmission::Refused { in_window: 2, .. }
    ));

    // Refusals do not count: once the oldest is an hour old, exactly one more fits.
    age(db.store(), 50).await;
    admitted(other.run_admissions().admit(2, "e").await.unwrap());
    assert!(matches!(
        db.store().run_admissions().admit(2, "f").await.unwrap(),
        RunAdmission::Refused { .. }
    ));
}

#[tokio::test]
async fn a_lowered_limit_waits_and_a_zero_limit_refuses_for_good() {
    let db = TestDatabase::new().await.unwrap();
    let admissions = db.store().run_admissions();
    for _ in 0..3 {
        age(db.store(), 1).await;
        admitted(admissions.admit(3, "ops").await.unwrap());
    }
    // Now 2, 1 and 0 minutes old. Down to 1: all three must age out, so the newest decides.
    let RunAdmission::Refused {
        in_window: 3,
        retry_after: Some(wait),
    } = admissions.admit(1, "ops").await.unwrap()
    else {
        panic!("refused under a lowered limit");
    };
    assert!(
        wait > RUN_ADMISSION_WINDOW - Duration::from_secs(30),
        "{wait:?}"
    );
    // Down to 2: the two oldest must age out, so the second oldest (1 minute) decides.
    let RunAdmission::Refused {
        retry_after: Some(wait),
        ..
    } = admissions.admit(2, "ops").await.unwrap()
    else {
        panic!("refused under a lowered limit");
    };
    let expected = RUN_ADMISSION_WINDOW - Duration::from_secs(60);
    assert!(
        wait <= expected && wait + Duration::from_secs(30) > expected,
        "{wait:?}"
    );
    assert_eq!(
        admissions.admit(0, "ops").await.unwrap(),
        RunAdmission::Refused {
            in_window: 3,
            retry_after: None
        }
    );
}

#[tokio::test]
async fn a_refunded_admission_frees_its_slot() {
    let db = TestDatabase::new().await.unwrap();
    let admissions = db.store().run_admissions();
    let id = admitted(admissions.admit(1, "ops").await.unwrap());
    assert!(matches!(
        admissions.admit(1, "ops").await.unwrap(),
        RunAdmission::Refused { .. }
    ));
    admissions.refund(id).await.unwrap();
    admitted(admissions.admit(1, "ops").await.unwrap());
}
