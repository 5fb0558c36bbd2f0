//! Servers a test owns, so that it can kill and restart them without touching the NATS and
//! PostgreSQL every other test shares: [`NatsServer`] (a `nats-server` process with JetStream,
//! alone or in a cluster) and [`TcpProxy`] (a loopback proxy that can cut every connection to
//! the server behind it, as that server's restart would).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::eventually;

/// How long a server may take to come up: a guard against a hung server, not a speed claim.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// The `nats-server` binary: `NATS_SERVER_BIN`, else the one on `PATH`, else Debian's.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        return bin.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| "/usr/sbin/nats-server".into())
}

/// A `nats-server` with JetStream (file storage under a directory of the test's) on a port of
/// its own; killed when dropped. [`kill`](Self::kill) is `kill -9`; [`start`](Self::start)
/// again brings it back on the same port with the same storage.
#[derive(Debug)]
pub struct NatsServer {
    name: String,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// A single server storing JetStream data under `store`.
    pub async fn single(store: &Path) -> Self {
        let port = free_port();
        let mut server = Self::configured("nats", port, store, Vec::new());
        server.start().await;
        server
    }

    /// A cluster of `n` servers named `node-0..`, each storing under its own directory of
    /// `store`, routed to each other; started and waited for (JetStream answers on each).
    pub async fn cluster(n: usize, store: &Path) -> Vec<Self> {
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers: Vec<Self> = (0..n)
            .map(|i| {
                let name = format!("node-{i}");
                let args = vec![
                    "--cluster_name".into(),
                    "vigil-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", route_ports[i]),
                    "--routes".into(),
                    routes.clone(),
                ];
                Self::configured(&name, client_ports[i], &store.join(&name), args)
            })
            .collect();
        for server in &mut servers {
            server.spawn();
        }
        for server in &servers {
            server.wait_ready().await;
        }
        servers
    }

    fn configured(name: &str, port: u16, store: &Path, extra: Vec<String>) -> Self {
        let mut args = vec![
            "-js".to_owned(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-n".to_owned(),
            name.to_owned(),
            "-sd".to_owned(),
            store.display().to_string(),
        ];
        args.extend(extra);
        Self {
            name: name.to_owned(),
            port,
            args,
            child: None,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's name (`-n`), as JetStream reports it in a stream's cluster info.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_server_bin())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server ({}; set NATS_SERVER_BIN): {e}",
                    nats_server_bin().display()
                )
            });
        self.child = Some(child);
    }

    /// Starts the server (again) and waits until JetStream answers on it.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.spawn();
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let url = self.url();
        eventually(
            START_PATIENCE,
            &format!("{} to serve JetStream", self.name),
            || {
                let url = url.clone();
                async move {
                    let client = async_nats::connect(&url).await.map_err(|e| e.to_string())?;
                    // The raw account-info request: async-nats cannot parse NATS 2.9's answer.
                    // In a cluster it is an error until JetStream's meta group has a leader.
                    let reply = client
                        .request("$JS.API.INFO", "".into())
                        .await
                        .map_err(|e| e.to_string())?;
                    let info: serde_json::Value =
                        serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
                    match info.get("error") {
                        None => Ok(()),
                        Some(error) => Err(error.to_string()),
                    }
                }
            },
        )
        .await;
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy on loopback in front of `upstream`. [`cut`](Self::cut) closes every connection
/// through it and refuses new ones until [`restore`](Self::restore): to its clients, exactly a
/// restart of the server behind it, without restarting a server other tests use.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<std::sync::Mutex<CancellationToken>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let proxy = Self {
            addr: listener.local_addr().expect("a bound address"),
            up: Arc::new(AtomicBool::new(true)),
            generation: Arc::new(std::sync::Mutex::new(CancellationToken::new())),
        };
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !accepting.up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = accepting.token();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        () = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        proxy
    }

    fn token(&self) -> CancellationToken {
        self.generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
