//! Python virtual environments made from a requirements file, once, and reused: each lives under
//! `VIGIL_PYTHON_ENVS` (default `/var/tmp/vigil-python`) in a folder named by a hash of the
//! requirements and the interpreter's version, so a changed requirements file makes a new one
//! and an unchanged one starts at once. `tests/clients/requirements.txt` holds the clients
//! people already have; `tests/deploy/requirements.txt` the linters of the deployment files.
//!
//! Making it needs `python3` with `venv` and `pip` (Debian: `python3-venv`, which
//! `scripts/setup` installs) and PyPI within reach. When it cannot be made the test fails and
//! says why; `VIGIL_SKIP_PYTHON_CLIENTS=1` skips the Python clients instead, for a machine
//! that has no way to PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Set to `1` to skip the tests that need the Python clients.
pub const SKIP_VAR: &str = "VIGIL_SKIP_PYTHON_CLIENTS";

/// The folder of the Python client files (`requirements.txt`, `clients.py`).
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Whether the Python clients are to be skipped; says so on stderr when they are.
pub fn skipped(test: &str) -> bool {
    let skip = std::env::var(SKIP_VAR).is_ok_and(|v| v == "1");
    if skip {
        eprintln!("{test}: skipped, {SKIP_VAR}=1");
    }
    skip
}

/// The `python` of an environment holding the clients, made first when missing.
pub fn client_python() -> PathBuf {
    venv("clients", &clients_dir().join("requirements.txt"))
}

/// The `python` of an environment named `name` holding `requirements`, made first when missing;
/// its `bin/` holds the tools the packages install.
pub fn venv(name: &str, requirements: &Path) -> PathBuf {
    let wanted = std::fs::read(requirements)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements.display()));
    let version = run(
        Command::new("python3").arg("--version"),
        "python3 --version",
    )
    .unwrap_or_else(|e| panic!("{e}; install python3 (scripts/setup does)"));
    let mut hash = Sha256::new();
    hash.update(&wanted);
    hash.update(version.as_bytes());
    let key = hex::encode(&hash.finalize()[..6]);
    let root = std::env::var_os("VIGIL_PYTHON_ENVS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/vigil-python"));
    let env = root.join(format!("{name}-{key}"));
    let python = env.join("bin").join("python");
    if python.is_file() {
        return python;
    }

    // Made beside its final place and renamed into it in one step, so tests running at once
    // never see half an environment (a venv's interpreter finds its packages relative to
    // itself, so the rename does not break it).
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    let building = root.join(format!(".{name}-{key}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let made = run(
        Command::new("python3").args(["-m", "venv"]).arg(&building),
        "python3 -m venv",
    )
    .and_then(|_| {
        run(
            Command::new(building.join("bin").join("python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(requirements),
            &format!("pip install -r {}", requirements.display()),
        )
    });
    if let Err(why) = made {
        let _ = std::fs::remove_dir_all(&building);
        panic!(
            "cannot make the Python environment {name}: {why}\n\
             it needs python3-venv (scripts/setup installs it) and PyPI within reach; on a \
             machine without PyPI set {SKIP_VAR}=1 to skip these tests"
        );
    }
    if std::fs::rename(&building, &env).is_err() {
        // Another test made it first; use theirs.
        let _ = std::fs::remove_dir_all(&building);
    }
    assert!(python.is_file(), "no python in {}", env.display());
    python
}

/// Runs a command to completion; its stdout, or what it printed when it failed.
fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("{what} did not start: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
