//! The nftables executor with `apply = true`, against stand-in `nft` programs that record their
//! arguments (the real one needs root). One test function, so no other thread forks while the
//! scripts are written.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use vigil_config::{ExecutorKind, NftablesSettings, RemediationSettings};
use vigil_domain::{ActionStatus, Assessment, Severity, ThreatSignal};
use vigil_soar::Remediator;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn remediator(nft: &Path) -> Remediator {
    Remediator::from_settings(RemediationSettings {
        executor: ExecutorKind::Nftables,
        nftables: NftablesSettings {
            apply: true,
            nft_path: nft.display().to_string(),
            ..NftablesSettings::default()
        },
        ..RemediationSettings::default()
    })
    .unwrap()
}

fn signal() -> ThreatSignal {
    let mut s = ThreatSignal::new("port_scan", 0.9, DateTime::<Utc>::UNIX_EPOCH);
    s.source_ip = Some("203.0.113.7".parse().unwrap());
    s
}

fn assessment() -> Assessment {
    Assessment {
        threat_id: "t".into(),
        risk_score: 9.2,
        risk_level: Severity::Critical,
        confidence: 0.9,
        rule_score: 9.2,
        ml_score: None,
        factors: Vec::new(),
        assessed_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

#[tokio::test]
async fn applying_runs_nft_and_undo_replays_the_stored_command() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let recorder = script(
        dir.path(),
        "nft-ok",
        &format!(
            "for a in \"$@\"; do printf '%s|' \"$a\" >> '{}'; done; echo >> '{}'",
            log.display(),
            log.display()
        ),
    );
    let failing = script(
        dir.path(),
        "nft-fail",
        "echo 'Error: No such table: inet vigil' >&2; exit 1",
    );
    let gone = script(
        dir.path(),
        "nft-gone",
        "echo 'Error: Could not process rule: No such file or directory' >&2; exit 1",
    );

    // Apply, then undo through the same executor.
    let r = remediator(&recorder);
    let now = Utc::now();
    let out = r.remediate("ev-1", &signal(), &assessment(), now).await;
    let action = &out.actions[0];
    assert_eq!(action.status, ActionStatus::Applied, "{action:?}");
    assert_eq!(action.executor, "nftables");
    assert_eq!(
        action.expires_at,
        Some(now + chrono::Duration::seconds(3600))
    );
    r.undo(action).await.unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "add|element|inet|vigil|blocklist|{ 203.0.113.7 timeout 3600s }|",
            "delete|element|inet|vigil|blocklist|{ 203.0.113.7 }|",
        ]
    );

    // A failing nft makes a failed action that says why.
    let r = remediator(&failing);
    let out = r.remediate("ev-2", &signal(), &assessment(), now).await;
    let action = &out.actions[0];
    assert_eq!(action.status, ActionStatus::Failed);
    let error = action.details["error"].as_str().unwrap();
    assert!(error.contains("No such table"), "{error}");
    assert!(
        action.undo["commands"][0]
            .as_str()
            .unwrap()
            .starts_with("nft delete element")
    );

    // Undoing an element that already expired is not an error; other failures are.
    let mut applied = out.actions[0].clone();
    applied.status = ActionStatus::Applied;
    remediator(&gone).undo(&applied).await.unwrap();
    let err = remediator(&failing).undo(&applied).await.unwrap_err();
    assert!(err.to_string().contains("No such table"), "{err}");

    // With apply off, an applied action cannot be silently "undone".
    let off = Remediator::from_settings(RemediationSettings {
        executor: ExecutorKind::Nftables,
        ..RemediationSettings::default()
    })
    .unwrap();
    let err = off.undo(&applied).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("nft delete element inet vigil blocklist { 203.0.113.7 }"),
        "{err}"
    );

    // A missing program is reported, not panicked on.
    let r = remediator(&dir.path().join("no-such-nft"));
    let out = r.remediate("ev-3", &signal(), &assessment(), now).await;
    assert_eq!(out.actions[0].status, ActionStatus::Failed);
    assert!(
        out.actions[0].details["error"]
            .as_str()
            .unwrap()
            .contains("cannot run")
    );
}
