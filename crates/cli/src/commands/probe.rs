//! `vigil probe`: asks a vigil HTTP endpoint (`/healthz` unless told otherwise) and succeeds when
//! it answers 200: the container health check, with no shell and no curl in the image. With
//! `--grpc` it asks the predictor's gRPC health service instead, over TLS when configured
//! (Kubernetes' own gRPC probe speaks no TLS).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use vigil_runtime::ConfigArgs;

/// Arguments of `vigil probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// `http://HOST:PORT/PATH`, or a path on this configuration's own endpoint
    /// (`telemetry.http_addr`; an unspecified address such as 0.0.0.0 is asked on loopback).
    #[arg(default_value = "/healthz")]
    pub target: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// Ask the predictor's gRPC health service (`grpc.health.v1`) and succeed on SERVING:
    /// TARGET is then `HOST:PORT` or `http(s)://HOST:PORT`, or this configuration's
    /// `predictor.grpc_addr` when it is a path; TLS as `orchestrator.predictor_tls` says.
    #[arg(long)]
    pub grpc: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Exits 0 on a 200 answer; otherwise fails saying what was answered.
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    if args.grpc {
        return grpc_health(&args);
    }
    let (host, path) = if args.target.starts_with('/') {
        let config = args.config.load()?;
        (
            own_endpoint(&config.telemetry.http_addr)?,
            args.target.clone(),
        )
    } else {
        split_url(&args.target)?
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let status = get(&host, &path, timeout).with_context(|| format!("GET http://{host}{path}"))?;
    if status.code == 200 {
        println!("{}", status.line);
        Ok(())
    } else {
        bail!("GET http://{host}{path}: {}", status.line)
    }
}

/// Exits 0 when the predictor's gRPC health says SERVING (a model is loaded).
fn grpc_health(args: &ProbeArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let config = args.config.load()?;
    let addr = if args.target.starts_with('/') {
        config.predictor.grpc_addr.clone()
    } else {
        args.target.clone()
    };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        let channel = super::predict::connect(&config, &addr, timeout).await?;
        let answer = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .map_err(|status| anyhow::anyhow!("gRPC health of {addr}: {}", status.message()))?;
        anyhow::Ok(answer.into_inner().status)
    })?;
    let status = ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown);
    if status == ServingStatus::Serving {
        println!("{addr}: SERVING");
        Ok(())
    } else {
        bail!("gRPC health of {addr}: {}", status.as_str_name())
    }
}

/// Where this configuration serves HTTP, as a client reaches it from the same host.
fn own_endpoint(http_addr: &str) -> anyhow::Result<String> {
    let addr: SocketAddr = http_addr
        .parse()
        .with_context(|| format!("telemetry.http_addr {http_addr:?} is not HOST:PORT"))?;
    if addr.port() == 0 {
        bail!("telemetry.http_addr {http_addr:?} picks a free port at start-up: give the URL");
    }
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    Ok(SocketAddr::new(ip, addr.port()).to_string())
}

/// `http://host:port/path` -> (`host:port`, `/path`).
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url:?}: give http://HOST:PORT/PATH or a path such as /healthz");
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        bail!("{url:?} names no host");
    }
    let host = if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    Ok((host, path.to_owned()))
}

struct Status {
    code: u16,
    line: String,
}

/// One HTTP/1.0 GET; the status line of the answer.
fn get(host: &str, path: &str, timeout: Duration) -> anyhow::Result<Status> {
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vigil-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| format!("not an HTTP answer: {status_line:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim())
        .unwrap_or_default();
    let line = if body.is_empty() {
        status_line.to_owned()
    } else {
        format!("{status_line}: {}", body.lines().next().unwrap_or_default())
    };
    Ok(Status { code, line })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_own_endpoints_resolve_to_host_and_path() {
        let split = |url: &str| split_url(url).ok();
        assert_eq!(
            split("http://127.0.0.1:9464/readyz"),
            Some(("127.0.0.1:9464".into(), "/readyz".into()))
        );
        assert_eq!(
            split("http://health"),
            Some(("health:80".into(), "/".into()))
        );
        assert_eq!(split("https://a:1/"), None);
        assert_eq!(
            own_endpoint("0.0.0.0:9464").ok().as_deref(),
            Some("127.0.0.1:9464")
        );
        assert_eq!(
            own_endpoint("[::]:9464").ok().as_deref(),
            Some("[::1]:9464")
        );
        assert_eq!(
            own_endpoint("10.1.2.3:9000").ok().as_deref(),
            Some("10.1.2.3:9000")
        );
        assert!(own_endpoint("127.0.0.1:0").is_err());
    }

    #[test]
    fn a_probe_succeeds_only_on_200() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\nok\n",
                "HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: predictor\n",
            ] {
                let (mut conn, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = conn.read(&mut buf).unwrap();
                    assert!(n > 0, "the request ends with an empty line");
                    request.extend_from_slice(&buf[..n]);
                }
                assert!(String::from_utf8_lossy(&request).starts_with("GET /healthz HTTP/1.0"));
                conn.write_all(answer.as_bytes()).unwrap();
            }
        });
        let timeout = Duration::from_secs(5);
        let ok = get(&host, "/healthz", timeout).unwrap();
        assert_eq!((ok.code, ok.line.as_str()), (200, "HTTP/1.1 200 OK: ok"));
        let down = get(&host, "/healthz", timeout).unwrap();
        assert_eq!(down.code, 503);
        assert!(down.line.ends_with("not ready: predictor"), "{}", down.line);
        server.join().unwrap();
    }
}
