//! Where the built `vigil` binary is, for tests that run it as a user does.

use std::path::PathBuf;

/// The `vigil` binary of this build: `target/<profile>/vigil`, found from the running test
/// executable (`target/<profile>/deps/<test>-<hash>`) the way `assert_cmd`'s `cargo_bin` does.
///
/// `cargo nextest run --workspace` and `cargo test --workspace` build it; a run limited to one
/// package that is not `vigil-cli` does not, and this panics saying so.
pub fn vigil_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own executable");
    let mut dir = exe
        .parent()
        .expect("a test executable lives in a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("vigil{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the vigil binary is not built at {}: run the tests with --workspace, or build it first \
         with `cargo build -p vigil-cli` (same profile and CARGO_TARGET_DIR as the tests)",
        bin.display()
    );
    bin
}

/// What a child process printed so far, stdout and stderr interleaved by line.
pub type CapturedOutput = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Starts `cmd` with stdin closed and its stdout and stderr collected line by line into the
/// returned [`CapturedOutput`] as it runs; the child is killed when dropped.
pub fn spawn_capturing(
    mut cmd: tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, CapturedOutput)> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let output = CapturedOutput::default();
    let streams: [Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as _),
        child.stderr.take().map(|s| Box::new(s) as _),
    ];
    for stream in streams.into_iter().flatten() {
        let output = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                output
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
    }
    Ok((child, output))
}

/// The address `vigil up` says it serves HTTP on ("vigil is up: ... on http://ADDR ..."), once
/// it has printed it.
pub fn announced_http_addr(output: &CapturedOutput) -> Option<std::net::SocketAddr> {
    let lines = output
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    lines.iter().find_map(|line| {
        let rest = line.split("vigil is up:").nth(1)?;
        let addr = rest.split("http://").nth(1)?.split_whitespace().next()?;
        addr.parse().ok()
    })
}
