//! The fault test: while signals flow at a steady rate, every service is killed (`kill -9`) in
//! turn and restarted, an orchestrator dies while a firewall call and while an alert is in
//! flight, a second orchestrator runs beside the first, one is stopped with SIGTERM under load,
//! NATS is killed and restarted, and PostgreSQL goes away and comes back. Effects are counted
//! where they land, at a firewall API and a pager on loopback that apply each idempotency key
//! once (as real ones do), and the test prints:
//!
//! published, workflows, alerts delivered, remediations executed, duplicates, dead letters, lost
//!
//! It passes only with duplicates = 0, lost = 0 and no dead letter.
//!
//! Every service runs as its own `vigil up --only <service>` process. NATS is a server of the
//! test's own, so killing it touches no other test. PostgreSQL serves the other tests too, so
//! it is not restarted: the services reach it through a proxy that cuts every connection and
//! refuses new ones for a while, which is what a restart looks like from their side.
//!
//! A second test runs the event path on a three-node NATS cluster with stream replicas 3 and
//! kills the node leading the work stream mid-stream.
//!
//! Every wait is on observed state (workflows committed, calls held at a receiver, a process
//! gone), never on how fast this machine is.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PATIENCE, Up};
use prost::Message as _;
use vigil_bus::StreamKind;
use vigil_proto::v1;
use vigil_testkit::{
    EffectCall, EffectReceiver, Hold, NatsServer, Sandbox, TcpProxy, eventually, free_port,
};

/// Signals published per second, steadily, for as long as the faults go on.
const RATE_PER_SECOND: u64 = 20;

/// Workflows to see committed between two faults: the system is working again.
const BETWEEN_FAULTS: i64 = 15;

/// How long PostgreSQL stays away.
const OUTAGE: Duration = Duration::from_secs(3);

/// The settings every process of one deployment runs with.
fn deployment(firewall: &EffectReceiver, pager: &EffectReceiver, extra: &[String]) -> Vec<String> {
    let mut sets = vec![
        // A killed attempt's signal comes back soon.
        "streams.ack_wait_secs=3".to_string(),
        "soar.remediation.executor=\"webhook\"".to_string(),
        format!(
            "soar.remediation.webhook.url=\"{}\"",
            firewall.url("/v1/actions")
        ),
        "soar.remediation.webhook.timeout_ms=10000".to_string(),
        "soar.remediation.max_actions_per_minute=1000000".to_string(),
        // Every signal's source is its own, in a range remediation may act on.
        "soar.remediation.internal_targets=[\"10.201.0.0/16\"]".to_string(),
        "soar.assessment.known_bad=[\"10.201.0.0/16\"]".to_string(),
        format!("soar.channels.webhook.url=\"{}\"", pager.url("/hook")),
        "soar.channels.webhook.secret=\"0123456789abcdef0123\"".to_string(),
        "soar.routing.rules.critical=[\"webhook\"]".to_string(),
        "soar.routing.rules.high=[\"webhook\"]".to_string(),
        "soar.routing.rate_limits.webhook.per_minute=0".to_string(),
        "soar.routing.rate_limits.webhook.burst=0".to_string(),
        // The trainer runs, but only when asked.
        "trainer.schedule=\"0 0 0 1 1 *\"".to_string(),
        "trainer.min_new_examples=1000000000".to_string(),
    ];
    sets.extend_from_slice(extra);
    sets
}

/// Signal `i`: critical, from a source of its own (one threat each, never grouped), so it
/// makes one page and one firewall block.
fn signal(i: u64) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: format!("fault-{i}"),
        threat_type: "port_scan".into(),
        source_ip: format!("10.201.{}.{}", (i / 250) % 250, 1 + i % 250),
        destination_ip: "192.0.2.10".into(),
        destination_port: 22,
        protocol: "tcp".into(),
        confidence: 0.95,
        severity: v1::Severity::Critical as i32,
        sensor: "faults".into(),
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    }
}

/// A sensor publishing [`RATE_PER_SECOND`] signals until stopped. A publish the server did not
/// acknowledge (NATS down, a reconnect) is sent again with the same message id until it is, so
/// `published` holds exactly the signals JetStream stored.
struct Sensor {
    published: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sensor {
    fn start(sandbox: &Sandbox) -> Self {
        let published = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let js = sandbox.bus().jetstream().clone();
        let subject = sandbox.bus().topology().ingest_subject("faults").unwrap();
        let task = {
            let published = published.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ticks =
                    tokio::time::interval(Duration::from_millis(1000 / RATE_PER_SECOND));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    ticks.tick().await;
                    let s = signal(i);
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", s.id.as_str());
                    loop {
                        let sent = js
                            .publish_with_headers(
                                subject.clone(),
                                headers.clone(),
                                s.encode_to_vec().into(),
                            )
                            .await;
                        if let Ok(ack) = sent
                            && ack.await.is_ok()
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    published.lock().unwrap().push(s.id.clone());
                    i += 1;
                }
            })
        };
        Self {
            published,
            stop,
            task,
        }
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.published.lock().unwrap().clone()
    }
}

/// The committed workflows.
async fn workflows(sandbox: &Sandbox) -> i64 {
    sandbox
        .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
        .await
}

/// Waits until `n` more workflows are committed than `since`; returns the new count.
async fn progress(sandbox: &Sandbox, since: i64, n: i64, what: &str) -> i64 {
    eventually(PATIENCE, &format!("{n} workflows after {what}"), || async {
        let now = workflows(sandbox).await;
        if now >= since + n {
            Ok(now)
        } else {
            Err(now - since)
        }
    })
    .await
}

/// Starts one service as its own process and waits until it reports ready.
async fn service(sandbox: &Sandbox, sets: &[String], name: &str, grpc: SocketAddr) -> Up {
    let up = Up::start_only(sandbox, sets, &[name], grpc).await;
    eventually(PATIENCE, &format!("{name} ready"), || async {
        let (status, body) = up.readyz().await;
        if status == 200 { Ok(()) } else { Err(body) }
    })
    .await;
    up
}

/// Every signal published has a committed workflow, nothing is left on the ingest or work
/// streams, and no alert or remediation is waiting for an outcome.
async fn settled(sandbox: &Sandbox, published: usize) {
    let published = i64::try_from(published).unwrap();
    eventually(PATIENCE, "every published signal handled", || async {
        let done = sandbox
            .count("SELECT count(DISTINCT event_id) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        let ingest = sandbox.stream_messages(StreamKind::Ingest).await;
        let work = sandbox.stream_messages(StreamKind::Work).await;
        let pending = sandbox
            .count(
                "SELECT (SELECT count(*) FROM alerts WHERE status = 'pending') \
                      + (SELECT count(*) FROM remediations WHERE status = 'pending')",
            )
            .await;
        if done == published && ingest == 0 && work == 0 && pending == 0 {
            Ok(())
        } else {
            Err(format!(
                "{done} of {published} done, {ingest} on ingest, {work} queued, {pending} effects pending"
            ))
        }
    })
    .await;
}

/// The `host:port` of a `postgres://user@host:port/db` URL (which names its port).
fn server_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split('/').next().unwrap_or_default();
    let server = authority.rsplit('@').next().unwrap_or_default();
    assert!(
        server.contains(':'),
        "the test database URL names its port: {url}"
    );
    server.to_owned()
}

/// The counts the fault tests print, and what they pass on.
#[derive(Debug)]
struct Counts {
    published: usize,
    workflows: i64,
    alerts_delivered: usize,
    remediations_executed: usize,
    duplicates: usize,
    dead_letters: u64,
    lost: usize,
}

impl Counts {
    async fn of(
        sandbox: &Sandbox,
        published: &[String],
        firewall: &EffectReceiver,
        pager: &EffectReceiver,
    ) -> Self {
        let rows = sandbox.count("SELECT count(*) FROM workflows").await;
        let distinct = sandbox
            .count("SELECT count(DISTINCT event_id) FROM workflows")
            .await;
        let event_of = |call: &EffectCall| call.body["event_id"].as_str().unwrap_or("").to_owned();
        let paged: BTreeSet<String> = pager
            .calls()
            .iter()
            .filter(|c| c.applied)
            .map(event_of)
            .collect();
        let blocked: BTreeSet<String> = firewall
            .calls()
            .iter()
            .filter(|c| c.applied)
            .map(event_of)
            .collect();
        let handled: BTreeSet<String> = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT event_id FROM workflows WHERE status = 'SUCCESS'",
        )
        .fetch_all(sandbox.store().pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
        // A signal is lost when its workflow, its page or its block never happened.
        let lost = published
            .iter()
            .filter(|id| !handled.contains(*id) || !paged.contains(*id) || !blocked.contains(*id))
            .count();
        let duplicates = usize::try_from(rows - distinct).unwrap()
            + pager.duplicates(|c| event_of(c))
            + firewall.duplicates(|c| format!("{}/{}", c.body["event_id"], c.body["target"]));
        Self {
            published: published.len(),
            workflows: distinct,
            alerts_delivered: pager.applied_keys().len(),
            remediations_executed: firewall.applied_keys().len(),
            duplicates,
            dead_letters: sandbox.stream_messages(StreamKind::DeadLetter).await,
            lost,
        }
    }

    fn print(&self, test: &str, firewall: &EffectReceiver, pager: &EffectReceiver) {
        println!(
            "{test}: published {}, workflows {}, alerts delivered {}, remediations executed {}, \
             duplicates {}, dead letters {}, lost {} (calls repeated under the same key and \
             absorbed: {} firewall, {} pager)",
            self.published,
            self.workflows,
            self.alerts_delivered,
            self.remediations_executed,
            self.duplicates,
            self.dead_letters,
            self.lost,
            firewall.repeats(),
            pager.repeats(),
        );
    }

    fn assert_exactly_once(&self) {
        assert_eq!(self.duplicates, 0, "{self:?}");
        assert_eq!(self.lost, 0, "{self:?}");
        assert_eq!(self.dead_letters, 0, "{self:?}");
        assert_eq!(self.alerts_delivered, self.published, "{self:?}");
        assert_eq!(self.remediations_executed, self.published, "{self:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_killed_in_turn_nats_and_postgres_restarted_nothing_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::single(&dir.path().join("nats")).await;
    let sandbox = Sandbox::on_nats::<&str>(&nats.url(), &[]).await;
    let postgres = server_of(sandbox.database().url());
    let proxy = TcpProxy::start(postgres.parse().unwrap()).await;
    let through_proxy = sandbox
        .database()
        .url()
        .replacen(&postgres, &proxy.addr().to_string(), 1);
    let firewall = EffectReceiver::remediation_api().await;
    let pager = EffectReceiver::alert_webhook().await;
    // A small real model, so that the predictor is in the loop (and killed) like the rest.
    let model = common::small_model(&sandbox, dir.path(), 2_000).await;
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let sets = deployment(
        &firewall,
        &pager,
        &[
            format!("database.url=\"{through_proxy}\""),
            format!("predictor.model_file=\"{}\"", model.display()),
            format!("orchestrator.predictor_url=\"http://{grpc}\""),
            // The deadline of a debug build's first calls, not a latency claim.
            "orchestrator.predict_timeout_ms=2000".to_string(),
        ],
    );

    let mut running = Vec::new();
    for name in [
        "predictor",
        "broker",
        "trainer",
        "orchestrator",
        "feedback",
        "health",
    ] {
        running.push((name, service(&sandbox, &sets, name, grpc).await));
    }
    let sensor = Sensor::start(&sandbox);
    let mut done = progress(&sandbox, 0, BETWEEN_FAULTS, "the start").await;

    // Each service killed in turn; the orchestrator twice, each time with an effect in flight.
    for (name, up) in &mut running {
        match *name {
            "orchestrator" => {
                firewall.hold_next(&[Hold::AfterApplying]);
                firewall.wait_held(1, PATIENCE).await;
                up.kill9().await;
                *up = service(&sandbox, &sets, name, grpc).await;
                done = progress(
                    &sandbox,
                    done,
                    BETWEEN_FAULTS,
                    "an orchestrator killed mid-block",
                )
                .await;
                pager.hold_next(&[Hold::BeforeApplying]);
                pager.wait_held(1, PATIENCE).await;
                up.kill9().await;
            }
            _ => up.kill9().await,
        }
        *up = service(&sandbox, &sets, name, grpc).await;
        done = progress(&sandbox, done, BETWEEN_FAULTS, &format!("{name} killed")).await;
    }

    // A second orchestrator beside the first; then the first is stopped with SIGTERM under
    // load: it finishes and acks what it holds, and the second carries on.
    let mut second = service(&sandbox, &sets, "orchestrator", grpc).await;
    done = progress(&sandbox, done, 2 * BETWEEN_FAULTS, "two orchestrators").await;
    let first = running
        .iter_mut()
        .find(|(name, _)| *name == "orchestrator")
        .map(|(_, up)| up)
        .unwrap();
    first.terminate();
    let status = first.exited().await;
    assert!(
        status.success(),
        "SIGTERM drains and exits cleanly: {status}\n{}",
        first.output()
    );
    running.retain(|(name, _)| *name != "orchestrator");
    done = progress(&sandbox, done, BETWEEN_FAULTS, "SIGTERM").await;

    // NATS killed and started again on the same port and storage.
    nats.kill();
    nats.start().await;
    done = progress(&sandbox, done, BETWEEN_FAULTS, "the NATS restart").await;

    // PostgreSQL away for a while, every connection cut.
    proxy.cut();
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();
    progress(&sandbox, done, BETWEEN_FAULTS, "the PostgreSQL outage").await;

    let published = sensor.stop().await;
    settled(&sandbox, published.len()).await;
    let counts = Counts::of(&sandbox, &published, &firewall, &pager).await;
    counts.print("fault test", &firewall, &pager);
    counts.assert_exactly_once();
    assert!(
        firewall.held() >= 1 && pager.held() >= 1,
        "the effects in flight were interrupted"
    );

    second.assert_running();
    for (_, up) in &mut running {
        up.assert_running();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_losing_the_work_streams_leader_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = NatsServer::cluster(3, dir.path()).await;
    let urls = nodes
        .iter()
        .map(NatsServer::url)
        .collect::<Vec<_>>()
        .join(",");
    let sandbox = Sandbox::on_nats(&urls, &["streams.replicas=3"]).await;
    let firewall = EffectReceiver::remediation_api().await;
    let pager = EffectReceiver::alert_webhook().await;
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let sets = deployment(&firewall, &pager, &["streams.replicas=3".to_string()]);
    let _services = Up::start_only(&sandbox, &sets, &["broker", "orchestrator"], grpc).await;

    let sensor = Sensor::start(&sandbox);
    let done = progress(&sandbox, 0, 2 * BETWEEN_FAULTS, "the start").await;
    let work = sandbox
        .bus()
        .jetstream()
        .get_stream(sandbox.bus().topology().stream_name(StreamKind::Work))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let cluster = work.cluster.expect("a clustered stream");
    assert_eq!(
        cluster.replicas.len() + 1,
        3,
        "three copies of the work stream"
    );
    let leader = cluster.leader.expect("the work stream has a leader");
    let node = nodes.iter_mut().find(|n| n.name() == leader).unwrap();
    node.kill();
    progress(&sandbox, done, 2 * BETWEEN_FAULTS, "the leader killed").await;

    let published = sensor.stop().await;
    settled(&sandbox, published.len()).await;
    let counts = Counts::of(&sandbox, &published, &firewall, &pager).await;
    counts.print("three-node cluster", &firewall, &pager);
    counts.assert_exactly_once();
}
