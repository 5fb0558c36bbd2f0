//! Predictor over gRPC on loopback, next to a no-op tonic service measured in the same run:
//! single-row latency (p50 / p99 / p99.9) at a fixed request rate with a paced open-loop client,
//! and the most single-row requests per second a closed loop of concurrent clients gets.
//!
//! `cargo bench -p vigil-predictor --bench grpc -- [--rate 5000] [--secs 10]
//!  [--connections 4] [--concurrency 32] [--model FILE] [--quick]`
//!
//! Without `--model` it trains an ensemble with the default `TrainConfig` on the 20 % NSL-KDD
//! file (`VIGIL_DATA_DIR` overrides the directory); `--quick` trains a small one instead.
//! Server and clients run in this process on separate runtimes of two worker threads each, so
//! on a small machine they compete for the same cores, as a co-located client would.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use vigil_domain::RiskThresholds;
use vigil_ml::{
    BoostConfig, ForestConfig, MlpConfig, ModelArtifact, NoProgress, TrainConfig, read_nsl_kdd,
    train_ensemble,
};
use vigil_predictor::{PredictorServer, ServerOptions};
use vigil_proto::v1;
use vigil_proto::v1::predictor_client::PredictorClient;
use vigil_proto::v1::predictor_server::{Predictor, PredictorServer as PredictorGrpc};

struct Args {
    rate: u64,
    secs: u64,
    connections: usize,
    concurrency: usize,
    model: Option<PathBuf>,
    quick: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        rate: 5_000,
        secs: 10,
        connections: 4,
        concurrency: 32,
        model: std::env::var_os("VIGIL_BENCH_MODEL").map(PathBuf::from),
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--rate" => args.rate = value()?.parse()?,
            "--secs" => args.secs = value()?.parse()?,
            "--connections" => args.connections = value()?.parse()?,
            "--concurrency" => args.concurrency = value()?.parse()?,
            "--model" => args.model = Some(PathBuf::from(value()?)),
            "--quick" => args.quick = true,
            "--bench" => {} // passed by `cargo bench`
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(args.connections > 0 && args.concurrency > 0 && args.rate > 0);
    Ok(args)
}

/// Answers every Predict at once with a constant result shaped like a real one.
struct NoopPredictor {
    response: v1::PredictResponse,
}

#[tonic::async_trait]
impl Predictor for NoopPredictor {
    async fn predict(
        &self,
        _request: Request<v1::PredictRequest>,
    ) -> Result<Response<v1::PredictResponse>, Status> {
        Ok(Response::new(self.response.clone()))
    }

    async fn predict_batch(
        &self,
        _request: Request<v1::PredictBatchRequest>,
    ) -> Result<Response<v1::PredictBatchResponse>, Status> {
        Ok(Response::new(v1::PredictBatchResponse::default()))
    }

    async fn get_model(
        &self,
        _request: Request<v1::GetModelRequest>,
    ) -> Result<Response<v1::GetModelResponse>, Status> {
        Ok(Response::new(v1::GetModelResponse::default()))
    }
}

#[derive(Default)]
struct Measurement {
    latencies_us: Vec<u64>,
    errors: u64,
    seconds: f64,
}

impl Measurement {
    fn row(&mut self, service: &str, scenario: &str) -> String {
        self.latencies_us.sort_unstable();
        let q = |q: f64| -> String {
            if self.latencies_us.is_empty() {
                return "-".into();
            }
            let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
            format!("{}", self.latencies_us[i])
        };
        let n = self.latencies_us.len() as u64 + self.errors;
        format!(
            "| {service} | {scenario} | {n} | {} | {:.0} | {} | {} | {} | {} |",
            self.errors,
            n as f64 / self.seconds,
            q(0.5),
            q(0.99),
            q(0.999),
            self.latencies_us.last().copied().unwrap_or_default(),
        )
    }
}

async fn connect(addr: SocketAddr, n: usize) -> Vec<PredictorClient<Channel>> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
        clients.push(PredictorClient::new(channel));
    }
    clients
}

/// Open loop: one request every 1/rate seconds whatever the answers do, spread over the
/// connections; latency is measured from the moment each request is issued.
fn open_loop(
    client_rt: &tokio::runtime::Runtime,
    clients: &[PredictorClient<Channel>],
    signals: &Arc<Vec<v1::ThreatSignal>>,
    rate: u64,
    secs: u64,
) -> Measurement {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity((rate * secs) as usize)));
    let errors = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let mut client = clients[i as usize % clients.len()].clone();
        let signal = signals[i as usize % signals.len()].clone();
        let (latencies, errors, in_flight) = (latencies.clone(), errors.clone(), in_flight.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        let issued = Instant::now();
        client_rt.spawn(async move {
            let answer = client
                .predict(v1::PredictRequest {
                    signal: Some(signal),
                })
                .await;
            let us = issued.elapsed().as_micros() as u64;
            match answer {
                Ok(_) => latencies.lock().unwrap().push(us),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let seconds = start.elapsed().as_secs_f64();
    while in_flight.load(Ordering::Relaxed) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Measurement {
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
        seconds,
    }
}

/// Closed loop: `concurrency` clients, each sending its next request when the last answered.
fn closed_loop(
    client_rt: &tokio::runtime::Runtime,
    clients: &[PredictorClient<Channel>],
    signals: &Arc<Vec<v1::ThreatSignal>>,
    concurrency: usize,
    duration: Duration,
) -> Measurement {
    client_rt.block_on(async {
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for c in 0..concurrency {
            let mut client = clients[c % clients.len()].clone();
            let signals = signals.clone();
            tasks.push(tokio::spawn(async move {
                let mut m = Measurement::default();
                let mut i = c * 7919;
                while Instant::now() < deadline {
                    let signal = signals[i % signals.len()].clone();
                    i += 1;
                    let issued = Instant::now();
                    match client
                        .predict(v1::PredictRequest {
                            signal: Some(signal),
                        })
                        .await
                    {
                        Ok(_) => m.latencies_us.push(issued.elapsed().as_micros() as u64),
                        Err(_) => m.errors += 1,
                    }
                }
                m
            }));
        }
        let mut all = Measurement::default();
        for task in tasks {
            let m = task.await.unwrap();
            all.latencies_us.extend(m.latencies_us);
            all.errors += m.errors;
        }
        all.seconds = start.elapsed().as_secs_f64();
        all
    })
}

fn data_dir() -> PathBuf {
    std::env::var("VIGIL_DATA_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nsl-kdd"),
        PathBuf::from,
    )
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let path = data_dir().join("KDDTrain+_20Percent.txt");
    let outcome = read_nsl_kdd(BufReader::new(File::open(&path)?));
    anyhow::ensure!(outcome.errors.is_empty(), "malformed rows in {path:?}");
    let examples = outcome.examples;

    let t = Instant::now();
    let (artifact, model_desc) = match &args.model {
        Some(file) => (
            ModelArtifact::from_bytes(&std::fs::read(file)?)?,
            format!("artifact {}", file.display()),
        ),
        None if args.quick => {
            let config = TrainConfig {
                forest: ForestConfig {
                    n_trees: 12,
                    ..ForestConfig::default()
                },
                xgboost: BoostConfig {
                    rounds: 15,
                    ..BoostConfig::default()
                },
                mlp: MlpConfig {
                    hidden: vec![16],
                    max_epochs: 3,
                    ..MlpConfig::default()
                },
                ..TrainConfig::default()
            };
            let (a, _) = train_ensemble(examples.clone(), &config, "bench", &NoProgress)?;
            (
                a,
                "quick ensemble (12 trees, 15 rounds, MLP 16)".to_string(),
            )
        }
        None => {
            let (a, _) = train_ensemble(
                examples.clone(),
                &TrainConfig::default(),
                "bench",
                &NoProgress,
            )?;
            (
                a,
                "default TrainConfig ensemble on KDDTrain+_20Percent".to_string(),
            )
        }
    };
    eprintln!(
        "model: {model_desc} ({}), ready in {:.1} s",
        artifact.metadata.model_version_id,
        t.elapsed().as_secs_f64()
    );

    // Scoring cost alone, in process: what the model adds to a request.
    let domain: Vec<_> = examples
        .iter()
        .step_by(25)
        .map(|e| e.signal.clone())
        .collect();
    let thresholds = RiskThresholds::default();
    let mut in_process: Vec<u64> = Vec::new();
    for _ in 0..3 {
        for s in &domain {
            let t = Instant::now();
            std::hint::black_box(artifact.predict(s, &thresholds)?);
            in_process.push(t.elapsed().as_nanos() as u64);
        }
    }
    in_process.sort_unstable();
    let in_process_p50 = in_process[in_process.len() / 2] as f64 / 1000.0;
    let in_process_p99 = in_process[in_process.len() * 99 / 100] as f64 / 1000.0;

    let signals: Arc<Vec<v1::ThreatSignal>> = Arc::new(
        domain
            .iter()
            .map(|s| v1::ThreatSignal::from(s.clone()))
            .collect(),
    );
    let constant = artifact.predict(&domain[0], &thresholds)?;

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()?;
    let metrics = vigil_telemetry::Metrics::new();
    let predictor = server_rt.block_on(PredictorServer::start(
        "127.0.0.1:0",
        ServerOptions::default(),
        Some(artifact.into()),
        &metrics,
    ))?;
    let noop_addr = server_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let service = PredictorGrpc::new(NoopPredictor {
            response: v1::PredictResponse {
                result: Some(constant.into()),
            },
        });
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        anyhow::Ok(addr)
    })?;

    let mut rows = Vec::new();
    for (name, addr) in [
        ("no-op tonic", noop_addr),
        ("predictor", predictor.local_addr()),
    ] {
        let clients = client_rt.block_on(connect(addr, args.connections));
        eprintln!("{name}: warming up");
        closed_loop(
            &client_rt,
            &clients,
            &signals,
            args.concurrency,
            Duration::from_secs(2),
        );
        eprintln!(
            "{name}: open loop at {} req/s for {} s",
            args.rate, args.secs
        );
        let mut open = open_loop(&client_rt, &clients, &signals, args.rate, args.secs);
        rows.push(open.row(name, &format!("open loop {} req/s", args.rate)));
        eprintln!("{name}: closed loop, {} clients", args.concurrency);
        let mut closed = closed_loop(
            &client_rt,
            &clients,
            &signals,
            args.concurrency,
            Duration::from_secs(args.secs),
        );
        rows.push(closed.row(name, &format!("closed loop {} clients", args.concurrency)));
    }
    server_rt.block_on(predictor.stop())?;

    println!(
        "Single-row Predict over gRPC on loopback, {} connections; model: {model_desc}.",
        args.connections
    );
    println!("In-process scoring alone: p50 {in_process_p50:.1} µs, p99 {in_process_p99:.1} µs.\n");
    println!(
        "| service | scenario | requests | errors | req/s | p50 µs | p99 µs | p99.9 µs | max µs |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
